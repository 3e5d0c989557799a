package paths

import (
	"fmt"
	"slices"
	"strings"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// minLoShare is the part of a node's packets lo must carry for a loopback
// path to count as carried by lo: the lab interfaces may see a stray IPv6
// router solicitation or MLD report during a step, never the traffic.
const minLoShare = 0.99

// Judge summarises each path and answers C12 from the loopback and own-ip
// paths.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	for _, row := range rows {
		row.Engagement, row.Note = engagement(row.GetVariant(), stepsOf(steps, row.GetVariant()))
	}
	return rows, verdict(p, steps)
}

func stepsOf(steps []*experimentv1.StepResult, variant string) []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	for _, s := range steps {
		if s.GetStep().GetVariant() == variant {
			out = append(out, s)
		}
	}
	return out
}

// onLo reports whether lo carried the client node's packets in every step.
func onLo(steps []*experimentv1.StepResult) (bool, string) {
	if len(steps) == 0 {
		return false, "no step ran"
	}
	for _, s := range steps {
		c, ok := carrierOf(report.ReportOf(s, "client"))
		if !ok {
			return false, fmt.Sprintf("repeat %d: the client's node counted no packets", s.GetStep().GetRepeat()+1)
		}
		if c.Iface != "lo" || c.Share < minLoShare {
			return false, fmt.Sprintf("repeat %d: %s", s.GetStep().GetRepeat()+1, c)
		}
	}
	c, _ := carrierOf(report.ReportOf(steps[0], "client"))
	return true, c.String()
}

// engagement decides from the interface counters whether the path ran
// over the device its kind promises: lo for loopback and own-ip, a lab
// interface in both nodes for the others.
func engagement(kind string, steps []*experimentv1.StepResult) (experimentv1.Engagement, string) {
	if kind == kindLoopback || kind == kindOwnIP {
		ok, detail := onLo(steps)
		if !ok {
			return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "not carried by lo: " + detail
		}
		return experimentv1.Engagement_ENGAGEMENT_ENGAGED, "carried by lo in every repeat; client node, repeat 1: " + detail
	}
	var notes []string
	for i, s := range steps {
		for _, role := range []string{"client", "server"} {
			r := report.ReportOf(s, role)
			c, ok := carrierOf(r)
			if !ok || c.Iface == "lo" {
				return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED,
					fmt.Sprintf("repeat %d: the %s's node did not carry the packets on a lab interface: %s", s.GetStep().GetRepeat()+1, role, c)
			}
			if i > 0 {
				continue
			}
			note := fmt.Sprintf("%s %s: %s", role, r.GetNode(), c)
			if k := ifaceKind(r, c.Iface); k != "" {
				note += ", " + c.Iface + " is a " + k
				if role == "server" && (kind == kindNIC || kind == kindMacvlan) && k == "veth" {
					note += " (a stand-in for a NIC: no NIC driver on this path)"
				}
			}
			notes = append(notes, note)
		}
	}
	return experimentv1.Engagement_ENGAGEMENT_ENGAGED, "repeat 1: " + strings.Join(notes, "; ")
}

// verdict answers C12: 127.0.0.1 and the own address both over lo, at the
// same speed within Margin (an equivalence test: overlapping ranges are no
// evidence of sameness).
func verdict(p experiments.Params, steps []*experimentv1.StepResult) *experimentv1.Verdict {
	c := experiments.As[params](p)
	v := &experimentv1.Verdict{Claim: "C12"}
	variants := report.Variants(steps)
	var missing []string
	for _, k := range c.Paths {
		if !slices.Contains(variants, k) {
			missing = append(missing, k)
		}
	}
	lacks := ""
	if len(missing) > 0 {
		lacks = fmt.Sprintf(" The lab had no %s path from the client's node.", strings.Join(missing, ", "))
	}
	var loSteps, ownSteps []*experimentv1.StepResult
	for _, s := range steps {
		switch s.GetStep().GetVariant() {
		case kindLoopback:
			loSteps = append(loSteps, s)
		case kindOwnIP:
			ownSteps = append(ownSteps, s)
		}
	}
	if len(loSteps) == 0 || len(ownSteps) == 0 {
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "C12 compares the loopback and own-ip paths; this run did not measure both." + lacks
		return v
	}
	for _, c := range []struct {
		name  string
		steps []*experimentv1.StepResult
	}{{"127.0.0.1", loSteps}, {"the own address", ownSteps}} {
		if ok, detail := onLo(c.steps); !ok {
			v.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
			v.Explanation = fmt.Sprintf("Traffic to %s was not carried by lo in the client's node: %s.%s", c.name, detail, lacks)
			return v
		}
	}
	_, own := onLo(ownSteps)
	var (
		parts                []string
		differs, undecided   []string
		compared, sameSpeeds int
	)
	for _, m := range []struct {
		metric, what string
		format       func(float64) string
	}{
		{"client.rtt_p50_ns", "RTT p50", func(x float64) string { return fmt.Sprintf("%.1f µs", x/1e3) }},
		{"sink.throughput_bps", "bulk throughput", func(x float64) string { return fmt.Sprintf("%.2f Gbit/s", x/1e9) }},
	} {
		if len(report.Values(steps, kindLoopback, m.metric)) == 0 || len(report.Values(steps, kindOwnIP, m.metric)) == 0 {
			continue
		}
		compared++
		d := judge.Compare(v, c.Test(margin), steps, m.metric, kindLoopback, kindOwnIP)
		parts = append(parts, fmt.Sprintf("%s %s (127.0.0.1) vs %s (own IP): %s", m.what, m.format(d.A.Median), m.format(d.B.Median), d.Reason))
		switch {
		case d.Verdict == measure.Same:
			sameSpeeds++
		case d.Differs() && d.Beyond:
			differs = append(differs, fmt.Sprintf("%s differs by %+.1f%% [%+.1f%%, %+.1f%%]", m.what, d.Change(), 100*(d.Low-1), 100*(d.High-1)))
		default:
			undecided = append(undecided, m.what)
		}
	}
	if compared == 0 {
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "Both paths were carried by lo, but their reports hold no RTT or throughput to compare." + lacks
		return v
	}
	others := othersText(steps)
	switch {
	case len(differs) > 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		v.Explanation = fmt.Sprintf("Both 127.0.0.1 and the own address went over lo (own IP: %s), but not at the same speed: %s. %s.%s%s",
			own, strings.Join(differs, "; "), strings.Join(parts, "; "), others, lacks)
	case len(undecided) > 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		v.Explanation = fmt.Sprintf("Both 127.0.0.1 and the own address went over lo (own IP: %s); whether at the same speed within %.0f%% is undecided for %s. %s.%s%s",
			own, 100*margin, strings.Join(undecided, " and "), strings.Join(parts, "; "), others, lacks)
	default:
		v.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
		v.Explanation = fmt.Sprintf("Both 127.0.0.1 and the own address went over lo (own IP: %s) at the same speed: no difference larger than %.0f%% (equivalence test). %s.%s%s",
			own, 100*margin, strings.Join(parts, "; "), others, lacks)
	}
	return v
}

// margin is the difference C12 calls the same speed: within 5%.
const margin = 0.05

// othersText quotes the RTT of the other paths, for scale.
func othersText(steps []*experimentv1.StepResult) string {
	var parts []string
	for _, k := range allKinds[2:] {
		if xs := report.Values(steps, k, "client.rtt_p50_ns"); len(xs) > 0 {
			parts = append(parts, fmt.Sprintf("%s %.1f µs", k, measure.SpreadOf(xs).Median/1e3))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " For scale, RTT p50 over " + strings.Join(parts, ", ") + "."
}
