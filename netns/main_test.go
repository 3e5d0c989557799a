package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/labtest"
)

// The test binary doubles as the child processes some tests need: with
// NETNS_TEST_CHILD set it runs that child instead of the tests. Before the
// tests, what test processes that died left behind is swept away.
func TestMain(m *testing.M) {
	if role := os.Getenv("NETNS_TEST_CHILD"); role != "" {
		if err := child(role); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	sweep()
	os.Exit(m.Run())
}

// sweep removes what dead test processes left (see labtest.Sweep).
func sweep() {
	if os.Geteuid() != 0 {
		return
	}
	swept, err := labtest.Sweep(func(lab string) error {
		_, err := Destroy(context.Background(), lab, nil, Options{})
		return err
	})
	for _, s := range swept {
		fmt.Fprintln(os.Stderr, "swept, left by a test process that died:", s)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
	}
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
	case "leave":
		return leaveChild()
	case "cni":
		return cniChild()
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
