package netns

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/netns/cni"
	"github.com/labctl/labctl/topologies"
)

// cniPlan is a lab whose node worker attaches pod:eth0 with a bridge and
// host-local IPAM, then the plugin second (a stand-in written by
// fakePlugins), with no link of labctl's own.
func cniPlan(t testing.TB, lab, second string) *topologies.Plan {
	t.Helper()
	p, err := planCNI(lab, second)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func planCNI(lab, second string) (*topologies.Plan, error) {
	src := `name: ` + lab + `
defaults: {agent: false}
nodes:
  worker: {}
  pod: {}
links:
  - type: cni
    host: worker
    endpoints: [pod:eth0]
    config:
      cniVersion: 1.0.0
      name: ` + lab + `-net
      plugins:
        - type: bridge
          bridge: cni0
          isGateway: true
          ipam: {type: host-local, ranges: [[{subnet: 10.99.0.0/24}]]}
`
	if second != "" {
		src += "        - type: " + second + "\n"
	}
	top, err := topologies.Decode("cni.yaml", []byte(src))
	if err != nil {
		return nil, err
	}
	return top.Plan()
}

// fakePlugins writes stand-in plugins into a directory of their own: slow,
// whose ADD waits a minute (for a kill to land in), and fail, whose ADD
// fails with a CNI error. Both DEL without complaint, as the spec asks.
func fakePlugins(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	version := `{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}`
	for name, add := range map[string]string{
		"slow": `cat >/dev/null; sleep 60`,
		"fail": `cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"fail: this plugin refuses every ADD"}'; exit 1`,
	} {
		script := "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n" +
			"VERSION) echo '" + version + "' ;;\n" +
			"ADD) " + add + " ;;\n" +
			"*) cat >/dev/null ;;\nesac\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// cniRunner runs the pinned plugins and the stand-ins, with the lab's
// state in a directory of the test's.
func cniRunner(t testing.TB) *cni.Runner {
	return &cni.Runner{Path: append(labtest.CNIPlugins(t), fakePlugins(t)), Dir: t.TempDir(), NSDir: RunDir}
}

// newCNILab prepares a privileged test of a lab with cni links (newLab),
// with a runner of its own.
func newCNILab(t *testing.T) (string, *Journal, *cni.Runner) {
	t.Helper()
	privtest.Root(t)
	lab := uniqueLab(t)
	return lab, newLab(t, lab), cniRunner(t)
}

// reservations lists host-local's reservations of network net.
func reservations(t testing.TB, r *cni.Runner, net string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(r.Dir, "ipam", net, "10.*"))
	return files
}

// TestCNIAttachAndDetach attaches an endpoint, checks what the plugins
// made and where, and detaches it again by reconciling to a plan without
// it, which leaves the nodes alone.
func TestCNIAttachAndDetach(t *testing.T) {
	lab, j, r := newCNILab(t)
	ctx := context.Background()
	p := cniPlan(t, lab, "")
	if _, err := Apply(ctx, nil, p, Options{Journal: j, CNI: r}); err != nil {
		t.Fatal(err)
	}
	addrs := p.CNI[0].Addresses()
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0].String(), "10.99.0.") {
		t.Fatalf("the endpoint's addresses: %v (result %+v)", addrs, p.CNI[0].Result)
	}
	ping(t, topologies.Namespace(lab, "worker"), addrs[0].Addr().String())
	if n := len(reservations(t, r, lab+"-net")); n != 1 {
		t.Errorf("%d host-local reservations, want 1", n)
	}
	st, err := Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Drift(); len(d) > 0 {
		t.Errorf("drift: %+v", d)
	}
	// The same plan again changes nothing (the result is not part of it).
	again := cniPlan(t, lab, "")
	ch, err := Apply(ctx, p, again, Options{Journal: j, CNI: r})
	if err != nil || ch.Changed() {
		t.Fatalf("second apply: %+v, %v", ch, err)
	}
	if again.CNI[0].Result == nil {
		t.Error("an unchanged attachment lost its result")
	}
	// Changed CNI_ARGS: the attachment is recreated (DEL, then ADD), the
	// nodes are not.
	changed := cniPlan(t, lab, "")
	changed.CNI[0].Args = [][2]string{{"IgnoreUnknown", "true"}}
	ch, err = Apply(ctx, again, changed, Options{Journal: j, CNI: r})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Recreated) != 1 || ch.Recreated[0] != "cni "+changed.CNI[0].ID || len(ch.Created)+len(ch.Removed) != 0 {
		t.Errorf("change of args: %+v", ch)
	}
	if n := len(reservations(t, r, lab+"-net")); n != 1 {
		t.Errorf("%d host-local reservations after recreating, want 1", n)
	}
	again = changed
	// Without the cni link: DEL, the nodes stay.
	bare := cniPlan(t, lab, "")
	bare.CNI = nil
	ch, err = Apply(ctx, again, bare, Options{Journal: j, CNI: r})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Removed) != 1 || len(ch.Recreated)+len(ch.Created) != 0 {
		t.Errorf("change: %+v", ch)
	}
	assertDetached(t, lab, r)
}

// assertDetached checks that pod has no eth0, worker no veth, and
// host-local no reservation.
func assertDetached(t *testing.T, lab string, r *cni.Runner) {
	t.Helper()
	for node, kind := range map[string]string{"pod": "", "worker": "veth"} {
		ns, err := vnetns.GetFromPath(filepath.Join(RunDir, topologies.Namespace(lab, node)))
		if err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			t.Fatal(err)
		}
		links, err := h.LinkList()
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Attrs().Name == "eth0" && node == "pod" || kind != "" && l.Type() == kind {
				t.Errorf("node %s still has %s (%s)", node, l.Attrs().Name, l.Type())
			}
		}
	}
	if left := reservations(t, r, lab+"-net"); len(left) > 0 {
		t.Errorf("host-local reservations left: %q", left)
	}
}

// TestCNIChainFailureUndoesEarlierPlugins adds a cni link whose second
// plugin fails to a lab that is up: up fails with the plugin's own
// message, and what the first plugin made (the veth, the address
// reservation) is gone again, while the lab's nodes stay.
func TestCNIChainFailureUndoesEarlierPlugins(t *testing.T) {
	lab, j, r := newCNILab(t)
	ctx := context.Background()
	bare := cniPlan(t, lab, "fail")
	bare.CNI = nil
	if _, err := Apply(ctx, nil, bare, Options{Journal: j, CNI: r}); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(ctx, bare, cniPlan(t, lab, "fail"), Options{Journal: j, CNI: r})
	if err == nil || !strings.Contains(err.Error(), "this plugin refuses every ADD") || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("apply: %v; want the plugin's message, rolled back", err)
	}
	for _, node := range []string{"worker", "pod"} {
		if !Exists(topologies.Namespace(lab, node)) {
			t.Errorf("node %s was removed by the rollback of the cni link", node)
		}
	}
	assertDetached(t, lab, r)
}

// cniChild is the child of TestCNISigkill: it applies the plan with the
// slow plugin second, and is killed while that plugin runs.
func cniChild() error {
	lab, path, dir, plugins := os.Getenv("NETNS_TEST_LAB"), os.Getenv("NETNS_TEST_JOURNAL"), os.Getenv("NETNS_TEST_CNI_DIR"), os.Getenv("NETNS_TEST_CNI_PATH")
	j, err := OpenJournal(path)
	if err != nil {
		return err
	}
	p, err := planCNI(lab, "slow")
	if err != nil {
		return err
	}
	r := &cni.Runner{Path: filepath.SplitList(plugins), Dir: dir, NSDir: RunDir}
	_, err = Apply(context.Background(), nil, p, Options{Journal: j, CNI: r})
	return err
}

// TestCNISigkill kills up between a plugin's ADD and the journal's done
// record (the bridge plugin has made the veth and host-local has reserved
// an address; the second plugin is still running, so libcni has no cache
// entry), then downs the lab from the journal: nothing is left, the
// reservation included.
func TestCNISigkill(t *testing.T) {
	privtest.Root(t)
	lab := uniqueLab(t)
	path := filepath.Join(t.TempDir(), "journal")
	r := cniRunner(t)
	t.Cleanup(func() {
		Destroy(context.Background(), lab, nil, Options{})
		assertNoLab(t, lab)
	})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NETNS_TEST_CHILD=cni", "NETNS_TEST_LAB="+lab, "NETNS_TEST_JOURNAL="+path,
		"NETNS_TEST_CNI_DIR="+r.Dir, "NETNS_TEST_CNI_PATH="+strings.Join(r.Path, ":"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for len(reservations(t, r, lab+"-net")) == 0 {
		select {
		case err := <-exited:
			t.Fatalf("child exited before the bridge plugin's ADD: %v: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the bridge plugin reserved no address within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(`"op":"begin","kind":"cni"`)) || bytes.Contains(data, []byte(`"op":"done","kind":"cni"`)) {
		t.Fatalf("the kill did not land between the cni begin and done records:\n%s", data)
	}
	if caches, _ := filepath.Glob(filepath.Join(r.Dir, "cache", "results", "*")); len(caches) > 0 {
		t.Fatalf("libcni has a cache entry %q; the kill landed after the ADD", caches)
	}

	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := Destroy(context.Background(), lab, nil, Options{Journal: j, CNI: r}); err != nil {
		t.Fatal(err)
	}
	assertNoLab(t, lab)
	if left := reservations(t, r, lab+"-net"); len(left) > 0 {
		t.Errorf("host-local reservations left after down: %q", left)
	}
	if objs := j.objects(OpBegin, OpDone); len(objs) > 0 {
		t.Errorf("the journal still knows of %q", names(objs))
	}
}

// TestCNIDownWithoutPlugins: down works when the plugins that made the
// attachments are gone from the plugin path: the namespaces go, and the
// failed DEL is reported with what was removed.
func TestCNIDownWithoutPlugins(t *testing.T) {
	lab, j, r := newCNILab(t)
	ctx := context.Background()
	if _, err := Apply(ctx, nil, cniPlan(t, lab, ""), Options{Journal: j, CNI: r}); err != nil {
		t.Fatal(err)
	}
	gone := &cni.Runner{Path: []string{t.TempDir()}, Dir: r.Dir, NSDir: RunDir}
	ch, err := Destroy(ctx, lab, nil, Options{Journal: j, CNI: gone})
	if err != nil {
		t.Fatal(err)
	}
	assertNoLab(t, lab)
	if !slices.ContainsFunc(ch.Removed, func(s string) bool { return strings.Contains(s, "DEL failed") }) {
		t.Errorf("removed %q: the failed DEL is not reported", ch.Removed)
	}
	if objs := j.objects(OpBegin, OpDone); len(objs) > 0 {
		t.Errorf("the journal still knows of %q", names(objs))
	}
}
