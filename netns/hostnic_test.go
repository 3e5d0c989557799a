package netns

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/topologies"
)

// hostNICs makes the stand-in host interfaces of a lab and the namespace
// that holds their far ends: one to be a macvlan parent, one to be moved
// (with MTU 1400, an address, an alias, up), and a plan using both.
func hostNICs(t *testing.T, lab string) (p *topologies.Plan, parent, moved string) {
	t.Helper()
	far := "lct-" + lab
	helperNS(t, far)
	parent, moved = "s"+lab[1:]+"m", "s"+lab[1:]+"v"
	standIn(t, parent, far, "198.18.201.1/24")
	lk := standIn(t, moved, far, "198.18.202.1/24")
	if err := netlink.LinkSetUp(mustLink(t, parent)); err != nil {
		t.Fatal(err)
	}
	if err := setStandIn(lk); err != nil {
		t.Fatal(err)
	}
	p = newPlan(lab, "m1", "m2")
	mv := end(p, "m2", "eth1", "198.18.202.2/24")
	mv.MTU = 1500
	p.Links = []topologies.Link{
		{ID: "host:m1:mv0", Kind: topologies.KindMacvlan, Host: parent, MacvlanMode: "bridge", Ends: []topologies.Iface{end(p, "m1", "mv0", "198.18.201.2/24")}},
		{ID: "host:m2:eth1", Kind: topologies.KindMove, Host: moved, Ends: []topologies.Iface{mv}},
	}
	return p, parent, moved
}

// setStandIn gives a stand-in to be moved a state that a restore must
// bring back: MTU 1400, an address, an alias, up (assertRestored).
func setStandIn(lk netlink.Link) error {
	for _, err := range []error{
		netlink.LinkSetMTU(lk, 1400),
		netlink.AddrAdd(lk, addrOf(pfx("198.18.210.1/24"))),
		netlink.LinkSetAlias(lk, labtest.Marker()),
		netlink.LinkSetUp(lk),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

func mustLink(t testing.TB, name string) netlink.Link {
	t.Helper()
	lk, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return lk
}

// assertRestored checks that stand-in name is back in the host as
// hostNICs made it.
func assertRestored(t testing.TB, name string) {
	t.Helper()
	l := link(t, "", name)
	if l["mtu"] != 1400.0 || l["ifalias"] != labtest.Marker() || !hasFlag(l, "UP") {
		t.Errorf("host interface %s not restored: %v", name, l)
	}
	if got := addrs(t, "", name); !slices.Equal(got, []string{"198.18.210.1/24"}) {
		t.Errorf("host interface %s addresses %q, want 198.18.210.1/24", name, got)
	}
}

func TestApplyHostNIC(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	p, parent, moved := hostNICs(t, lab)
	if err := CheckHost(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	m1, m2 := p.Nodes[0].Namespace, p.Nodes[1].Namespace

	l := link(t, m1, "mv0")
	info, _ := l["linkinfo"].(map[string]any)
	data, _ := info["info_data"].(map[string]any)
	if info["info_kind"] != "macvlan" || data["mode"] != "bridge" || l["ifalias"] != ifaceMarker(lab) {
		t.Errorf("m1: mv0: %v", l)
	}
	if _, err := netlink.LinkByName("mv0"); err == nil {
		t.Error("the macvlan shows up in the host")
	}
	ping(t, m1, "198.18.201.1")

	l = link(t, m2, "eth1")
	if l["mtu"] != 1500.0 || !strings.HasPrefix(l["ifalias"].(string), "labctl:"+lab+":host:") {
		t.Errorf("m2: eth1: %v", l)
	}
	if _, err := netlink.LinkByName(moved); err == nil {
		t.Errorf("%s is still in the host", moved)
	}
	ping(t, m2, "198.18.202.1")
	st, err := Observe(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Drift(); len(d) > 0 {
		t.Errorf("drift: %+v", d)
	}
	// While this lab holds the interface, the plan still checks (it is
	// this lab's), and another lab's does not.
	if err := CheckHost(p); err != nil {
		t.Errorf("CheckHost of the applied plan: %v", err)
	}
	other := newPlan(lab+"-o", "x")
	other.Links = []topologies.Link{{ID: "host:x:eth1", Kind: topologies.KindMove, Host: moved, Pos: topologies.Pos{File: "o.yaml", Line: 3, Column: 5},
		Ends: []topologies.Iface{end(other, "x", "eth1")}}}
	var te *topologies.Error
	if err := CheckHost(other); !errors.As(err, &te) || te.Pos.Line != 3 || !strings.Contains(err.Error(), "moved there by lab "+lab) {
		t.Errorf("CheckHost of another lab wanting %s: %v", moved, err)
	}

	ch, err := Destroy(context.Background(), lab, p, Options{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ch.Removed, "host interface "+moved+" (restored)") {
		t.Errorf("destroy did not report the restore: %q", ch.Removed)
	}
	assertRestored(t, moved)
	if l := link(t, "", parent); !hasFlag(l, "UP") {
		t.Errorf("macvlan parent %s: %v", parent, l)
	}
}

func TestCheckHost(t *testing.T) {
	lab := uniqueLab(t)
	newLab(t, lab)
	p, _, moved := hostNICs(t, lab)
	if err := CheckHost(p); err != nil {
		t.Fatalf("CheckHost: %v", err)
	}

	// A missing interface points into the file.
	q := newPlan(lab, "m1")
	q.Links = []topologies.Link{{ID: "host:m1:eth9", Kind: topologies.KindMacvlan, Host: "nonexistent0", Pos: topologies.Pos{File: "t.yaml", Line: 12, Column: 7},
		Ends: []topologies.Iface{end(q, "m1", "eth9")}}}
	err := CheckHost(q)
	var list topologies.ErrorList
	if !errors.As(err, &list) || len(list) != 1 || err.Error() != "t.yaml:12:7: interface: link host:m1:eth9: host interface nonexistent0 does not exist" {
		t.Errorf("missing host interface: %v", err)
	}
	if !topologies.IsInvalid(err) {
		t.Errorf("not a topologies.Error: %v", err)
	}

	// An interface whose alias says another lab holds it.
	lk := mustLink(t, moved)
	st, _ := readHost(netlinkHandle(t), lk)
	marker, _ := hostMarker("elsewhere", st)
	if err := netlink.LinkSetAlias(lk, marker); err != nil {
		t.Fatal(err)
	}
	err = CheckHost(p)
	if err == nil || !strings.Contains(err.Error(), "host interface "+moved+" is held by lab elsewhere") {
		t.Errorf("held interface: %v", err)
	}
	if err := netlink.LinkSetAlias(lk, labtest.Marker()); err != nil {
		t.Fatal(err)
	}
}

func netlinkHandle(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}
