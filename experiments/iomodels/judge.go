package iomodels

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Thresholds of the verdicts, from the claims' wording.
const (
	// sleepsPerMsg: C8 holds when the blocking server sleeps (one counted
	// voluntary switch out, one switch back in) on at least 90% of messages.
	sleepsPerMsg = 0.9
	// flatShare: C9's epoll "does not grow" when its cost per idle
	// descriptor is below a tenth of the slowest-growing scanning model's.
	flatShare = 0.1
	// smallCost: C16's netpoller overhead is "small" up to 25% more RTT
	// than the faster of raw epoll and blocking recv.
	smallCost = 1.25
	// sqpollAwake: C15's SQPOLL removed submission syscalls when fewer
	// than one message in ten needed an io_uring_enter to wake its thread.
	sqpollAwake = 0.1
)

// judged is the run as the judge sees it: the variants and their steps,
// and the verdict whose comparisons the claims' judges record.
type judged struct {
	rounds   experiments.Rounds
	v        *experimentv1.Verdict
	steps    []*experimentv1.StepResult
	variants map[string]variant
	names    []string
}

func newJudged(p experiments.Params, steps []*experimentv1.StepResult) judged {
	j := judged{rounds: experiments.As[params](p).Rounds, v: &experimentv1.Verdict{}, steps: steps, variants: map[string]variant{}}
	for _, s := range steps {
		name := s.GetStep().GetVariant()
		if _, ok := j.variants[name]; ok {
			continue
		}
		if v, err := variantOf(s.GetStep().GetParams()); err == nil {
			j.variants[name] = v
			j.names = append(j.names, name)
		}
	}
	return j
}

func (j judged) values(v variant, metric string) []float64 {
	return report.Values(j.steps, v.Name(), metric)
}

// unsupported returns the server's reason if any repeat of v declined.
func (j judged) unsupported(v variant) (string, bool) {
	for _, s := range j.steps {
		if s.GetStep().GetVariant() != v.Name() {
			continue
		}
		r := report.ReportOf(s, "server")
		if ok, found := report.EvidenceValue(r, "supported"); found && ok == 0 {
			for _, n := range r.GetNotes() {
				if reason, ok := strings.CutPrefix(n, "unsupported: "); ok {
					return reason, true
				}
			}
			return "the server declined", true
		}
	}
	return "", false
}

// find returns the variant of model at idle 0, TCP preferred; ok is false
// when the run has none or it was unsupported.
func (j judged) find(m model) (variant, bool) {
	for _, proto := range []string{protoTCP, protoUDP} {
		v := variant{Model: m, Proto: proto}
		if _, ok := j.variants[v.Name()]; ok {
			_, unsup := j.unsupported(v)
			return v, !unsup
		}
	}
	return variant{}, false
}

// has reports whether the run measured model at idle 0 at all.
func (j judged) has(m model) bool {
	for _, v := range j.variants {
		if v.Model == m && v.Idle == 0 {
			return true
		}
	}
	return false
}

// Judge summarises each variant and answers C8, C9, C15 and C16, each from
// the variants the run has; the one verdict a result holds names the claims
// it judged and gives each one's outcome in its explanation.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	j := newJudged(p, steps)
	rows := report.Aggregate(steps)
	for _, row := range rows {
		v, ok := j.variants[row.GetVariant()]
		if !ok {
			continue
		}
		row.Engagement, row.Note = j.engagement(v)
	}
	var claims []claimVerdict
	for _, judge := range []func() (claimVerdict, bool){j.c8, j.c9, j.c15, j.c16} {
		if c, ok := judge(); ok {
			claims = append(claims, c)
		}
	}
	return rows, combine(j.v, claims)
}

// compare decides metric of variant b against variant a and records it in
// the verdict (see judge.Compare).
func (j judged) compare(metric string, a, b variant, margin float64) measure.Decision {
	return judge.Compare(j.v, j.rounds.Test(margin), j.steps, metric, a.Name(), b.Name())
}

// describe decides a comparison that only describes (see judge.Decide).
func (j judged) describe(metric string, a, b variant) measure.Decision {
	return judge.Decide(j.rounds.Test(0), j.steps, metric, a.Name(), b.Name())
}

func (j judged) engagement(v variant) (experimentv1.Engagement, string) {
	if reason, ok := j.unsupported(v); ok {
		return experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED, reason
	}
	switch v.Model {
	case blocking:
		return experimentv1.Engagement_ENGAGEMENT_BASELINE, ""
	case uringSQPoll:
		for _, s := range j.steps {
			if s.GetStep().GetVariant() != v.Name() {
				continue
			}
			if cpu, ok := report.EvidenceValue(report.ReportOf(s, "server"), "sqpoll_thread_cpu"); !ok || cpu <= 0 {
				return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "the iou-sqp thread used no CPU during the measured messages (schedstat)"
			}
		}
		return experimentv1.Engagement_ENGAGEMENT_ENGAGED, "the SQPOLL thread ran: its CPU time is server.sqpoll_cpu_ns_per_msg, outside the serving thread's"
	case netConn:
		return experimentv1.Engagement_ENGAGEMENT_ENGAGED, "CPU and context switches of the whole process (RUSAGE_SELF)"
	}
	return experimentv1.Engagement_ENGAGEMENT_ENGAGED, ""
}

// claimVerdict is the answer on one claim.
type claimVerdict struct {
	claim   string
	outcome experimentv1.Outcome
	text    string
}

// combine completes the result's one verdict v: the claims' common
// outcome, or CONDITIONAL when they differ (the explanation gives each).
func combine(v *experimentv1.Verdict, cs []claimVerdict) *experimentv1.Verdict {
	if len(cs) == 0 {
		v.Outcome = experimentv1.Outcome_OUTCOME_MEASURED
		v.Explanation = "no claim could be judged: C8 needs blocking, C9 select/poll and epoll at two idle counts, C15 uring and epoll, C16 netconn and epoll or blocking"
		return v
	}
	v.Outcome = cs[0].outcome
	var ids, texts []string
	for _, c := range cs {
		ids = append(ids, c.claim)
		texts = append(texts, fmt.Sprintf("%s %s: %s", c.claim, strings.ToUpper(judge.OutcomeWord(c.outcome)), c.text))
		if c.outcome != v.Outcome {
			v.Outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		}
	}
	v.Claim = strings.Join(ids, ",")
	v.Explanation = strings.Join(texts, " ")
	if v.Outcome == experimentv1.Outcome_OUTCOME_CONDITIONAL && len(cs) > 1 {
		v.Explanation = "The claims differ; each is answered on its own. " + v.Explanation
	}
	return v
}

// c8: a blocking recv costs two context switches per message.
func (j judged) c8() (claimVerdict, bool) {
	b, ok := j.find(blocking)
	if !ok {
		return claimVerdict{}, false
	}
	vcsw := measure.SpreadOf(j.values(b, "server.vcsw_per_msg"))
	if vcsw.N == 0 {
		return claimVerdict{}, false
	}
	c := claimVerdict{claim: "C8"}
	text := fmt.Sprintf("the blocking %s server made %.2f voluntary context switches per message (repeats %.2f–%.2f; getrusage counts the switch out, so each is a sleep and a wakeup: %.1f switches per message)",
		b.Proto, vcsw.Median, vcsw.Min, vcsw.Max, 2*vcsw.Median)
	switch {
	case vcsw.Median >= sleepsPerMsg:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
	case vcsw.Median >= 1-sleepsPerMsg:
		c.outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
		text += "; the request was often queued before recv was called, so recv did not sleep"
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		text += "; recv almost never slept"
	}
	if s := (variant{Model: spin, Proto: b.Proto}); j.supported(s) {
		spin := measure.SpreadOf(j.values(s, "server.vcsw_per_msg"))
		d := j.describe("client.rtt_p50_ns", s, b)
		text += fmt.Sprintf("; spin made %.2f; RTT p50 blocking %s vs spin %s", spin.Median, us(d.B.Median), us(d.A.Median))
		if d.Verdict == measure.Higher {
			text += fmt.Sprintf(": sleeping and waking cost %s per round trip (%s)", us(d.B.Median-d.A.Median), d.Reason)
		} else {
			text += " (" + d.Reason + ")"
		}
	}
	c.text = text + "."
	return c, true
}

func (j judged) supported(v variant) bool {
	if _, ok := j.variants[v.Name()]; !ok {
		return false
	}
	_, unsup := j.unsupported(v)
	return !unsup
}

// scaling is one multiplexing model's readiness check cost at its lowest
// and highest idle count.
type scaling struct {
	model        model
	nLo, nHi     int
	cmp          measure.Decision
	perDesc      float64 // ns per idle descriptor
	unsupportedN []int
}

func (j judged) scalings() []scaling {
	var out []scaling
	for _, m := range []model{selectModel, poll, epollLT, epollET} {
		s := scaling{model: m}
		var ns []int
		for _, v := range j.variants {
			if v.Model != m || v.Proto != protoTCP {
				continue
			}
			if j.supported(v) {
				ns = append(ns, v.Idle)
			} else {
				s.unsupportedN = append(s.unsupportedN, v.Idle)
			}
		}
		sort.Ints(ns)
		sort.Ints(s.unsupportedN)
		if len(ns) < 2 {
			if len(s.unsupportedN) > 0 && len(ns) == 1 {
				s.nLo, s.nHi = ns[0], ns[0]
				out = append(out, s)
			}
			continue
		}
		s.nLo, s.nHi = ns[0], ns[len(ns)-1]
		lo, hi := variant{Model: m, Proto: protoTCP, Idle: s.nLo}, variant{Model: m, Proto: protoTCP, Idle: s.nHi}
		if m == selectModel || m == poll {
			s.cmp = j.compare("server.wait_ns_per_call", lo, hi, 0) // the claim: it grows
		} else {
			s.cmp = j.describe("server.wait_ns_per_call", lo, hi) // judged by its growth per descriptor
		}
		s.perDesc = (s.cmp.B.Median - s.cmp.A.Median) / float64(s.nHi-s.nLo)
		out = append(out, s)
	}
	return out
}

// c9: select/poll cost grows with the descriptors watched, epoll's does not.
func (j judged) c9() (claimVerdict, bool) {
	var scan, ep []scaling
	var parts []string
	for _, s := range j.scalings() {
		if s.nLo == s.nHi {
			parts = append(parts, fmt.Sprintf("%s unsupported at idle %v", s.model, s.unsupportedN))
			continue
		}
		text := fmt.Sprintf("%s %s at %d idle → %s at %d (%.2f ns per idle descriptor)",
			s.model, us(s.cmp.A.Median), s.nLo, us(s.cmp.B.Median), s.nHi, s.perDesc)
		if len(s.unsupportedN) > 0 {
			text += fmt.Sprintf(", unsupported at %v", s.unsupportedN)
		}
		parts = append(parts, text)
		if s.model == selectModel || s.model == poll {
			scan = append(scan, s)
		} else {
			ep = append(ep, s)
		}
	}
	if len(scan) == 0 && len(ep) == 0 {
		return claimVerdict{}, false
	}
	c := claimVerdict{claim: "C9", outcome: experimentv1.Outcome_OUTCOME_INCONCLUSIVE}
	text := "one readiness check over the active connection and N idle ones (timeout 0, nothing ready): " + strings.Join(parts, "; ")
	switch {
	case len(scan) == 0 || len(ep) == 0:
		text += "; the claim compares select or poll with epoll, each at two idle counts or more"
	case slices.ContainsFunc(scan, func(s scaling) bool { return s.cmp.Verdict == measure.Lower || s.cmp.Verdict == measure.Same }):
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		for _, s := range scan {
			text += fmt.Sprintf("; %s from %d to %d idle: %s", s.model, s.nLo, s.nHi, s.cmp.Reason)
		}
		text += "; select/poll did not grow with the descriptors watched"
	case slices.ContainsFunc(scan, func(s scaling) bool { return !s.cmp.Decided() }):
		c.outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		for _, s := range scan {
			text += fmt.Sprintf("; %s from %d to %d idle: %s", s.model, s.nLo, s.nHi, s.cmp.Reason)
		}
	default:
		minScan := scan[0].perDesc
		for _, s := range scan[1:] {
			minScan = min(minScan, s.perDesc)
		}
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
		for _, e := range ep {
			if e.perDesc >= flatShare*minScan {
				c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
				text += fmt.Sprintf("; %s grows too (%.2f ns per descriptor, %.0f%% of select/poll's)", e.model, e.perDesc, 100*e.perDesc/minScan)
			}
		}
	}
	c.text = text + "."
	return c, true
}

// c15: io_uring needs fewer system calls per message than epoll, and
// SQPOLL removes the submitting ones.
func (j judged) c15() (claimVerdict, bool) {
	if !j.has(uringModel) && !j.has(uringSQPoll) {
		return claimVerdict{}, false
	}
	c := claimVerdict{claim: "C15"}
	u, ok := j.find(uringModel)
	if !ok {
		u, ok = j.find(uringSQPoll)
	}
	if !ok {
		c.outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
		var reasons []string
		for _, name := range j.names {
			v := j.variants[name]
			if reason, unsup := j.unsupported(v); unsup && (v.Model == uringModel || v.Model == uringSQPoll) {
				reasons = append(reasons, name+": "+reason)
			}
		}
		c.text = "io_uring did not run on this kernel (" + strings.Join(reasons, "; ") + ")."
		return c, true
	}
	e, ok := j.find(epollLT)
	if !ok {
		e, ok = j.find(epollET)
	}
	if !ok {
		return claimVerdict{}, false
	}
	cmp := j.compare("server.syscalls_per_msg", e, u, 0)
	text := fmt.Sprintf("system calls per message: %s %.2f, %s %.2f (%s)", e.Model, cmp.A.Median, u.Model, cmp.B.Median, cmp.Reason)
	switch cmp.Verdict {
	case measure.Undecided:
		c.outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
	case measure.Lower:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
	}
	lat := j.describe("client.rtt_p50_ns", e, u)
	text += fmt.Sprintf("; RTT p50 %s vs %s", us(lat.A.Median), us(lat.B.Median))
	if sq, ok := j.find(uringSQPoll); ok {
		wake := measure.SpreadOf(j.values(sq, "server.sqpoll_wakeups_per_msg"))
		enters := measure.SpreadOf(j.values(sq, "server.enter_calls_per_msg"))
		cpu := measure.SpreadOf(j.values(sq, "server.sqpoll_cpu_ns_per_msg"))
		text += fmt.Sprintf("; with SQPOLL %.2f io_uring_enter per message, of which %.3f woke the submission thread (the rest wait for completions), and the iou-sqp thread spent %s of CPU per message",
			enters.Median, wake.Median, us(cpu.Median))
		if wake.Median >= sqpollAwake && c.outcome == experimentv1.Outcome_OUTCOME_HOLDS {
			c.outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
			text += "; the thread fell asleep between messages (sqpoll_idle shorter than the gap), so submitting still cost system calls"
		}
	}
	c.text = text + "."
	return c, true
}

// c16: Go's netpoller makes epoll look blocking at small cost.
func (j judged) c16() (claimVerdict, bool) {
	n, ok := j.find(netConn)
	if !ok {
		return claimVerdict{}, false
	}
	var base []variant
	for _, m := range []model{epollLT, blocking} {
		if v := (variant{Model: m, Proto: n.Proto}); j.supported(v) {
			base = append(base, v)
		}
	}
	if len(base) == 0 {
		return claimVerdict{}, false
	}
	rtt := func(v variant) []float64 { return j.values(v, "client.rtt_p50_ns") }
	best := base[0]
	for _, b := range base[1:] {
		if measure.SpreadOf(rtt(b)).Median < measure.SpreadOf(rtt(best)).Median {
			best = b
		}
	}
	cmp := j.compare("client.rtt_p50_ns", best, n, smallCost-1)
	var parts []string
	for _, b := range base {
		cpu := measure.SpreadOf(j.values(b, "server.cpu_ns_per_msg")).Median
		parts = append(parts, fmt.Sprintf("%s %s (serving thread %s CPU per message)", b.Model, us(measure.SpreadOf(rtt(b)).Median), us(cpu)))
	}
	ncpu := measure.SpreadOf(j.values(n, "server.cpu_ns_per_msg")).Median
	text := fmt.Sprintf("%s RTT p50: netconn %s (whole process %s CPU per message), %s", n.Proto, us(cmp.B.Median), us(ncpu), strings.Join(parts, ", "))
	if sys := measure.SpreadOf(j.values(n, "server.syscalls_per_msg")); sys.N > 0 {
		text += fmt.Sprintf("; netconn's process made %.2f system calls per message", sys.Median)
	}
	c := claimVerdict{claim: "C16"}
	switch {
	case cmp.Verdict == measure.Same || cmp.Verdict == measure.Lower:
		c.outcome = experimentv1.Outcome_OUTCOME_HOLDS
		text += fmt.Sprintf("; against %s: %s, within the %.0f%% this verdict calls small", best.Model, cmp.Reason, 100*(smallCost-1))
	case cmp.Verdict == measure.Higher && cmp.Beyond:
		c.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		text += fmt.Sprintf("; against %s: %s, more than the %.0f%% this verdict calls small", best.Model, cmp.Reason, 100*(smallCost-1))
	default:
		c.outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		text += fmt.Sprintf("; against %s, whether the overhead is within the %.0f%% this verdict calls small: %s", best.Model, 100*(smallCost-1), cmp.Reason)
	}
	c.text = text + "."
	return c, true
}

// us writes a duration in µs, or in ms from 10 ms up.
func us(ns float64) string {
	if ns >= 10e6 {
		return fmt.Sprintf("%.1f ms", ns/1e6)
	}
	return fmt.Sprintf("%.2f µs", ns/1e3)
}

// PacketStages: the data's arrival, the wakeup and the copy.
func (Experiment) PacketStages() []string {
	return []string{"sk_data_ready", "reader wakeup", "copy to user"}
}

// JudgePackets adds what C8 is about, as packet tracing saw it: per model,
// the time from the data's arrival on the socket (sk_data_ready) to the
// reading thread's wakeup, and from the wakeup to the copy to the reader.
// A model that never slept has no wakeup on its path.
func (Experiment) JudgePackets(rows []*experimentv1.SummaryRow, v *experimentv1.Verdict) {
	var parts []string
	for _, row := range rows {
		pp := row.GetPacketPath()
		if pp.GetPackets() == 0 {
			continue
		}
		woke, copied := judge.Gap(pp, "sk_data_ready", "reader wakeup"), judge.Gap(pp, "reader wakeup", "copy to user")
		direct := judge.Gap(pp, "sk_data_ready", "copy to user")
		switch {
		case woke != nil && copied != nil:
			parts = append(parts, fmt.Sprintf("%s: sk_data_ready → reader wakeup %s, wakeup → copy to user %s (p50 over %d packets)",
				row.GetVariant(), judge.Micros(woke.GetP50Ns()), judge.Micros(copied.GetP50Ns()), woke.GetPackets()))
		case direct != nil:
			parts = append(parts, fmt.Sprintf("%s: no wakeup on the path (the reader was not asleep), sk_data_ready → copy to user %s",
				row.GetVariant(), judge.Micros(direct.GetP50Ns())))
		}
	}
	if len(parts) > 0 {
		v.Explanation += " Packet path: " + strings.Join(parts, "; ") + "."
	}
}
