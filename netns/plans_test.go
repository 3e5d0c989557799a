package netns

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/topologies"
)

// Plans built by hand, as topologies.Load will build them from YAML.

// uniqueLab names a lab that no other test, run or package uses at the
// same time, after this test process (see labtest).
func uniqueLab(t testing.TB) string {
	t.Helper()
	return labtest.Lab()
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func newPlan(lab string, nodes ...string) *topologies.Plan {
	p := &topologies.Plan{Lab: lab, Pool: "198.18.0.0/15"}
	for _, n := range nodes {
		p.Nodes = append(p.Nodes, topologies.Node{Name: n, Namespace: topologies.Namespace(lab, n)})
	}
	return p
}

// end is an interface of node in plan p.
func end(p *topologies.Plan, node, name string, addrs ...string) topologies.Iface {
	e := topologies.Iface{Node: node, Namespace: topologies.Namespace(p.Lab, node), Name: name}
	for _, a := range addrs {
		e.Addresses = append(e.Addresses, pfx(a))
	}
	return e
}

// veth joins two ends.
func veth(a, b topologies.Iface) topologies.Link {
	return topologies.Link{
		ID:   fmt.Sprintf("veth:%s:%s=%s:%s", a.Node, a.Name, b.Node, b.Name),
		Kind: topologies.KindVeth,
		Ends: []topologies.Iface{a, b},
	}
}

// addBridge adds bridge br to p, with one member link per node end and
// a wire to each bridge in wires.
func addBridge(p *topologies.Plan, br string, members []topologies.Iface, wires ...string) {
	p.Fabric = topologies.FabricNamespace(p.Lab)
	p.Bridges = append(p.Bridges, topologies.Bridge{Name: br})
	for _, m := range members {
		port := topologies.Iface{Namespace: p.Fabric, Name: br + "-" + m.Node, Master: br}
		p.Links = append(p.Links, topologies.Link{
			ID:   fmt.Sprintf("bridge:%s:%s:%s", br, m.Node, m.Name),
			Kind: topologies.KindVeth,
			Ends: []topologies.Iface{port, m},
		})
	}
	for _, other := range wires {
		p.Links = append(p.Links, topologies.Link{
			ID:   fmt.Sprintf("wire:%s=%s", br, other),
			Kind: topologies.KindVeth,
			Ends: []topologies.Iface{
				{Namespace: p.Fabric, Name: br + "-" + other, Master: br},
				{Namespace: p.Fabric, Name: other + "-" + br, Master: other},
			},
		})
	}
}

// twoNodePlan is two nodes on one veth pair with every per-interface
// setting: IPv4 and IPv6 addresses, MAC, MTU, queues, offloads, and a root
// qdisc (tbf on n1's end, htb on n2's).
func twoNodePlan(lab string) *topologies.Plan {
	p := newPlan(lab, "n1", "n2")
	a := end(p, "n1", "eth0", "198.18.0.1/24", "2001:db8::1/64")
	b := end(p, "n2", "eth0", "198.18.0.2/24", "2001:db8::2/64")
	a.MAC = "02:00:c6:12:00:01"
	for _, e := range []*topologies.Iface{&a, &b} {
		e.MTU = 9000
		e.TxQueues, e.RxQueues = 2, 2
		e.Offloads = []topologies.Offload{{Name: "gro", On: true}}
	}
	a.Qdisc = &topologies.Qdisc{Kind: "tbf", Rate: 12_500_000, Burst: 32_000, Latency: 50_000_000}
	b.Qdisc = &topologies.Qdisc{Kind: "htb", Rate: 1_250_000, Ceil: 2_500_000}
	p.Links = []topologies.Link{veth(a, b)}
	return p
}

// bridgePlan is three nodes on br0, and a fourth on br1 wired to br0.
func bridgePlan(lab string) *topologies.Plan {
	p := newPlan(lab, "n1", "n2", "n3", "n4")
	addBridge(p, "br0", []topologies.Iface{
		end(p, "n1", "eth0", "198.18.0.1/24"),
		end(p, "n2", "eth0", "198.18.0.2/24"),
		end(p, "n3", "eth0", "198.18.0.3/24"),
	})
	addBridge(p, "br1", []topologies.Iface{end(p, "n4", "eth0", "198.18.0.4/24")}, "br0")
	return p
}

// routedPlan is h1 - r - h2 with forwarding on r and default routes on the
// hosts, in both families.
func routedPlan(lab string) *topologies.Plan {
	p := newPlan(lab, "h1", "r", "h2")
	p.Links = []topologies.Link{
		veth(end(p, "h1", "eth0", "198.18.1.2/24", "2001:db8:1::2/64"), end(p, "r", "eth0", "198.18.1.1/24", "2001:db8:1::1/64")),
		veth(end(p, "h2", "eth0", "198.18.2.2/24", "2001:db8:2::2/64"), end(p, "r", "eth1", "198.18.2.1/24", "2001:db8:2::1/64")),
	}
	r, _ := p.Node("r")
	r.Sysctls = []topologies.Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}, {Key: "net.ipv6.conf.all.forwarding", Value: "1"}}
	h1, _ := p.Node("h1")
	h1.Routes = []topologies.Route{
		{Dst: pfx("0.0.0.0/0"), Via: netip.MustParseAddr("198.18.1.1")},
		{Dst: pfx("::/0"), Via: netip.MustParseAddr("2001:db8:1::1"), Dev: "eth0"},
	}
	h2, _ := p.Node("h2")
	h2.Routes = []topologies.Route{
		{Dst: pfx("198.18.1.0/24"), Via: netip.MustParseAddr("198.18.2.1"), Metric: 10},
		{Dst: pfx("::/0"), Via: netip.MustParseAddr("2001:db8:2::1")},
	}
	return p
}

// linearPlan is Mininet's linear,n with Linux bridges: node i on bridge
// si, and the bridges chained s1 - s2 - ... - sn.
func linearPlan(lab string, n int) *topologies.Plan {
	p := &topologies.Plan{Lab: lab}
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("h%d", i)
		p.Nodes = append(p.Nodes, topologies.Node{Name: node, Namespace: topologies.Namespace(lab, node)})
	}
	for i := 1; i <= n; i++ {
		var wires []string
		if i > 1 {
			wires = []string{fmt.Sprintf("s%d", i-1)}
		}
		ip := fmt.Sprintf("198.18.%d.%d/16", i/250, i%250+1)
		addBridge(p, fmt.Sprintf("s%d", i), []topologies.Iface{end(p, fmt.Sprintf("h%d", i), "eth0", ip)}, wires...)
	}
	return p
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
