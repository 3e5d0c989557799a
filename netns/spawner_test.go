package netns

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/labctl/labctl/topologies"
)

// TestSpawner: a process started by a Spawner lives in its node's network
// namespace and in a mount namespace of its own whose table holds none of
// RunDir's mounts, whatever the host's holds; and preparing it took
// nothing from the host's (RunDir and the lab's namespaces still mounted).
func TestSpawner(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	p := twoNodePlanPlain(lab)
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	s, err := NewSpawner(2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := topologies.Namespace(lab, "n1")
	for range 3 { // more than the workers: they are reused
		cmd := exec.Command("sh", "-c", "readlink /proc/self/ns/net /proc/self/ns/mnt; cat /proc/self/mountinfo")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := s.Start(ns, cmd); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		lines := strings.SplitN(out.String(), "\n", 3)
		if want := "net:[" + itoa(int(netnsInode(t, RunDir+"/"+ns))) + "]"; lines[0] != want {
			t.Errorf("the child's network namespace is %s, want %s", lines[0], want)
		}
		host, _ := os.Readlink("/proc/self/ns/mnt")
		if lines[1] == host {
			t.Error("the child shares the test's mount namespace")
		}
		if strings.Contains(lines[2], RunDir+"/") {
			t.Errorf("the child's mount table holds namespaces of %s:\n%s", RunDir, lines[2])
		}
	}
	// However often a spawner's thread comes from, the main thread's
	// namespaces (what /proc/self shows) never move.
	before, _ := os.Readlink("/proc/self/ns/mnt")
	for range 20 {
		sp, err := NewSpawner(3)
		if err != nil {
			t.Fatal(err)
		}
		sp.Close()
	}
	if after, _ := os.Readlink("/proc/self/ns/mnt"); after != before {
		t.Errorf("the main thread moved from %s to %s", before, after)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), RunDir+"/"+ns+" ") || !Exists(ns) {
		t.Error("the host lost the namespace's mount")
	}
}
