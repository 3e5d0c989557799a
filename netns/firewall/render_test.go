package firewall

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/golden"
	"github.com/labctl/labctl/topologies"
)

func TestRender(t *testing.T) {
	cases := []struct {
		name  string
		rules []topologies.Rule
	}{
		{"empty", nil},
		{"drop-udp-input-and-all-output", []topologies.Rule{
			{Chain: "input", Proto: "udp", Dport: topologies.PortRange{Lo: 9, Hi: 9}, Action: "drop"},
			{Chain: "output", Action: "drop", Comment: "block everything"},
		}},
		{"addresses-ports-interfaces", []topologies.Rule{
			{Chain: "input", Family: "ip", Proto: "tcp", Src: netip.MustParsePrefix("198.18.0.0/24"), Dport: topologies.PortRange{Lo: 1024, Hi: 65535}, In: "eth0", Action: "reject"},
			{Chain: "forward", Family: "ip6", Dst: netip.MustParsePrefix("2001:db8::1/128"), Out: "eth1", Action: "accept"},
			{Chain: "forward", Family: "ip", Src: netip.MustParsePrefix("198.18.1.7/24"), Action: "drop", Comment: "prefix is masked"},
			{Chain: "output", Proto: "udp", Sport: topologies.PortRange{Lo: 53, Hi: 53}, Action: "accept"},
			{Chain: "input", Proto: "tcp", Action: "accept"},
		}},
		{"families-and-icmp", []topologies.Rule{
			{Chain: "input", Family: "ip", Proto: "icmp", Action: "drop"},
			{Chain: "input", Family: "ip6", Proto: "icmpv6", Action: "accept"},
			{Chain: "output", Family: "ip6", Action: "drop"},
			{Chain: "input", Proto: "icmp", Action: "accept"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Render(c.rules)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", c.name+".nft"), []byte(got))
		})
	}
}

func TestRenderErrors(t *testing.T) {
	cases := []struct {
		name string
		rule topologies.Rule
		want string // substring of the error
	}{
		{"chain", topologies.Rule{Chain: "prerouting", Action: "drop"}, `firewall[0]: chain "prerouting"`},
		{"action", topologies.Rule{Chain: "input", Action: "log"}, `action "log"`},
		{"proto", topologies.Rule{Chain: "input", Proto: "sctp", Action: "drop"}, `proto "sctp"`},
		{"ports without proto", topologies.Rule{Chain: "input", Dport: topologies.PortRange{Lo: 1, Hi: 1}, Action: "drop"}, "ports need proto tcp or udp"},
		{"icmp ports", topologies.Rule{Chain: "input", Proto: "icmp", Dport: topologies.PortRange{Lo: 1, Hi: 1}, Action: "drop"}, "proto icmp has no ports"},
		{"in on output", topologies.Rule{Chain: "output", In: "eth0", Action: "drop"}, "output chain has no input interface"},
		{"out on input", topologies.Rule{Chain: "input", Out: "eth0", Action: "drop"}, "input chain has no output interface"},
		{"family mismatch", topologies.Rule{Chain: "input", Family: "ip6", Src: netip.MustParsePrefix("198.18.0.1/32"), Action: "drop"}, "is not an ip6 address"},
		{"mixed families", topologies.Rule{Chain: "input", Src: netip.MustParsePrefix("198.18.0.1/32"), Dst: netip.MustParsePrefix("2001:db8::/64"), Action: "drop"}, "is not an ip address"},
		{"icmpv6 on ip", topologies.Rule{Chain: "input", Family: "ip", Proto: "icmpv6", Action: "drop"}, "proto icmpv6 in a rule for family ip"},
		{"quote in comment", topologies.Rule{Chain: "input", Action: "drop", Comment: `say "hi"`}, "quotes, backslashes and control characters"},
		{"newline in interface", topologies.Rule{Chain: "input", In: "eth0\n", Action: "drop"}, "in \"eth0\\n\""},
		{"long comment", topologies.Rule{Chain: "input", Action: "drop", Comment: strings.Repeat("x", 125)}, "longer than nft's 128 bytes"},
		{"bad family", topologies.Rule{Chain: "input", Family: "arp", Action: "drop"}, `family "arp"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Render([]topologies.Rule{c.rule})
			if err == nil {
				t.Fatalf("Render accepted %+v", c.rule)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestComment(t *testing.T) {
	for _, c := range []struct {
		index int
		user  string
		want  string
	}{
		{0, "", "labctl:0"},
		{12, "drop dns", "labctl:12 drop dns"},
	} {
		got := Comment(c.index, c.user)
		if got != c.want {
			t.Errorf("Comment(%d, %q) = %q, want %q", c.index, c.user, got, c.want)
		}
		if i, ok := ruleIndex(got); !ok || i != c.index {
			t.Errorf("ruleIndex(%q) = %d, %v; want %d, true", got, i, ok, c.index)
		}
	}
	for _, bad := range []string{"", "labctl:", "labctl:x", "labctl:-1", "other:3", "labctl 3"} {
		if i, ok := ruleIndex(bad); ok {
			t.Errorf("ruleIndex(%q) = %d, true; want false", bad, i)
		}
	}
}
