package zerocopy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/units"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// costMetric is what "pays off" means: the CPU time of the sending thread
// per byte, the process cycles the claim is about. A kernel without
// CONFIG_IRQ_TIME_ACCOUNTING charges a thread the softirq work done in its
// context too (over veth and loopback, much of the receive path).
const costMetric = "client.cpu_ns_per_byte"

// observed is what the roles' evidence says about one variant, over its
// repeats.
type observed struct {
	unsupported   string
	zc            bool // zero-copy completions were counted
	zcCompleted   float64
	zcCopied      float64
	sg            float64 // egress scatter-gather: 1, 0, or -1 unknown
	rx            bool    // TCP_ZEROCOPY_RECEIVE counted bytes
	mapped        float64
	rxCopied      float64
	packetSockets int32
}

func observe(steps []*experimentv1.StepResult) map[string]*observed {
	out := map[string]*observed{}
	for _, s := range steps {
		v := s.GetStep().GetVariant()
		o := out[v]
		if o == nil {
			o = &observed{sg: -1}
			out[v] = o
		}
		for _, r := range s.GetReports() {
			for _, e := range r.GetEvidence() {
				switch e.GetName() {
				case "unsupported":
					if o.unsupported == "" {
						o.unsupported = r.GetRole() + ": " + e.GetDetail()
					}
				case "zc_completed":
					o.zc = true
					o.zcCompleted += e.GetValue()
				case "zc_copied":
					o.zcCopied += e.GetValue()
				case "egress_sg":
					if o.sg < 0 || e.GetValue() < o.sg {
						o.sg = e.GetValue()
					}
				case "mapped_bytes":
					o.rx = true
					o.mapped += e.GetValue()
				case "copied_bytes":
					o.rxCopied += e.GetValue()
				}
			}
			if r.GetRole() == "client" {
				o.packetSockets = max(o.packetSockets, r.GetEnvironment().GetPacketSockets())
			}
		}
	}
	return out
}

// engagement says from the evidence whether a variant's mechanisms ran,
// the send path's and the receive path's, and why.
func engagement(v variant, o *observed) (experimentv1.Engagement, string) {
	if o.unsupported != "" {
		return experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED, "cannot run here: " + o.unsupported
	}
	se, sendNote := sendEngagement(v, o)
	re, recvNote := recvEngagement(v, o)
	var notes []string
	for _, n := range []string{sendNote, recvNote} {
		if n != "" {
			notes = append(notes, n)
		}
	}
	if o.packetSockets > 0 {
		notes = append(notes, fmt.Sprintf("%d packet socket(s) open in the client's node: a watching packet socket makes the kernel copy zero-copy sends", o.packetSockets))
	}
	e := experimentv1.Engagement_ENGAGEMENT_BASELINE
	for _, want := range []experimentv1.Engagement{experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, experimentv1.Engagement_ENGAGEMENT_ENGAGED} {
		if se == want || re == want {
			e = want
			break
		}
	}
	return e, strings.Join(notes, "; ")
}

// sendEngagement judges the send path: the zero-copy send engaged when
// the kernel completed sends without copying them; sendfile and splice hand
// TCP page references when the egress device has scatter-gather. Copy
// paths are baselines.
func sendEngagement(v variant, o *observed) (experimentv1.Engagement, string) {
	switch {
	case zerocopySend(v.Send) && (!o.zc || o.zcCompleted == 0):
		return experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, "no zero-copy completion was reported"
	case zerocopySend(v.Send) && o.zcCopied == o.zcCompleted:
		return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, fmt.Sprintf(
			"zero-copy not achieved on this path: the kernel copied %.0f of %.0f completed sends (delivery to a local socket, as over loopback and veth, copies in skb_orphan_frags_rx; so does a packet socket watching)%s",
			o.zcCopied, o.zcCompleted, uringVersions(v.Send))
	case zerocopySend(v.Send):
		return experimentv1.Engagement_ENGAGEMENT_ENGAGED, fmt.Sprintf("zero copy: the kernel copied %.0f of %.0f completed sends%s", o.zcCopied, o.zcCompleted, uringVersions(v.Send))
	case v.Send == sendfile || v.Send == splice:
		switch o.sg {
		case 1:
			return experimentv1.Engagement_ENGAGEMENT_ENGAGED, "the egress device has scatter-gather: TCP holds references to the page-cache pages, no copy (splice to TCP goes through MSG_SPLICE_PAGES since Linux 6.5)"
		case 0:
			return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "the egress device has no scatter-gather: TCP copies the pages into its buffers"
		}
		return experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, "the egress device's scatter-gather feature could not be read (ethtool -k)"
	case v.Send == mmapWrite:
		return experimentv1.Engagement_ENGAGEMENT_BASELINE, "no kernel mechanism: write from the file's mapping skips read's copy into a buffer, and still copies into the socket"
	}
	return experimentv1.Engagement_ENGAGEMENT_BASELINE, ""
}

// recvEngagement judges the receive path: TCP_ZEROCOPY_RECEIVE engaged
// when it mapped bytes.
func recvEngagement(v variant, o *observed) (experimentv1.Engagement, string) {
	switch {
	case v.Recv == tcpzc && !o.rx:
		return experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, "TCP_ZEROCOPY_RECEIVE counted no bytes"
	case v.Recv == tcpzc && o.mapped == 0:
		return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, fmt.Sprintf(
			"TCP_ZEROCOPY_RECEIVE mapped nothing: all %.0f bytes were copied (only whole, page-aligned, private pages can be mapped; since Linux 6.8 no page-cache or compound pages)", o.rxCopied)
	case v.Recv == tcpzc:
		return experimentv1.Engagement_ENGAGEMENT_ENGAGED, fmt.Sprintf("TCP_ZEROCOPY_RECEIVE mapped %.0f%% of the bytes", 100*o.mapped/(o.mapped+o.rxCopied))
	case v.Recv == recvTrunc:
		return experimentv1.Engagement_ENGAGEMENT_BASELINE, "the receiver discards the data in the kernel (MSG_TRUNC): a bound on receiving without the copy, not a way to receive"
	}
	return experimentv1.Engagement_ENGAGEMENT_BASELINE, ""
}

func uringVersions(send string) string {
	if send == msgZerocopy {
		return ""
	}
	return " (io_uring SEND_ZC: Linux 6.0+, copy reporting 6.2+)"
}

// pathResult is the judgement of one path against its baseline on one
// link and receive path, over the sizes both ran at.
type pathResult struct {
	link, recv, send string
	sizes            []sizeResult
	// crossover is the smallest size from which the path costs less than
	// its baseline at every larger size; 0 if it does not at the largest.
	crossover int
	outcome   experimentv1.Outcome
	// For sizes at which the path did not engage or could not run: why
	// (the first), and the zero-copy sends completed and copied, summed.
	why               string
	copied, completed float64
}

type sizeResult struct {
	size int
	cmp  measure.Decision
	// base and variant are the names of the baseline and path variants.
	base, variant string
}

// judgePaths compares every path that has a baseline with it, size by
// size, on the sender's CPU per byte.
func judgePaths(rounds experiments.Rounds, verdict *experimentv1.Verdict, steps []*experimentv1.StepResult, rows []*experimentv1.SummaryRow, obs map[string]*observed) []*pathResult {
	byName := map[string]*experimentv1.SummaryRow{}
	var order []variant
	for _, r := range rows {
		v, err := parseVariant(r.GetVariant())
		if err != nil || obs[r.GetVariant()] == nil {
			continue
		}
		byName[r.GetVariant()] = r
		order = append(order, v)
	}
	var out []*pathResult
	find := func(link, recv, send string) *pathResult {
		for _, p := range out {
			if p.link == link && p.recv == recv && p.send == send {
				return p
			}
		}
		p := &pathResult{link: link, recv: recv, send: send, outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED}
		out = append(out, p)
		return p
	}
	for _, v := range order {
		base := baseline(v.Send)
		if base == "" {
			continue
		}
		bv := v
		bv.Send = base
		if byName[bv.String()] == nil || obs[bv.String()].unsupported != "" {
			continue // the baseline did not run: nothing to compare with
		}
		p := find(v.Link, v.Recv, v.Send)
		o := obs[v.String()]
		if o.unsupported != "" {
			p.why = "cannot run here: " + o.unsupported
			continue
		}
		// Only the send path is judged here: a receive path that did not
		// engage does not change what the send path costs the sender.
		if e, note := sendEngagement(v, o); e != experimentv1.Engagement_ENGAGEMENT_ENGAGED && e != experimentv1.Engagement_ENGAGEMENT_BASELINE {
			if p.why == "" {
				p.why = note
			}
			p.copied += o.zcCopied
			p.completed += o.zcCompleted
			continue
		}
		a, b := report.Values(steps, bv.String(), costMetric), report.Values(steps, v.String(), costMetric)
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		p.sizes = append(p.sizes, sizeResult{size: v.Size, base: bv.String(), variant: v.String(),
			cmp: judge.Decide(rounds.Test(0), steps, costMetric, bv.String(), v.String())})
	}
	for _, pr := range out {
		slices.SortFunc(pr.sizes, func(a, b sizeResult) int { return a.size - b.size })
		if len(pr.sizes) == 0 {
			continue
		}
		// The largest size decides the path, so its comparison is the one
		// recorded (and repeated while undecided); the others describe.
		last := &pr.sizes[len(pr.sizes)-1]
		last.cmp = judge.Compare(verdict, rounds.Test(0), steps, costMetric, last.base, last.variant)
		p := pr
		for i := len(p.sizes) - 1; i >= 0 && pays(p.sizes[i].cmp); i-- {
			p.crossover = p.sizes[i].size
		}
		switch last.cmp.Verdict {
		case measure.Lower:
			p.outcome = experimentv1.Outcome_OUTCOME_HOLDS
		case measure.Higher:
			p.outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		default:
			p.outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		}
	}
	return out
}

// pays: the path costs less than its baseline.
func pays(c measure.Decision) bool { return c.Verdict == measure.Lower }

// combine turns the paths' outcomes into the claim's: a path that costs
// more than its baseline refutes it; if every path that ran pays off it
// holds; if some do and others are within the spread or did not engage, it
// holds only for those (the explanation names them); with none paying off
// it is open while a difference is within the spread, and untested when no
// mechanism engaged.
func combine(paths []*pathResult) experimentv1.Outcome {
	n := map[experimentv1.Outcome]int{}
	for _, p := range paths {
		n[p.outcome]++
	}
	switch {
	case len(paths) == 0:
		return experimentv1.Outcome_OUTCOME_MEASURED
	case n[experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD] > 0:
		return experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
	case n[experimentv1.Outcome_OUTCOME_HOLDS] == len(paths):
		return experimentv1.Outcome_OUTCOME_HOLDS
	case n[experimentv1.Outcome_OUTCOME_HOLDS] > 0:
		return experimentv1.Outcome_OUTCOME_CONDITIONAL
	case n[experimentv1.Outcome_OUTCOME_UNDECIDED] > 0:
		return experimentv1.Outcome_OUTCOME_UNDECIDED
	}
	return experimentv1.Outcome_OUTCOME_NOT_ENGAGED
}

// Judge summarises each variant, says from the evidence whether its
// mechanism engaged, and judges C11 path by path against the baselines.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	obs := observe(steps)
	for _, row := range rows {
		v, err := parseVariant(row.GetVariant())
		if err != nil {
			row.Note = err.Error()
			continue
		}
		row.Engagement, row.Note = engagement(v, obs[row.GetVariant()])
	}
	v := &experimentv1.Verdict{Claim: "C11"}
	paths := judgePaths(experiments.As[params](p).Rounds, v, steps, rows, obs)
	for _, pr := range paths {
		for _, s := range pr.sizes {
			row := report.Row(rows, variant{Link: pr.link, Send: pr.send, Recv: pr.recv, Size: s.size}.String())
			row.Note = joinNotes(row.GetNote(), compareNote(baseline(pr.send), s.cmp))
		}
	}
	v.Outcome, v.Explanation = combine(paths), explain(paths, steps)
	return rows, v
}

// compareNote says how a path's sender CPU per byte compares with its
// baseline's at one size.
func compareNote(base string, c measure.Decision) string {
	return fmt.Sprintf("sender CPU per byte %.3g vs %.3g ns/B of %s: %s", c.B.Median, c.A.Median, base, c.Reason)
}

func joinNotes(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// explain states, per link and receive path, each path's sender CPU per
// byte against its baseline's at the largest size, and its crossover; and
// write's CPU per byte across sizes (C10: the cost of the copy into the
// socket).
func explain(paths []*pathResult, steps []*experimentv1.StepResult) string {
	type group struct {
		name  string
		items []string
	}
	var groups []*group
	for _, p := range paths {
		var item string
		switch {
		case len(p.sizes) == 0 && p.completed > 0 && p.copied == p.completed:
			item = fmt.Sprintf("%s: zero-copy not achieved on this path (the kernel copied %.0f of %.0f sends)", label(p.send), p.copied, p.completed)
		case len(p.sizes) == 0 && p.why != "":
			item = label(p.send) + ": " + firstClause(p.why)
		case len(p.sizes) == 0:
			continue
		default:
			s := p.sizes[len(p.sizes)-1]
			item = fmt.Sprintf("%s %.3g vs %.3g ns/B of sender CPU (%s) at %s", label(p.send), s.cmp.B.Median, s.cmp.A.Median, label(baseline(p.send)), units.FormatSize(int64(s.size)))
			switch p.outcome {
			case experimentv1.Outcome_OUTCOME_HOLDS:
				item += ", pays off from " + units.FormatSize(int64(p.crossover))
			case experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD:
				item += ", costs more"
			default:
				item += ", " + s.cmp.Reason
			}
		}
		name := fmt.Sprintf("Over %s, received with %s", p.link, p.recv)
		if len(groups) == 0 || groups[len(groups)-1].name != name {
			groups = append(groups, &group{name: name})
		}
		g := groups[len(groups)-1]
		g.items = append(g.items, item)
	}
	if len(groups) == 0 {
		return "No path ran together with its baseline (sendfile, splice and mmap_write need read_write; msg_zerocopy needs write; uring_send_zc needs uring_send), so there is nothing to compare." + copyCost(steps) + hostLoad(steps) + retransmissions(steps)
	}
	sentences := make([]string, len(groups))
	for i, g := range groups {
		sentences[i] = g.name + ": " + strings.Join(g.items, "; ") + "."
	}
	return strings.Join(sentences, " ") + copyCost(steps) + hostLoad(steps) + retransmissions(steps)
}

// saturated is the idle share of the host's CPUs below which host CPU per
// byte measures the host's load more than the stream.
const saturated = 0.05

// hostLoad warns when the host had no idle CPU left during steps.
func hostLoad(steps []*experimentv1.StepResult) string {
	busy := 0
	for _, s := range steps {
		if idle, ok := report.EvidenceValue(report.ReportOf(s, "client"), "host_idle_ratio"); ok && idle < saturated {
			busy++
		}
	}
	if busy == 0 {
		return ""
	}
	return fmt.Sprintf(" The host had less than %.0f%% idle CPU during %d of %d steps: host CPU per byte there counts other work too.", 100*saturated, busy, len(steps))
}

// retransmissions reports the steps in which TCP retransmitted, and how
// much of it was spurious (see addHostEvidence).
func retransmissions(steps []*experimentv1.StepResult) string {
	n := 0
	var segs, dsack float64
	for _, s := range steps {
		r := report.ReportOf(s, "client")
		if v, ok := report.EvidenceValue(r, "tcp_retrans_segs"); ok && v > 0 {
			n++
			segs += v
			d, _ := report.EvidenceValue(r, "tcp_dsack_segs")
			dsack += d
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" TCP retransmitted in %d of %d steps, %.0f%% of the segments spuriously (DSACK: reordering, not loss; over veth packets sent from two CPUs queue on two backlogs, which pinning both roles to one CPU avoids).", n, len(steps), 100*min(dsack/segs, 1))
}

// firstClause keeps a note's first clause, for a one-line explanation.
func firstClause(s string) string {
	s, _, _ = strings.Cut(s, "; ")
	s, _, _ = strings.Cut(s, " (")
	return s
}

// copyCost reports write's sender CPU per byte at its smallest and largest
// size on the first link it ran on.
func copyCost(steps []*experimentv1.StepResult) string {
	var first, last *variant
	for _, name := range report.Variants(steps) {
		v, err := parseVariant(name)
		if err != nil || v.Send != write || v.Recv != read {
			continue
		}
		if first == nil {
			first, last = &v, &v
			continue
		}
		if v.Link != first.Link {
			continue
		}
		if v.Size < first.Size {
			first = &v
		}
		if v.Size > last.Size {
			last = &v
		}
	}
	if first == nil || first.Size == last.Size {
		return ""
	}
	at := func(v *variant) float64 {
		return measure.SpreadOf(report.Values(steps, v.String(), costMetric)).Median
	}
	return fmt.Sprintf(" C10: write from memory costs the sender %.3g ns/B at %s and %.3g ns/B at %s on %s.",
		at(first), units.FormatSize(int64(first.Size)), at(last), units.FormatSize(int64(last.Size)), first.Link)
}
