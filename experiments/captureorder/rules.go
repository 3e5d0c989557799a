package captureorder

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/labctl/labctl/netns/firewall"
	"github.com/labctl/labctl/topologies"
)

// runTable is the nftables table that holds the rules a run creates for
// itself (rules=run), removed when the role ends.
const runTable = "labctl_capture"

// topologyTable is where `labctl up` loads a node's firewall rules.
const topologyTable = firewall.Table

// runPriority puts the run's chains before the filter priority (0) of the
// topology's own table, so a topology rule dropping the same port does not
// take the packets first and leave the run's counter at 0.
const runPriority = -10

// runRuleScript is the nft command line that creates the run's table with
// one chain hooked at chain (input or output) dropping UDP datagrams to
// port. It is one nft transaction: all of it is created or none. "create"
// fails when the table exists, so two runs never share it unknowingly.
func runRuleScript(chain string, port int) string {
	return fmt.Sprintf("create table inet %[1]s; "+
		"add chain inet %[1]s %[2]s { type filter hook %[2]s priority %[3]d; policy accept; }; "+
		"add rule inet %[1]s %[2]s udp dport %[4]d counter drop comment \"labctl capture-order\"",
		runTable, chain, runPriority, port)
}

// runRuleUndo deletes the run's table with its rules.
func runRuleUndo() []string { return []string{"nft", "delete", "table", "inet", runTable} }

// dropRule is the counter of the rule that decides a run's packets.
type dropRule struct {
	Table, Chain string
	Handle       int
	Packets      uint64
}

func (r dropRule) String() string {
	return fmt.Sprintf("table inet %s chain %s handle %d", r.Table, r.Chain, r.Handle)
}

// nftRule is the part of a rule in `nft -j` output that FindRule reads.
type nftRule struct {
	Family string            `json:"family"`
	Table  string            `json:"table"`
	Chain  string            `json:"chain"`
	Handle int               `json:"handle"`
	Expr   []json.RawMessage `json:"expr"`
}

// findRule finds, in the output of `nft -j list table inet TABLE`, the rule
// of chain that decides the fate of UDP datagrams to port, and requires
// that it drops them and counts them. Rules are read in chain order, as the
// kernel runs them: a rule with a match other than `udp dport` and `meta
// l4proto udp` (an address, an interface) may not apply to the run's
// datagrams and is passed over; a rule whose `udp dport` (a port, range or
// set) leaves out port does not apply; the first rule that applies and has
// a verdict decides.
func findRule(data []byte, table, chain string, port int) (dropRule, error) {
	var listing struct {
		Nftables []struct {
			Rule *nftRule `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &listing); err != nil {
		return dropRule{}, fmt.Errorf("nft json: %w", err)
	}
	for _, item := range listing.Nftables {
		r := item.Rule
		if r == nil || r.Family != "inet" || r.Table != table || r.Chain != chain {
			continue
		}
		st := statementsOf(r.Expr, port)
		if !st.applies || st.verdict == "" {
			continue
		}
		rule := dropRule{Table: table, Chain: chain, Handle: r.Handle, Packets: st.packets}
		switch {
		case st.verdict != "drop":
			return dropRule{}, fmt.Errorf("%s decides udp dport %d with %s before any drop", rule, port, st.verdict)
		case !st.counted:
			return dropRule{}, fmt.Errorf("%s drops udp dport %d but has no counter", rule, port)
		}
		return rule, nil
	}
	return dropRule{}, fmt.Errorf("table inet %s chain %s has no rule that drops udp dport %d", table, chain, port)
}

// statements is what FindRule needs to know of a rule.
type statements struct {
	applies bool   // the rule matches every UDP datagram to the port
	verdict string // drop, accept, reject, ... or "" for none
	counted bool
	packets uint64
}

func statementsOf(exprs []json.RawMessage, port int) statements {
	st := statements{applies: true}
	for _, raw := range exprs {
		var e map[string]json.RawMessage
		if err := json.Unmarshal(raw, &e); err != nil {
			return statements{}
		}
		for key, val := range e {
			switch key {
			case "match":
				if !matchesPort(val, port) {
					st.applies = false
				}
			case "counter":
				var c struct {
					Packets uint64 `json:"packets"`
				}
				if json.Unmarshal(val, &c) == nil {
					st.counted, st.packets = true, c.Packets
				}
			case "accept", "drop", "reject", "queue", "jump", "goto", "return":
				st.verdict = key
			}
		}
	}
	return st
}

// matchesPort reports whether a match expression holds for every UDP
// datagram to port: `udp dport` with port in it, or `meta l4proto udp`.
func matchesPort(match json.RawMessage, port int) bool {
	var m struct {
		Op   string `json:"op"`
		Left struct {
			Payload *struct{ Protocol, Field string } `json:"payload"`
			Meta    *struct{ Key string }             `json:"meta"`
		} `json:"left"`
		Right json.RawMessage `json:"right"`
	}
	if json.Unmarshal(match, &m) != nil {
		return false
	}
	switch {
	case m.Left.Payload != nil && m.Left.Payload.Protocol == "udp" && m.Left.Payload.Field == "dport" && (m.Op == "==" || m.Op == "in"):
		return holdsPort(m.Right, port)
	case m.Left.Meta != nil && m.Left.Meta.Key == "l4proto" && m.Op == "==":
		return string(m.Right) == `"udp"` || string(m.Right) == "17"
	}
	return false
}

// holdsPort reads the right side of a port match: a number, a range
// {"range": [lo, hi]} or a set {"set": [...]} of either.
func holdsPort(right json.RawMessage, port int) bool {
	var n int
	if json.Unmarshal(right, &n) == nil {
		return n == port
	}
	var r struct {
		Range []int             `json:"range"`
		Set   []json.RawMessage `json:"set"`
	}
	if json.Unmarshal(right, &r) != nil {
		return false
	}
	if len(r.Range) == 2 {
		return r.Range[0] <= port && port <= r.Range[1]
	}
	return slices.ContainsFunc(r.Set, func(e json.RawMessage) bool { return holdsPort(e, port) })
}

// readRule lists table in the calling thread's network namespace (an
// agent's node) and finds the rule that drops UDP to port in chain.
func readRule(ctx context.Context, table, chain string, port int) (dropRule, error) {
	out, err := exec.CommandContext(ctx, "nft", "-j", "list", "table", "inet", table).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return dropRule{}, fmt.Errorf("nft -j list table inet %s: %s", table, msg)
	}
	return findRule(out, table, chain, port)
}

// topologyRule returns the index of the node's firewall rule that decides
// UDP datagrams to port in chain, as FindRule will find it once loaded, and
// whether that rule drops them. Rules narrowed by an address, interface,
// source port or family are passed over, as FindRule does.
func topologyRule(n *topologies.Node, chain string, port int) (int, bool) {
	for i, r := range n.Firewall {
		narrower := r.Src.IsValid() || r.Dst.IsValid() || r.In != "" || r.Out != "" || !r.Sport.IsZero() || r.Family != ""
		if r.Chain != chain || narrower || (r.Proto != "" && r.Proto != "udp") {
			continue
		}
		if !r.Dport.IsZero() && (port < int(r.Dport.Lo) || port > int(r.Dport.Hi)) {
			continue
		}
		return i, r.Action == "drop"
	}
	return 0, false
}
