package report

import (
	"testing"

	"github.com/labctl/labctl/internal/sysctl"
	"github.com/labctl/labctl/internal/sysctl/sysctltest"
)

// TestReadSysctlsKeys: a result records the sysctls of the shared corpus
// that exist, read from the files the shared rule maps them to, and leaves
// out keys that name no file.
func TestReadSysctlsKeys(t *testing.T) {
	var keys []string
	for _, c := range sysctltest.Corpus(t) {
		keys = append(keys, c.Key)
	}
	got := ReadSysctls(keys)
	for _, c := range sysctltest.Corpus(t) {
		v, ok := got[c.Key]
		want, err := sysctl.Read(c.Key)
		if c.Error != "" || err != nil {
			if ok {
				t.Errorf("%q recorded as %q", c.Key, v)
			}
			continue
		}
		if !ok || v != want {
			t.Errorf("%q recorded as %q, %v; want %q", c.Key, v, ok, want)
		}
	}
}
