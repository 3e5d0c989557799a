package netns

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/labctl/labctl/topologies"
)

// TestNamesCannotCollide: lab L with node b-n1 and lab L-b with node n1
// were both labctl-L-b-n1 once, and the second up was refused. Now both
// are up at once and go down independently.
func TestNamesCannotCollide(t *testing.T) {
	a := uniqueLab(t)
	ab := a + "-b"
	ja, jab := newLab(t, a), newLab(t, ab)
	ctx := context.Background()
	pa := newPlan(a, "b-n1", "x")
	pa.Links = []topologies.Link{veth(end(pa, "b-n1", "eth0", "198.18.50.1/24"), end(pa, "x", "eth0", "198.18.50.2/24"))}
	pab := newPlan(ab, "n1", "y")
	pab.Links = []topologies.Link{veth(end(pab, "n1", "eth0", "198.18.51.1/24"), end(pab, "y", "eth0", "198.18.51.2/24"))}
	if pa.Nodes[0].Namespace == pab.Nodes[0].Namespace {
		t.Fatalf("both labs name a node %s", pa.Nodes[0].Namespace)
	}
	if _, err := Apply(ctx, nil, pa, Options{Journal: ja}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, nil, pab, Options{Journal: jab}); err != nil {
		t.Fatal(err)
	}
	ping(t, pa.Nodes[0].Namespace, "198.18.50.2")
	ping(t, pab.Nodes[0].Namespace, "198.18.51.2")

	if _, err := Destroy(ctx, a, pa, Options{Journal: ja}); err != nil {
		t.Fatal(err)
	}
	assertNoLab(t, a)
	if got, _ := List(ab); !slices.Equal(got, []string{pab.Nodes[0].Namespace, pab.Nodes[1].Namespace}) {
		t.Errorf("lab %s after lab %s went down: %q", ab, a, got)
	}
	ping(t, pab.Nodes[0].Namespace, "198.18.51.2")
	if _, err := Destroy(ctx, ab, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	assertNoLab(t, ab)
}

// TestDownOfOldNames: a lab made by an earlier version, whose namespaces
// are labctl-<lab>-<node> and labctl-<lab>--fabric, goes down with its
// plan, and without plan or journal (the sweep by marker); so does a lab
// of today's names beside it whose name starts like it.
func TestDownOfOldNames(t *testing.T) {
	for _, withPlan := range []bool{true, false} {
		lab := uniqueLab(t)
		newLab(t, lab)
		old := func(node string) string { return topologies.NamespacePrefix + lab + "-" + node }
		p := &topologies.Plan{Lab: lab, Fabric: old("-fabric")}
		for _, n := range []string{"n1", "n2", "n3"} {
			p.Nodes = append(p.Nodes, topologies.Node{Name: n, Namespace: old(n)})
		}
		e := func(node, addr string) topologies.Iface {
			return topologies.Iface{Node: node, Namespace: old(node), Name: "eth0", Addresses: []netip.Prefix{pfx(addr)}}
		}
		p.Links = []topologies.Link{veth(e("n1", "198.18.52.1/24"), e("n2", "198.18.52.2/24"))}
		p.Bridges = []topologies.Bridge{{Name: "br0"}}
		p.Links = append(p.Links, topologies.Link{ID: "bridge:br0:n3:eth0", Kind: topologies.KindVeth, Ends: []topologies.Iface{
			{Namespace: p.Fabric, Name: "br0-n3", Master: "br0"}, e("n3", "198.18.53.3/24")}})
		j, err := OpenJournal(t.TempDir() + "/journal")
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := Apply(ctx, nil, p, Options{Journal: j}); err != nil {
			t.Fatal(err)
		}
		if got, _ := List(lab); len(got) != 4 {
			t.Errorf("List(%s) = %q, want 3 nodes and the fabric", lab, got)
		}
		plan := p
		if !withPlan {
			plan = nil
		}
		ch, err := Destroy(ctx, lab, plan, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Removed) < 4 {
			t.Errorf("removed %q", ch.Removed)
		}
		assertNoLab(t, lab)
		j.Close()
	}
}
