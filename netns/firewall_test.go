package netns

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/netns/firewall"
	"github.com/labctl/labctl/topologies"
)

func TestApplyFirewall(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	needTools(t, "nft")
	p := newPlan(lab, "n1", "n2")
	p.Links = []topologies.Link{veth(end(p, "n1", "eth0", "198.18.0.1/24"), end(p, "n2", "eth0", "198.18.0.2/24"))}
	p.Nodes[1].Firewall = []topologies.Rule{
		{Chain: "input", Proto: "udp", Dport: topologies.PortRange{Lo: 9, Hi: 9}, Action: "drop"},
		{Chain: "output", Proto: "udp", Dport: topologies.PortRange{Lo: 10, Hi: 10}, Action: "drop", Comment: "no replies"},
		{Chain: "input", Family: "ip", Proto: "icmp", Action: "accept"},
	}
	if _, err := Apply(context.Background(), nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	n1, n2 := p.Nodes[0].Namespace, p.Nodes[1].Namespace
	counters := func() []firewall.Counter {
		t.Helper()
		c, err := firewall.ParseCounters([]byte(inNS(t, n2, "nft", "-j", "list", "ruleset")))
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 3 {
			t.Fatalf("n2: %d labctl rules, want 3: %+v", len(c), c)
		}
		return c
	}
	for _, c := range counters() {
		if c.Packets != 0 {
			t.Fatalf("rule %d counted %d packets before any traffic", c.Rule, c.Packets)
		}
	}

	// INPUT: a datagram to port 9 is dropped by rule 0.
	if err := sendUDP(n1, netip.MustParseAddrPort("198.18.0.2:9")); err != nil {
		t.Fatal(err)
	}
	// OUTPUT: the kernel reports the drop to the sender (EPERM), rule 1.
	if err := sendUDP(n2, netip.MustParseAddrPort("198.18.0.1:10")); !errors.Is(err, unix.EPERM) {
		t.Errorf("send through an OUTPUT drop: %v, want EPERM", err)
	}
	ping(t, n1, "198.18.0.2")
	c := counters()
	if c[0].Chain != "input" || c[0].Packets < 1 || c[1].Chain != "output" || c[1].Packets < 1 || c[2].Packets < 1 {
		t.Errorf("counters after traffic: %+v", c)
	}
	if c[0].Packets != 1 || c[1].Packets != 1 {
		t.Errorf("drop rules counted %d and %d packets, want one each", c[0].Packets, c[1].Packets)
	}

	// The golden scripts of the firewall package load into a real nft.
	files, _ := filepath.Glob(filepath.Join("firewall", "testdata", "*.nft"))
	if len(files) == 0 {
		t.Fatal("no golden nft scripts")
	}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		inNS(t, n1, "nft", "-c", "-f", abs)
	}
}

// sendUDP sends one datagram from inside namespace ns, with raw syscalls
// on a thread in the namespace.
func sendUDP(ns string, dst netip.AddrPort) error {
	return Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, []byte("labctl"), 0, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
	})
}
