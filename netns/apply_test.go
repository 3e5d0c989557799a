package netns

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/labctl/labctl/topologies"
)

func TestApplyTwoNodes(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	needTools(t, "ethtool", "tc")
	p := twoNodePlan(lab)
	ch, err := Apply(context.Background(), nil, p, Options{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"node n1", "node n2", "link veth:n1:eth0=n2:eth0"}; !slices.Equal(ch.Created, want) {
		t.Errorf("created %q, want %q", ch.Created, want)
	}
	for _, e := range p.Links[0].Ends {
		ns := e.Namespace
		lo := link(t, ns, "lo")
		if lo["ifalias"] != nsMarker(lab, e.Node) || !hasFlag(lo, "UP") {
			t.Errorf("%s: lo alias %v flags %v", ns, lo["ifalias"], lo["flags"])
		}
		l := link(t, ns, "eth0")
		if l["ifalias"] != ifaceMarker(lab) || !hasFlag(l, "UP") || l["mtu"] != 9000.0 ||
			l["num_tx_queues"] != 2.0 || l["num_rx_queues"] != 2.0 {
			t.Errorf("%s: eth0: %v", ns, l)
		}
		var want []string
		for _, a := range e.Addresses {
			want = append(want, a.String())
		}
		if got := addrs(t, ns, "eth0"); !slices.Equal(got, want) {
			t.Errorf("%s: eth0 addresses %q, want %q", ns, got, want)
		}
		if v := strings.TrimSpace(inNS(t, ns, "sysctl", "-n", "net.ipv6.conf.eth0.router_solicitations")); v != "0" {
			t.Errorf("%s: eth0 sends router solicitations (%s)", ns, v)
		}
		if k := inNS(t, ns, "ethtool", "-k", "eth0"); !strings.Contains(k, "generic-receive-offload: on") {
			t.Errorf("%s: gro is not on:\n%s", ns, k)
		}
		// No DAD: the link-local address, EUI-64 of the MAC, is usable.
		mac, _ := net.ParseMAC(l["address"].(string))
		ll, _ := linkLocal(mac)
		var llFlags []any
		for _, a := range ipJSON(t, ns, "-6", "addr", "show", "dev", "eth0", "scope", "link")[0]["addr_info"].([]any) {
			a := a.(map[string]any)
			if a["local"] == ll.Addr().String() {
				llFlags = append(llFlags, a["nodad"], a["tentative"])
			}
		}
		if len(llFlags) != 2 || llFlags[0] != true || llFlags[1] != nil {
			t.Errorf("%s: link-local %s: nodad, tentative = %v", ns, ll, llFlags)
		}
	}
	// tc prints rates in bytes per second, and tbf's latency, derived
	// from the limit Apply computed, in microseconds.
	n1, n2 := p.Nodes[0].Namespace, p.Nodes[1].Namespace
	q := ipQdisc(t, n1, "eth0")
	opts, _ := q["options"].(map[string]any)
	if q["kind"] != "tbf" || q["root"] != true || opts["rate"] != 12_500_000.0 || opts["burst"] != 32000.0 || opts["lat"] != 50000.0 {
		t.Errorf("n1: root qdisc %v", q)
	}
	q = ipQdisc(t, n2, "eth0")
	if opts, _ := q["options"].(map[string]any); q["kind"] != "htb" || q["handle"] != "1:" || opts["default"] != "0x1" {
		t.Errorf("n2: root qdisc %v", q)
	}
	// tc 6.1 prints htb classes as text even with -j.
	if c := inNS(t, n2, "tc", "class", "show", "dev", "eth0"); !strings.HasPrefix(c, "class htb 1:1 root ") || !strings.Contains(c, " rate 10Mbit ceil 20Mbit ") {
		t.Errorf("n2: htb classes: %s", c)
	}
	if mac := link(t, p.Nodes[0].Namespace, "eth0")["address"]; mac != "02:00:c6:12:00:01" {
		t.Errorf("n1: eth0 mac %v", mac)
	}
	ping(t, p.Nodes[0].Namespace, "198.18.0.2")
	ping(t, p.Nodes[0].Namespace, "2001:db8::2")
	st, err := Observe(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Drift(); len(d) > 0 {
		t.Errorf("drift right after apply: %+v", d)
	}
}

func TestApplyBridges(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	p := bridgePlan(lab)
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	fab := p.Fabric
	if lo := link(t, fab, "lo"); lo["ifalias"] != fabricMarker(lab) {
		t.Errorf("fabric lo alias %v", lo["ifalias"])
	}
	for _, br := range []string{"br0", "br1"} {
		l := link(t, fab, br)
		info, _ := l["linkinfo"].(map[string]any)
		if info["info_kind"] != "bridge" || l["ifalias"] != ifaceMarker(lab) || !hasFlag(l, "UP") {
			t.Errorf("fabric: %s: %v", br, l)
		}
	}
	for port, br := range map[string]string{"br0-n1": "br0", "br0-n2": "br0", "br0-n3": "br0", "br1-n4": "br1", "br1-br0": "br1", "br0-br1": "br0"} {
		if l := link(t, fab, port); l["master"] != br || l["ifalias"] != ifaceMarker(lab) {
			t.Errorf("fabric: %s: master %v alias %v, want %s", port, l["master"], l["ifalias"], br)
		}
	}
	if v := strings.TrimSpace(inNS(t, fab, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6")); v != "1" {
		t.Errorf("fabric: IPv6 is on (disable_ipv6 %s)", v)
	}
	n1 := p.Nodes[0].Namespace
	ping(t, n1, "198.18.0.2")
	ping(t, n1, "198.18.0.4") // through br0, the wire, and br1
}

func TestApplyRouted(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	p := routedPlan(lab)
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	r, h1, h2 := topologiesNS(lab, "r"), topologiesNS(lab, "h1"), topologiesNS(lab, "h2")
	for key, want := range map[string]string{"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"} {
		if got := strings.TrimSpace(inNS(t, r, "sysctl", "-n", key)); got != want {
			t.Errorf("r: %s = %s, want %s", key, got, want)
		}
	}
	routes := map[string]map[string]any{}
	for _, fam := range []string{"-4", "-6"} {
		for _, rt := range ipJSON(t, h1, fam, "route", "show", "proto", "static") {
			routes[rt["dst"].(string)+fam] = rt
		}
	}
	if rt := routes["default-4"]; rt["gateway"] != "198.18.1.1" || rt["dev"] != "eth0" {
		t.Errorf("h1: default route %v", rt)
	}
	if rt := routes["default-6"]; rt["gateway"] != "2001:db8:1::1" || rt["dev"] != "eth0" {
		t.Errorf("h1: IPv6 default route %v", rt)
	}
	rt := ipJSON(t, h2, "route", "show", "198.18.1.0/24")
	if len(rt) != 1 || rt[0]["gateway"] != "198.18.2.1" || rt[0]["metric"] != 10.0 || rt[0]["protocol"] != "static" {
		t.Errorf("h2: route to 198.18.1.0/24: %v", rt)
	}
	ping(t, h1, "198.18.2.2")
	ping(t, h1, "2001:db8:2::2")
	ping(t, h2, "198.18.1.2")
}

func topologiesNS(lab, node string) string { return topologies.Namespace(lab, node) }
