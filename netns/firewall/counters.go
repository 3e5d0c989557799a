package firewall

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Counter is what one rule has matched since the table was loaded.
type Counter struct {
	Rule    int    `json:"rule"` // index in the node's firewall list
	Chain   string `json:"chain"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// listing is the part of `nft -j list table inet labctl` that counters need.
type listing struct {
	Nftables []struct {
		Rule *struct {
			Family  string            `json:"family"`
			Table   string            `json:"table"`
			Chain   string            `json:"chain"`
			Comment string            `json:"comment"`
			Expr    []json.RawMessage `json:"expr"`
		} `json:"rule"`
	} `json:"nftables"`
}

// ParseCounters reads the output of `nft -j list table inet labctl` (or of
// `nft -j list ruleset`) and returns the counter of every labctl rule,
// ordered by rule index. Rules of other tables, and rules without a labctl
// comment, are skipped.
func ParseCounters(data []byte) ([]Counter, error) {
	var l listing
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("nft json: %w", err)
	}
	var out []Counter
	for _, item := range l.Nftables {
		r := item.Rule
		if r == nil || r.Family != "inet" || r.Table != Table {
			continue
		}
		index, ok := ruleIndex(r.Comment)
		if !ok {
			continue
		}
		c := Counter{Rule: index, Chain: r.Chain}
		found := false
		for _, raw := range r.Expr {
			var e struct {
				Counter *struct {
					Packets uint64 `json:"packets"`
					Bytes   uint64 `json:"bytes"`
				} `json:"counter"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				// Statements such as {"drop": null} and matches are not
				// all objects of this shape; only counters matter here.
				continue
			}
			if e.Counter != nil {
				c.Packets, c.Bytes, found = e.Counter.Packets, e.Counter.Bytes, true
			}
		}
		if !found {
			return nil, fmt.Errorf("nft json: rule %q in chain %s has no counter", r.Comment, r.Chain)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rule < out[j].Rule })
	return out, nil
}

// ruleIndex reads the index from a comment made by Comment.
func ruleIndex(comment string) (int, bool) {
	rest, ok := strings.CutPrefix(comment, commentPrefix)
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, " ")
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
