package softirq

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

// minBatch is the number of packets per NAPI poll above which polls are
// said to batch: with one packet per poll and a little background, the
// ratio sits just under 1.
const minBatch = 1.5

// Judge summarises every variant and answers C4, C5, C6 and C18, each from
// the variants that test it.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	var variants []variant
	for _, row := range rows {
		v, err := parseVariant(row.GetVariant())
		if err != nil {
			row.Note = err.Error()
			continue
		}
		variants = append(variants, v)
		row.Engagement, row.Note = engagement(v, stepsOf(steps, row.GetVariant()))
	}
	j := judging{rounds: experiments.As[params](p).Rounds, v: &experimentv1.Verdict{}, steps: steps, variants: variants}
	var claims []claim
	for _, c := range []func() claim{j.c4, j.c5, j.c6, j.c18} {
		if cl := c(); cl.outcome != experimentv1.Outcome_OUTCOME_UNSPECIFIED {
			claims = append(claims, cl)
		}
	}
	v := combine(j.v, claims)
	if paths := j.paths(); paths != "" {
		v.Explanation = paths + " " + v.Explanation
	}
	return rows, v
}

// paths says which NAPI instance received each link's flood, from the
// receiving socket's NAPI id: a veth without GRO has none and uses the
// per-CPU backlog.
func (j judging) paths() string {
	var parts []string
	for _, iface := range j.links() {
		v, ok := j.find(iface, plainFlood)
		if !ok {
			continue
		}
		var napi float64
		if ss := stepsOf(j.steps, v.String()); len(ss) > 0 {
			napi, _ = report.EvidenceValue(report.ReportOf(ss[0], "server"), "napi_id")
		}
		what := "the per-CPU backlog (socket NAPI id 0)"
		if napi != 0 {
			what = fmt.Sprintf("its own NAPI (socket NAPI id %.0f)", napi)
		}
		parts = append(parts, iface+": "+what)
	}
	if len(parts) == 0 {
		return ""
	}
	return "Receive path under a flood — " + strings.Join(parts, "; ") + "."
}

// claim is the verdict on one claim.
type claim struct {
	id      string
	outcome experimentv1.Outcome
	text    string
}

// combine makes one verdict of several: their common outcome, or
// CONDITIONAL when they differ, each claim explained in turn.
func combine(v *experimentv1.Verdict, claims []claim) *experimentv1.Verdict {
	if len(claims) == 0 {
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "No variant of this run tests C4, C5, C6 or C18."
		return v
	}
	var ids, texts []string
	v.Outcome = claims[0].outcome
	for _, c := range claims {
		ids = append(ids, c.id)
		texts = append(texts, fmt.Sprintf("%s %s: %s", c.id, judge.OutcomeWord(c.outcome), c.text))
		if c.outcome != v.Outcome {
			v.Outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		}
	}
	v.Claim = strings.Join(ids, ", ")
	v.Explanation = strings.Join(texts, " ")
	return v
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

// engagement: the load ladder is the baseline; RPS engaged when another
// CPU received RPS IPIs; the backlog limit when the kernel held it.
func engagement(v variant, steps []*experimentv1.StepResult) (experimentv1.Engagement, string) {
	var notes []string
	if len(steps) > 0 {
		if srv := report.ReportOf(steps[0], "server"); srv != nil {
			notes = append(notes, srv.GetNotes()...)
		}
	}
	e := experimentv1.Engagement_ENGAGEMENT_BASELINE
	if v.RPS || v.Backlog > 0 {
		e = experimentv1.Engagement_ENGAGEMENT_ENGAGED
	}
	for _, s := range steps {
		srv := report.ReportOf(s, "server")
		rep := fmt.Sprintf("repeat %d: ", s.GetStep().GetRepeat()+1)
		if v.RPS && srv.GetMetrics()["received_rps"] == 0 {
			e = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			notes = append(notes, rep+"no CPU received an RPS IPI (softnet_stat received_rps 0): RPS did not steer anything")
		}
		if got, ok := report.EvidenceValue(srv, "netdev_max_backlog"); v.Backlog > 0 && (!ok || int(got) != v.Backlog) {
			e = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			notes = append(notes, fmt.Sprintf("%snetdev_max_backlog read back %v, not %d", rep, got, v.Backlog))
		}
	}
	return e, strings.Join(notes, "; ")
}

// judging answers the claims from the steps of a run.
type judging struct {
	rounds   experiments.Rounds
	v        *experimentv1.Verdict // the comparisons are recorded in it
	steps    []*experimentv1.StepResult
	variants []variant
}

// compare decides a server metric of b against a, and records it.
func (j judging) compare(metric string, a, b variant) measure.Decision {
	return judge.Compare(j.v, j.rounds.Test(0), j.steps, "server."+metric, a.String(), b.String())
}

// values is a server metric over the repeats of v.
func (j judging) values(v variant, metric string) []float64 {
	return report.Values(j.steps, v.String(), "server."+metric)
}

// median is a server metric's median over the repeats of v.
func (j judging) median(v variant, metric string) (float64, bool) {
	xs := j.values(v, metric)
	return measure.SpreadOf(xs).Median, len(xs) > 0
}

// links lists the interfaces of the run in order.
func (j judging) links() []string {
	var out []string
	for _, v := range j.variants {
		if !slices.Contains(out, v.Iface) {
			out = append(out, v.Iface)
		}
	}
	return out
}

// find returns the variant of iface matching f.
func (j judging) find(iface string, f func(variant) bool) (variant, bool) {
	for _, v := range j.variants {
		if v.Iface == iface && f(v) {
			return v, true
		}
	}
	return variant{}, false
}

func plainFlood(v variant) bool { return v.Flood() && !v.RPS && v.Backlog == 0 }
func rpsFlood(v variant) bool   { return v.Flood() && v.RPS && v.Backlog == 0 }

// lowest is the paced load variant with the lowest rate.
func (j judging) lowest(iface string) (variant, bool) {
	var best variant
	for _, v := range j.variants {
		if v.Iface == iface && !v.RPS && v.Backlog == 0 && v.Rate > 0 && (best.Rate == 0 || v.Rate < best.Rate) {
			best = v
		}
	}
	return best, best.Rate > 0
}

// c4: do NAPI polls batch packets under load?
func (j judging) c4() claim {
	var parts []string
	var ran, measured, plainBatches, anyBatches bool
	var irqs float64
	for _, iface := range j.links() {
		var ppp []string
		for _, v := range j.variants {
			if v.Iface != iface || v.Backlog > 0 {
				continue
			}
			n, _ := j.median(v, "iface_irqs")
			irqs += n
			name := strings.TrimPrefix(v.String(), iface+"/")
			m, ok := j.median(v, "packets_per_poll")
			if ok {
				name += fmt.Sprintf(" %.2f", m)
			} else {
				name += " (background too high)"
			}
			if sp, ok := j.clientMedian(v, "sender_polls_per_packet"); ok {
				name += fmt.Sprintf(" [%.2f in the sender's context]", sp)
			}
			ppp = append(ppp, name)
			if !v.Flood() {
				continue
			}
			ran = true
			if ok {
				measured = true
				if m >= minBatch {
					anyBatches = true
					plainBatches = plainBatches || !v.RPS
				}
			}
		}
		if len(ppp) > 0 {
			parts = append(parts, iface+": "+strings.Join(ppp, ", "))
		}
	}
	if !ran {
		return claim{}
	}
	c := claim{id: "C4"}
	text := fmt.Sprintf("packets per NAPI poll (median; the interface's packets over the step's own polls) and, in brackets, polls per "+
		"datagram run inside the sender's own send calls: %s; hard interrupts of the interfaces: %.0f", strings.Join(parts, "; "), irqs)
	inSender := j.senderPolled()
	switch {
	case !measured:
		c.outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		c.text = text + ". The host's background left no flood's poll count usable."
	case plainBatches:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
		c.text = text + ". Under load each poll took several packets."
	case anyBatches:
		c.outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		c.text = text + ". Polls batched only with RPS, where packets wait in another CPU's backlog for the IPI" + inSender
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		c.text = text + ". About one poll per packet at every load" + inSender
	}
	return c
}

// senderPolled explains one poll per packet when the evidence shows it:
// the floods without RPS had about one poll per datagram inside the
// sender's own send calls.
func (j judging) senderPolled() string {
	var lo float64 = -1
	for _, v := range j.variants {
		if v.Flood() && !v.RPS {
			if sp, ok := j.clientMedian(v, "sender_polls_per_packet"); ok && (lo < 0 || sp < lo) {
				lo = sp
			}
		}
	}
	if lo < 0.5 {
		return "."
	}
	return fmt.Sprintf("; without RPS at least %.2f polls per datagram ran inside the sender's own send calls: the softirq its send "+
		"raised polled each packet as soon as it was queued (a veth has no interrupt to coalesce), so nothing accumulated.", lo)
}

// clientMedian is a client metric's median over the repeats of v.
func (j judging) clientMedian(v variant, metric string) (float64, bool) {
	xs := report.Values(j.steps, v.String(), "client."+metric)
	return measure.SpreadOf(xs).Median, len(xs) > 0
}

// c5: does a small backlog drop packets under a flood?
func (j judging) c5() claim {
	var parts []string
	var ran, plainDrops, rpsDrops bool
	for _, v := range j.variants {
		if v.Backlog == 0 {
			continue
		}
		d, ok := j.median(v, "softnet_dropped")
		if !ok {
			continue
		}
		ran = true
		parts = append(parts, fmt.Sprintf("%s %.0f", v, d))
		if d > 0 {
			if v.RPS {
				rpsDrops = true
			} else {
				plainDrops = true
			}
		}
	}
	if !ran {
		return claim{}
	}
	c := claim{id: "C5"}
	text := "softnet_stat drops (median, host-wide) " + strings.Join(parts, ", ")
	switch {
	case plainDrops:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
		c.text = text + ": the backlog overflowed and dropped."
	case rpsDrops:
		c.outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		c.text = text + ": drops only with RPS, where packets wait in another CPU's backlog" + j.senderPolled()
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		c.text = text + ": the backlog never filled at the offered load" + j.senderPolled()
	}
	return c
}

// c6: does RPS raise the delivered rate of a flood?
func (j judging) c6() claim {
	var parts []string
	var ran, engaged, higher, lower, undecided bool
	for _, iface := range j.links() {
		off, ok1 := j.find(iface, plainFlood)
		on, ok2 := j.find(iface, rpsFlood)
		if !ok1 || !ok2 {
			continue
		}
		ran = true
		if rps, _ := j.median(on, "received_rps"); rps > 0 {
			engaged = true
		}
		cmp := j.compare("delivered_per_s", off, on)
		parts = append(parts, fmt.Sprintf("%s: %.0f/s without RPS, %.0f/s with (%s)", iface, cmp.A.Median, cmp.B.Median, cmp.Reason))
		switch cmp.Verdict {
		case measure.Higher:
			higher = true
		case measure.Lower:
			lower = true
		default:
			undecided = true
		}
	}
	if !ran {
		return claim{}
	}
	c := claim{id: "C6", text: "datagrams delivered to the reader under a flood, " + strings.Join(parts, "; ") + "."}
	switch {
	case !engaged:
		c.outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
		c.text += " No CPU received an RPS IPI: RPS steered nothing."
	case higher && !lower:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
	case lower && !higher && !undecided:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		c.text += " RPS moved the receive work to other CPUs, but with few CPUs those also run the sender and the reader, " +
			"so the spreading most likely took CPU from them."
	case higher && lower:
		c.outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		c.text += " RPS raised the rate on some links and lowered it on others."
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
	}
	return c
}

// c18: does softirq work move to ksoftirqd under load?
func (j judging) c18() claim {
	var parts []string
	var ran, moved, movedPlain, undecided bool
	none := true
	for _, iface := range j.links() {
		low, ok := j.lowest(iface)
		if !ok {
			continue
		}
		for _, f := range []func(variant) bool{plainFlood, rpsFlood} {
			hi, ok := j.find(iface, f)
			if !ok {
				continue
			}
			ran = true
			cmp := j.compare("ksoftirqd_share", low, hi)
			sq, _ := j.median(hi, "time_squeeze")
			parts = append(parts, fmt.Sprintf("%s %.0f%% at %s vs %.0f%% at %s (time_squeeze %.0f; %s)",
				iface, 100*cmp.A.Median, strings.TrimPrefix(low.String(), iface+"/"), 100*cmp.B.Median, strings.TrimPrefix(hi.String(), iface+"/"), sq, cmp.Reason))
			switch cmp.Verdict {
			case measure.Higher:
				moved = true
				movedPlain = movedPlain || !hi.RPS
			case measure.Undecided:
				undecided = true
			}
			if k, _ := j.median(hi, "ksoftirqd_ns"); k > 0 {
				none = false
			}
		}
	}
	if !ran {
		return claim{}
	}
	c := claim{id: "C18", text: "ksoftirqd's share of host softirq time (10 ms ticks, host-wide): " + strings.Join(parts, "; ") + "."}
	switch {
	case movedPlain:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
	case moved:
		c.outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		c.text += " Only with RPS: there a CPU drains other CPUs' packets until its budget runs out and wakes ksoftirqd; " +
			"without it the sender's softirq took one packet at a time."
	case none:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		c.text += " ksoftirqd ran no measurable time under the floods: softirqs ran in the tasks they interrupted."
	case undecided:
		c.outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		c.text += " ksoftirqd's share did not grow with the load."
	}
	return c
}
