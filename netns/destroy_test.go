package netns

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/labctl/labctl/topologies"
)

// TestDestroyTouchesOnlyItsOwn: labs a and a-b share the name prefix
// labctl-a-, and an unmarked namespace is named like one of a's.
func TestDestroyTouchesOnlyItsOwn(t *testing.T) {
	a := uniqueLab(t)
	ab := a + "-b"
	ja, jab := newLab(t, a), newLab(t, ab)
	ctx := context.Background()
	pa := twoNodePlanPlain(a)
	pab := twoNodePlanPlain(ab)
	if _, err := Apply(ctx, nil, pa, Options{Journal: ja}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, nil, pab, Options{Journal: jab}); err != nil {
		t.Fatal(err)
	}
	stranger := topologies.Namespace(a, "n9")
	helperNS(t, stranger)

	// Lab a's plan with a node n9 cannot be applied: the name is taken.
	with9 := twoNodePlanPlain(a)
	with9.Nodes = append(with9.Nodes, topologies.Node{Name: "n9", Namespace: stranger})
	if err := CheckHost(with9); err == nil || !strings.Contains(err.Error(), "nodes.n9: namespace "+stranger+" exists and is not labctl's") {
		t.Errorf("CheckHost: %v", err)
	}
	// Nor can lab a-b take lab a's names.
	if err := CheckHost(&topologies.Plan{Lab: ab, Nodes: []topologies.Node{{Name: "x", Namespace: pa.Nodes[0].Namespace}}}); err == nil ||
		!strings.Contains(err.Error(), "belongs to lab "+a+" (n1)") {
		t.Errorf("CheckHost of another lab's namespace: %v", err)
	}

	if got, _ := List(a); !slices.Equal(got, []string{pa.Nodes[0].Namespace, pa.Nodes[1].Namespace}) {
		t.Errorf("List(%s) = %q", a, got)
	}
	// Without plan or journal: the sweep by marker.
	ch, err := Destroy(ctx, a, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Removed) != 2 {
		t.Errorf("removed %q", ch.Removed)
	}
	assertNoLab(t, a)
	if got, _ := List(ab); len(got) != 2 {
		t.Errorf("lab %s lost namespaces: %q", ab, got)
	}
	if !Exists(stranger) {
		t.Errorf("the unmarked %s was deleted", stranger)
	}
	// With a plan that names the stranger, still not.
	if _, err := Destroy(ctx, a, with9, Options{Journal: ja}); err != nil {
		t.Fatal(err)
	}
	if !Exists(stranger) {
		t.Errorf("the unmarked %s was deleted", stranger)
	}
	ping(t, pab.Nodes[0].Namespace, "198.18.0.2")
}

// twoNodePlanPlain is two nodes on a veth with addresses only.
func twoNodePlanPlain(lab string) *topologies.Plan {
	p := newPlan(lab, "n1", "n2")
	p.Links = []topologies.Link{veth(end(p, "n1", "eth0", "198.18.0.1/24"), end(p, "n2", "eth0", "198.18.0.2/24"))}
	return p
}

// TestStartAndDestroyKills starts processes inside a node and checks that
// they live in it, with their own sysfs, and that Destroy stops them.
func TestStartAndDestroyKills(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	ctx := context.Background()
	p := twoNodePlanPlain(lab)
	if _, err := Apply(ctx, nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	n1 := p.Nodes[0].Namespace

	// A process that ignores SIGTERM, to be killed after the grace time.
	sleeper := exec.Command("sh", "-c", "trap '' TERM; sleep 1000 & wait")
	if err := Start(n1, sleeper); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	t.Cleanup(func() { sleeper.Process.Kill() })
	pidNS := "/proc/" + itoa(sleeper.Process.Pid) + "/ns/"
	if netnsInode(t, pidNS+"net") != netnsInode(t, RunDir+"/"+n1) {
		t.Error("the started process is not in the node's namespace")
	}
	if netnsInode(t, pidNS+"mnt") == netnsInode(t, "/proc/self/ns/mnt") {
		t.Error("the started process shares labctl's mount namespace")
	}

	// A process started with Start sees the node's own interfaces in
	// /sys once it has called MountSysfs.
	out, err := childOutput(n1, "sysfs")
	if err != nil {
		t.Fatal(err)
	}
	if out != "eth0 lo" {
		t.Errorf("/sys/class/net in the node lists %q, want eth0 lo", out)
	}
	// MountSysfs refuses to replace the host's /sys.
	if err := MountSysfs(); err == nil || !strings.Contains(err.Error(), "shares its mount namespace") {
		t.Errorf("MountSysfs in the test process: %v", err)
	}

	// Do runs on a thread inside the node.
	var inside uint64
	if err := Do(n1, func() error { inside = netnsInode(t, threadNS); return nil }); err != nil {
		t.Fatal(err)
	}
	if inside != netnsInode(t, RunDir+"/"+n1) {
		t.Error("Do did not run in the node's namespace")
	}

	if _, err := Destroy(ctx, lab, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the process in the node ended with %v, want killed", err)
	}
}

// TestLeftoverFile: a kill between creating a namespace's file and
// mounting the namespace on it leaves the file, holding the marker, or
// empty when the kill came before the marker was written. Up takes it over,
// down removes it, and a file holding anything else is left alone.
func TestLeftoverFile(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	if err := prepareRunDir(); err != nil {
		t.Fatal(err)
	}
	p := twoNodePlanPlain(lab)
	n1, n2 := p.Nodes[0].Namespace, p.Nodes[1].Namespace
	leave := func(ns, content string) {
		t.Helper()
		if err := os.WriteFile(RunDir+"/"+ns, []byte(content), 0); err != nil {
			t.Fatal(err)
		}
	}
	leave(n1, nsMarker(lab, "n1"))
	if got, _ := List(lab); !slices.Equal(got, []string{n1}) {
		t.Errorf("List = %q, want the leftover %s", got, n1)
	}
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	ping(t, n1, "198.18.0.2")
	if _, err := Destroy(context.Background(), lab, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}

	leave(n1, "")
	if err := CheckHost(p); err != nil {
		t.Errorf("CheckHost with an empty leftover: %v", err)
	}
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	ping(t, n1, "198.18.0.2")
	if _, err := Destroy(context.Background(), lab, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}

	leave(n2, nsMarker(lab, "n2"))
	empty := topologies.Namespace(lab, "n4")
	leave(empty, "")
	stranger := topologies.Namespace(lab, "n3")
	leave(stranger, "not labctl's")
	t.Cleanup(func() { os.Remove(RunDir + "/" + stranger) })
	if err := CheckHost(p); err != nil {
		t.Errorf("CheckHost with this lab's leftover: %v", err)
	}
	ch, err := Destroy(context.Background(), lab, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(ch.Removed)); !slices.Equal(got, []string{"node n2 (unfinished)", "node n4 (unfinished)"}) {
		t.Errorf("removed %q", ch.Removed)
	}
	for _, ns := range []string{n2, empty} {
		if _, err := os.Stat(RunDir + "/" + ns); !os.IsNotExist(err) {
			t.Errorf("leftover %s is still there: %v", ns, err)
		}
	}
	if _, err := os.Stat(RunDir + "/" + stranger); err != nil {
		t.Errorf("the stranger's file is gone: %v", err)
	}
	os.Remove(RunDir + "/" + stranger)
}
