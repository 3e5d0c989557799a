package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	cniOnce sync.Once
	cniDir  string
	cniErr  error
)

// CNIPlugins returns a plugin path holding the CNI plugins go.mod pins:
// $CNI_PATH when it holds them (scripts/test.sh builds bin/cni and sets
// it), else a directory scripts/cni.sh builds them into once per machine
// and version, under the system's temporary directory.
func CNIPlugins(t testing.TB) []string {
	t.Helper()
	cniOnce.Do(func() {
		if p := os.Getenv("CNI_PATH"); p != "" {
			if _, err := os.Stat(filepath.Join(filepath.SplitList(p)[0], "bridge")); err == nil {
				cniDir = p
				return
			}
		}
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/containernetworking/plugins").Output()
		if err != nil {
			cniErr = fmt.Errorf("the plugins' version: %w", err)
			return
		}
		dir := filepath.Join(os.TempDir(), "labctl-cni-"+strings.TrimSpace(string(out)))
		root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			cniErr = fmt.Errorf("the module's directory: %w", err)
			return
		}
		cmd := exec.Command(filepath.Join(strings.TrimSpace(string(root)), "scripts", "cni.sh"), dir)
		if b, err := cmd.CombinedOutput(); err != nil {
			cniErr = fmt.Errorf("scripts/cni.sh: %v\n%s", err, b)
			return
		}
		cniDir = dir
	})
	if cniErr != nil {
		t.Fatal(cniErr)
	}
	return filepath.SplitList(cniDir)
}
