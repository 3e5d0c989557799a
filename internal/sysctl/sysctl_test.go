package sysctl_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/sysctl"
	"github.com/labctl/labctl/internal/sysctl/sysctltest"
)

// Corpus is read from testdata/keys.json here and by the tests of every
// package that turns keys into files, so that they all agree.
func TestPathCorpus(t *testing.T) {
	for _, c := range sysctltest.Corpus(t) {
		got, err := sysctl.Path(c.Key)
		if c.Error != "" {
			if err == nil || !errors.Is(err, sysctl.ErrKey) || !strings.Contains(err.Error(), c.Error) {
				t.Errorf("Path(%q) = %q, %v; want an ErrKey containing %q", c.Key, got, err, c.Error)
			}
			continue
		}
		if err != nil || got != c.Path {
			t.Errorf("Path(%q) = %q, %v; want %q", c.Key, got, err, c.Path)
		}
	}
}

func TestReadWrite(t *testing.T) {
	// kernel.ostype cannot be written, but it can be read anywhere.
	v, err := sysctl.Read("kernel.ostype")
	if err != nil || v != "Linux" {
		t.Fatalf("Read(kernel.ostype) = %q, %v", v, err)
	}
	if err := sysctl.Write("kernel.ostype", "x"); err == nil {
		t.Error("Write(kernel.ostype) succeeded")
	}
	if _, err := sysctl.Read("net..x"); !errors.Is(err, sysctl.ErrKey) {
		t.Errorf("Read of a bad key: %v", err)
	}
}
