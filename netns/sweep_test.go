package netns

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
)

// leaveChild is the child of TestSweepAfterDeadTest: a test process that
// makes a lab, a helper namespace and a stand-in host interface, says their
// names, and waits to be killed before any cleanup.
func leaveChild() error {
	lab := labtest.Lab()
	j, err := OpenJournal(os.Getenv("NETNS_TEST_JOURNAL"))
	if err != nil {
		return err
	}
	p := twoNodePlanPlain(lab)
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		return err
	}
	helper := "lct-" + lab
	if out, err := exec.Command("ip", "netns", "add", helper).CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	if err := labtest.Mark(helper); err != nil {
		return err
	}
	nic := "s" + lab[1:]
	if err := labtest.Veth(nic, nic+"p"); err != nil {
		return err
	}
	fmt.Println(lab, helper, nic)
	select {}
}

// TestSweepAfterDeadTest: what a test process killed before its cleanup
// left (its lab, a helper namespace, a stand-in interface) is swept by the
// next test run's TestMain, and what live tests have is not.
func TestSweepAfterDeadTest(t *testing.T) {
	privtest.Root(t)
	mine := uniqueLab(t)
	newLab(t, mine)
	if _, err := Apply(context.Background(), nil, twoNodePlanPlain(mine), Options{Journal: mustJournal(t)}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETNS_TEST_CHILD=leave", "NETNS_TEST_JOURNAL="+t.TempDir()+"/journal")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("child: %v: %s", err, stderr.String())
	}
	f := strings.Fields(line)
	lab, helper, nic := f[0], f[1], f[2]
	t.Cleanup(func() { // should the sweep fail
		_, _ = Destroy(context.Background(), lab, nil, Options{})
		_ = exec.Command("ip", "netns", "del", helper).Run()
		_ = exec.Command("ip", "link", "del", nic).Run()
	})
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if names, _ := List(lab); len(names) != 2 {
		t.Fatalf("the dead child's lab has %q", names)
	}

	sweep()

	assertNoLab(t, lab)
	if Exists(helper) {
		t.Errorf("helper namespace %s is left", helper)
	}
	if _, err := netlink.LinkByName(nic); err == nil {
		t.Errorf("stand-in %s is left", nic)
	}
	if names, _ := List(mine); len(names) != 2 {
		t.Errorf("the sweep took this live test's lab: %q left", names)
	}
}

func mustJournal(t *testing.T) *Journal {
	t.Helper()
	j, err := OpenJournal(t.TempDir() + "/journal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}
