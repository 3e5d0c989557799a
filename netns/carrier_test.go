package netns

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/topologies"
)

// TestUpThenPing: when Apply returns, every kind of link carries the first
// packet sent over it — veth, a bridge wired to another bridge, a macvlan
// on a host interface, and a host interface moved into a node. Run it
// under load to check it (scripts/stress.sh go test -count=50 ...): until
// up waited for the links, a ping right after it could be lost on a busy
// machine.
func TestUpThenPing(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	p, parent, _ := hostNICs(t, lab)
	if err := netlink.LinkSetUp(mustLink(t, parent)); err != nil {
		t.Fatal(err)
	}
	p.Nodes = append(p.Nodes,
		topologies.Node{Name: "v1", Namespace: topologies.Namespace(lab, "v1")},
		topologies.Node{Name: "v2", Namespace: topologies.Namespace(lab, "v2")},
		topologies.Node{Name: "b1", Namespace: topologies.Namespace(lab, "b1")},
		topologies.Node{Name: "b2", Namespace: topologies.Namespace(lab, "b2")})
	p.Links = append(p.Links, veth(end(p, "v1", "eth0", "198.18.40.1/24", "2001:db8:40::1/64"), end(p, "v2", "eth0", "198.18.40.2/24", "2001:db8:40::2/64")))
	addBridge(p, "br0", []topologies.Iface{end(p, "b1", "eth0", "198.18.41.1/24")})
	addBridge(p, "br1", []topologies.Iface{end(p, "b2", "eth0", "198.18.41.2/24")}, "br0")

	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	ns := func(node string) string { return topologies.Namespace(lab, node) }
	for _, c := range []struct{ from, to, what string }{
		{ns("v1"), "198.18.40.2", "veth"},
		{ns("v2"), "2001:db8:40::1", "veth, IPv6"},
		{ns("b1"), "198.18.41.2", "two bridges"},
		{ns("m1"), "198.18.201.1", "macvlan on a host interface"},
		{ns("m2"), "198.18.202.1", "a host interface moved in"},
	} {
		out, err := Command(context.Background(), c.from, "ping", "-c1", "-W5", c.to).CombinedOutput()
		if err != nil {
			t.Errorf("%s: the first ping from %s to %s right after up: %v\n%s", c.what, c.from, c.to, err, strings.TrimSpace(string(out)))
		}
	}
}
