// Package firewall renders a node's firewall rules into the nftables script
// that `labctl up` loads into the node's namespace, and reads the per-rule
// counters back, so that an experiment can tell how many packets each rule
// matched. It is pure: loading the script (`nft -f -` inside the namespace)
// is netns's job.
//
// Every node gets one table, `inet labctl`, with the base chains input,
// output and forward. Every rule carries a `counter` and a comment that
// starts with "labctl:<index>", index being the rule's position in the
// node's firewall list, so counters are found by index whatever the user
// wrote as a comment.
package firewall

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/labctl/labctl/topologies"
)

// Table is the nftables table that holds a node's rules.
const Table = "labctl"

// Chains are the base chains of the table, in the order they are rendered.
var Chains = []string{"input", "output", "forward"}

// commentPrefix starts the comment of every rule, followed by its index.
const commentPrefix = "labctl:"

// maxComment is the longest rule comment nft accepts (NFT_USERDATA_MAXLEN
// allows more, but nft's parser limits comments to 128 bytes).
const maxComment = 128

// Comment is the comment that identifies rule index of a node, followed by
// the user's own comment when there is one.
func Comment(index int, user string) string {
	c := fmt.Sprintf("%s%d", commentPrefix, index)
	if user != "" {
		c += " " + user
	}
	return c
}

// Render returns the nft script that replaces the node's `inet labctl` table
// with rules. The script is one nft transaction: it creates the table if it
// is missing, deletes it and declares it again, so loading it twice leaves
// the same ruleset (and zeroed counters) instead of duplicated rules.
func Render(rules []topologies.Rule) (string, error) {
	byChain := make(map[string][]string, len(Chains))
	for i, r := range rules {
		line, err := renderRule(i, r)
		if err != nil {
			return "", fmt.Errorf("firewall[%d]: %w", i, err)
		}
		byChain[r.Chain] = append(byChain[r.Chain], line)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", Table, Table, Table)
	for _, chain := range Chains {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n", chain, chain)
		for _, line := range byChain[chain] {
			fmt.Fprintf(&b, "\t\t%s\n", line)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

func renderRule(index int, r topologies.Rule) (string, error) {
	var m []string // match expressions, in nft's usual order
	switch r.Chain {
	case "input", "output", "forward":
	default:
		return "", fmt.Errorf("chain %q: want input, output or forward", r.Chain)
	}
	switch r.Action {
	case "accept", "drop", "reject":
	default:
		return "", fmt.Errorf("action %q: want accept, drop or reject", r.Action)
	}
	// An interface that the hook never sets would make the rule silently
	// match nothing: there is no input interface on output, nor an output
	// interface on input.
	if r.In != "" {
		if r.Chain == "output" {
			return "", fmt.Errorf("in %q: the output chain has no input interface", r.In)
		}
		if err := checkString("in", r.In); err != nil {
			return "", err
		}
		m = append(m, "iifname "+quote(r.In))
	}
	if r.Out != "" {
		if r.Chain == "input" {
			return "", fmt.Errorf("out %q: the input chain has no output interface", r.Out)
		}
		if err := checkString("out", r.Out); err != nil {
			return "", err
		}
		m = append(m, "oifname "+quote(r.Out))
	}

	family := r.Family
	for _, a := range []struct {
		field string
		p     netip.Prefix
	}{{"saddr", r.Src}, {"daddr", r.Dst}} {
		if !a.p.IsValid() {
			continue
		}
		f := "ip"
		if a.p.Addr().Is6() && !a.p.Addr().Is4In6() {
			f = "ip6"
		}
		if family != "" && family != f {
			return "", fmt.Errorf("%s %s is not an %s address", a.field, a.p, family)
		}
		family = f
		m = append(m, fmt.Sprintf("%s %s %s", f, a.field, prefix(a.p)))
	}

	switch r.Proto {
	case "":
		if !r.Sport.IsZero() || !r.Dport.IsZero() {
			return "", fmt.Errorf("ports need proto tcp or udp")
		}
		// A family without an address to imply it is matched explicitly.
		if r.Family != "" && !r.Src.IsValid() && !r.Dst.IsValid() {
			nf := map[string]string{"ip": "ipv4", "ip6": "ipv6"}[r.Family]
			if nf == "" {
				return "", fmt.Errorf("family %q: want ip or ip6", r.Family)
			}
			m = append(m, "meta nfproto "+nf)
		}
	case "tcp", "udp":
		if r.Sport.IsZero() && r.Dport.IsZero() {
			m = append(m, "meta l4proto "+r.Proto)
		}
		if !r.Sport.IsZero() {
			m = append(m, fmt.Sprintf("%s sport %s", r.Proto, r.Sport))
		}
		if !r.Dport.IsZero() {
			m = append(m, fmt.Sprintf("%s dport %s", r.Proto, r.Dport))
		}
	case "icmp", "icmpv6":
		if !r.Sport.IsZero() || !r.Dport.IsZero() {
			return "", fmt.Errorf("proto %s has no ports", r.Proto)
		}
		want, l4 := "ip", "icmp"
		if r.Proto == "icmpv6" {
			want, l4 = "ip6", "ipv6-icmp"
		}
		if family != "" && family != want {
			return "", fmt.Errorf("proto %s in a rule for family %s", r.Proto, family)
		}
		m = append(m, "meta l4proto "+l4)
	default:
		return "", fmt.Errorf("proto %q: want tcp, udp, icmp or icmpv6", r.Proto)
	}

	comment := Comment(index, r.Comment)
	if err := checkString("comment", r.Comment); err != nil {
		return "", err
	}
	if len(comment) > maxComment {
		return "", fmt.Errorf("comment %q: longer than nft's %d bytes once prefixed with %q", r.Comment, maxComment, commentPrefix)
	}
	m = append(m, "counter", r.Action, "comment "+quote(comment))
	return strings.Join(m, " "), nil
}

// prefix writes a single address without its length, as nft lists it.
func prefix(p netip.Prefix) string {
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// checkString refuses what nft's quoted strings cannot hold: nft has no
// escapes inside double quotes.
func checkString(field, s string) error {
	for _, c := range s {
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q: quotes, backslashes and control characters cannot be written in an nft string", field, s)
		}
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }
