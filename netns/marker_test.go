package netns

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/sysctl/sysctltest"
)

func TestNSMarker(t *testing.T) {
	cases := []struct {
		alias, lab, node string
		ok               bool
	}{
		{nsMarker("a", "n1"), "a", "n1", true},
		{nsMarker("a-b", "n1"), "a-b", "n1", true},
		{nsMarker("a", "b-n1"), "a", "b-n1", true},
		{fabricMarker("a-b"), "a-b", "fabric", true},
		{ifaceMarker("a"), "", "", false},
		{"labctl:", "", "", false},
		{"labctl:a:", "", "", false},
		{"other:a:n1", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		lab, node, ok := parseNSMarker(c.alias)
		if lab != c.lab || node != c.node || ok != c.ok {
			t.Errorf("parseNSMarker(%q) = %q, %q, %v; want %q, %q, %v", c.alias, lab, node, ok, c.lab, c.node, c.ok)
		}
	}
	// The alias, not the name, tells lab a's node b-n1 from lab a-b's n1.
	if nsMarker("a", "b-n1") == nsMarker("a-b", "n1") {
		t.Fatal("markers of different labs collide")
	}
}

func TestHostMarker(t *testing.T) {
	st := hostState{
		Name:  "enp3s0",
		MTU:   1500,
		MAC:   "02:00:00:00:00:01",
		Up:    true,
		Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.200.1/24"), netip.MustParsePrefix("2001:db8::1/64")},
		Alias: "uplink: to the lab switch",
	}
	m, err := hostMarker("a-b", st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m, "labctl:a-b:host:{") {
		t.Fatalf("marker %q", m)
	}
	lab, got, ok := parseHostMarker(m)
	if !ok || lab != "a-b" || !reflect.DeepEqual(got, st) {
		t.Fatalf("parseHostMarker(%q) = %q, %+v, %v", m, lab, got, ok)
	}
	for _, bad := range []string{"", "labctl:a", nsMarker("a", "host"), "labctl:a:host:", "labctl:a:host:{", `labctl::host:{"name":"x"}`, `labctl:a:host:{"mtu":1}`} {
		if _, _, ok := parseHostMarker(bad); ok {
			t.Errorf("parseHostMarker(%q) accepted it", bad)
		}
	}

	// Too many addresses do not fit in an ifalias.
	st.Addrs = nil
	for i := 0; i < 8; i++ {
		st.Addrs = append(st.Addrs, netip.MustParsePrefix("2001:db8:aaaa:bbbb:cccc:dddd:eeee:"+string(rune('1'+i))+"/64"))
	}
	if _, err := hostMarker("a", st); err == nil || !strings.Contains(err.Error(), "the kernel keeps 255") {
		t.Fatalf("hostMarker with 8 long addresses: %v", err)
	}
}

// TestSysctlKeys: a node's sysctls map to files by the shared rule, and
// only net.* keys are taken.
func TestSysctlKeys(t *testing.T) {
	for _, c := range sysctltest.Corpus(t) {
		err := netSysctl(c.Key)
		if (err != nil) != (c.Error != "") || (err != nil && !strings.Contains(err.Error(), c.Error)) {
			t.Errorf("netSysctl(%q) = %v; want error %q", c.Key, err, c.Error)
		}
	}
	if err := netSysctl("kernel.pid_max"); err == nil || !strings.Contains(err.Error(), "only net.* sysctls") {
		t.Errorf("netSysctl(kernel.pid_max) = %v", err)
	}
}

func TestLinkLocal(t *testing.T) {
	for _, c := range []struct {
		mac, want string
	}{
		{"02:00:c6:12:00:01", "fe80::c6ff:fe12:1/64"},
		{"3e:8d:18:02:72:29", "fe80::3c8d:18ff:fe02:7229/64"}, // as the kernel made it (ip -6 addr)
	} {
		mac, _ := net.ParseMAC(c.mac)
		got, ok := linkLocal(mac)
		if !ok || got.String() != c.want {
			t.Errorf("linkLocal(%s) = %s, %v; want %s", c.mac, got, ok, c.want)
		}
	}
	if _, ok := linkLocal(net.HardwareAddr{1, 2, 3}); ok {
		t.Error("linkLocal accepted a 3-byte address")
	}
}
