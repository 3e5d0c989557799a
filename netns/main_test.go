package netns

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The test binary doubles as the child processes some tests need: with
// NETNS_TEST_CHILD set it runs that child instead of the tests.
func TestMain(m *testing.M) {
	if role := os.Getenv("NETNS_TEST_CHILD"); role != "" {
		if err := child(role); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(role string) error {
	switch role {
	case "sysfs":
		if err := MountSysfs(); err != nil {
			return err
		}
		entries, err := os.ReadDir("/sys/class/net")
		if err != nil {
			return err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		fmt.Print(strings.Join(names, " "))
		return nil
	case "apply":
		return applyChild()
	}
	return fmt.Errorf("unknown child role %q", role)
}

// childOutput runs the test binary as child role inside ns, started with
// Start, and returns its output.
func childOutput(ns, role string) (string, error) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "NETNS_TEST_CHILD="+role)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := Start(ns, cmd); err != nil {
		return "", err
	}
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("child %s: %w: %s", role, err, stderr.String())
	}
	return out.String(), nil
}

func itoa(i int) string { return strconv.Itoa(i) }
