package topologies

import (
	"net/netip"
	"strings"
)

var (
	chains  = map[string]bool{"input": true, "output": true, "forward": true}
	actions = map[string]bool{"accept": true, "drop": true, "reject": true}
	protos  = map[string]string{"": "", "tcp": "", "udp": "", "icmp": "ip", "icmpv6": "ip6"}
)

// rules checks each node's firewall rules and resolves their family.
func (b *builder) rules() {
	for ni := range b.plan.Nodes {
		n := &b.plan.Nodes[ni]
		for _, pr := range b.specs[ni].rules {
			if r, ok := b.rule(n.Name, pr.path, pr.v); ok {
				n.Firewall = append(n.Firewall, r)
			}
		}
	}
}

func (b *builder) rule(node, path string, s RuleSpec) (Rule, bool) {
	errs := len(b.errs)
	r := Rule{Chain: s.Chain, Proto: s.Proto, Sport: s.Sport, Dport: s.Dport, In: s.In, Out: s.Out, Action: s.Action, Comment: s.Comment}
	if !chains[s.Chain] {
		b.errorf(path+".chain", "expected chain input, output or forward, got %q", s.Chain)
	}
	if !actions[s.Action] {
		b.errorf(path+".action", "expected action accept, drop or reject, got %q", s.Action)
	}
	family, ok := protos[s.Proto]
	if !ok {
		b.errorf(path+".proto", "expected proto tcp, udp, icmp or icmpv6, got %q", s.Proto)
	}
	if (!s.Sport.IsZero() || !s.Dport.IsZero()) && s.Proto != "tcp" && s.Proto != "udp" {
		b.errorf(path+".proto", "ports need proto tcp or udp")
	}
	for _, f := range []struct {
		field, value string
		out          *netip.Prefix
	}{{"src", s.Src, &r.Src}, {"dst", s.Dst, &r.Dst}} {
		if f.value == "" {
			continue
		}
		p, err := netip.ParsePrefix(f.value)
		if err != nil {
			a, err2 := netip.ParseAddr(f.value)
			if err2 != nil {
				b.errorf(path+"."+f.field, "expected an address or prefix, got %q", f.value)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p != p.Masked() {
			b.errorf(path+"."+f.field, "prefix %s has host bits set; did you mean %s?", p, p.Masked())
			continue
		}
		fam := "ip"
		if p.Addr().Is6() {
			fam = "ip6"
		}
		if family != "" && family != fam {
			b.errorf(path+"."+f.field, "%s is %s but the rule is already %s (by its protocol or other address)", p, familyName(fam), familyName(family))
			continue
		}
		family = fam
		*f.out = p
	}
	r.Family = family
	b.ruleIface(node, path+".in", s.In, s.Chain != "output", "in applies to input and forward chains")
	b.ruleIface(node, path+".out", s.Out, s.Chain != "input", "out applies to output and forward chains")
	if strings.ContainsAny(s.Comment, "\"\n\r") || len(s.Comment) > 100 {
		b.errorf(path+".comment", "a comment is one line of at most 100 characters without double quotes")
	}
	return r, len(b.errs) == errs
}

func (b *builder) ruleIface(node, path, name string, allowed bool, why string) {
	switch {
	case name == "":
	case !allowed:
		b.errorf(path, "%s", why)
	case name != "lo" && b.ifaces[node+":"+name].spec == nil:
		b.errorf(path, "node %s has no interface %q", node, name)
	}
}

func familyName(f string) string {
	if f == "ip6" {
		return "IPv6"
	}
	return "IPv4"
}
