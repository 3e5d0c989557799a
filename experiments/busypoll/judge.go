package busypoll

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

// Judge summarises each variant, decides from the evidence whether its
// mechanism engaged, and answers C1 (C2 when only epoll mechanisms ran)
// by comparing every engaged busy-poll variant with its baseline on the
// same device.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	for _, row := range rows {
		v, err := parseVariant(row.GetVariant())
		if err != nil {
			row.Note = err.Error()
			continue
		}
		row.Engagement, row.Note = engagement(v, stepsOf(steps, row.GetVariant()))
	}
	measured := map[device]bool{}
	for _, s := range steps {
		if v, err := parseVariant(s.GetStep().GetVariant()); err == nil {
			measured[v.Device] = true
		}
	}
	for _, d := range experiments.As[params](p).Devices {
		if !measured[d] {
			rows = append(rows, &experimentv1.SummaryRow{Variant: string(d), Engagement: experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED,
				Note: fmt.Sprintf("not measured: the lab has no %s path between the client's and the server's nodes", d)})
		}
	}
	return rows, verdict(p, steps, rows)
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

// stepEvidence is what one step's reports say about engagement.
type stepEvidence struct {
	unsupported string  // why the variant could not run, or ""
	napi        float64 // the first non-zero NAPI id of either role's socket
	busyPolled  float64 // BusyPollRxPackets growth, both nodes (and the host's, for a macvlan)
	emptyRecvs  float64 // client's recv calls that found nothing, per message
}

func evidenceOf(s *experimentv1.StepResult) stepEvidence {
	var e stepEvidence
	for _, r := range s.GetReports() {
		if _, ok := report.EvidenceValue(r, "unsupported"); ok {
			e.unsupported = strings.Join(r.GetNotes(), "; ")
		}
		if id, _ := report.EvidenceValue(r, "napi_id"); id != 0 && e.napi == 0 {
			e.napi = id
		}
		for _, name := range []string{"busy_poll_rx_packets", "host_busy_poll_rx_packets"} {
			bp, _ := report.EvidenceValue(r, name)
			e.busyPolled += bp
		}
		if r.GetRole() == "client" {
			e.emptyRecvs = r.GetMetrics()["empty_recvs_per_msg"]
		}
	}
	return e
}

// engagement decides from the evidence of a variant's repeats.
func engagement(v variant, steps []*experimentv1.StepResult) (experimentv1.Engagement, string) {
	var ev []stepEvidence
	for _, s := range steps {
		e := evidenceOf(s)
		if e.unsupported != "" {
			return experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED, e.unsupported
		}
		ev = append(ev, e)
	}
	if len(ev) == 0 {
		return experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, "no steps"
	}
	napi, busy := 0.0, []float64{}
	engaged, spun := 0, 0
	for _, e := range ev {
		if e.napi != 0 {
			napi = e.napi
			if e.busyPolled > 0 {
				engaged++
			}
		}
		if e.emptyRecvs > 0 {
			spun++
		}
		busy = append(busy, e.busyPolled)
	}
	path := "NAPI id 0: the packets reached the sockets without a NAPI context"
	if napi != 0 {
		path = fmt.Sprintf("NAPI id %.0f", napi)
	}
	switch {
	case v.Mechanism.Baseline():
		return experimentv1.Engagement_ENGAGEMENT_BASELINE, "baseline; " + path
	case v.Mechanism == spin:
		if spun < len(ev) {
			return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, fmt.Sprintf("user-space spin not engaged: recv never found the socket empty in %d of %d repeats", len(ev)-spun, len(ev))
		}
		return experimentv1.Engagement_ENGAGEMENT_ENGAGED, "user-space spin, a different mechanism: the thread never sleeps but polls no device; " + path
	case napi == 0:
		return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "busy polling not engaged: " + path + ", so the knob had no queue to poll (BusyPollRxPackets did not grow)"
	case engaged == 0:
		return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "busy polling not engaged: " + path + " but BusyPollRxPackets did not grow: the softirq delivered every packet before a busy poll found it"
	case 2*engaged <= len(ev):
		return experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, fmt.Sprintf("busy polling not engaged: BusyPollRxPackets grew in only %d of %d repeats (%s)", engaged, len(ev), path)
	}
	note := fmt.Sprintf("busy polling engaged: %s, BusyPollRxPackets grew by %.0f (median over %d repeats)", path, measure.SpreadOf(busy).Median, len(ev))
	if engaged < len(ev) {
		// A busy poll that finds the NAPI instance already scheduled by
		// the sender's softirq cannot poll it; on a loaded machine that can
		// happen for a whole step.
		note += fmt.Sprintf("; in %d of %d repeats the softirq delivered every packet before a busy poll found it", len(ev)-engaged, len(ev))
	}
	return experimentv1.Engagement_ENGAGEMENT_ENGAGED, note
}

// comparison is an engaged variant against its baseline on its device.
type comparison struct {
	v, base  variant
	rtt, cpu measure.Decision
	vcsw     [2]float64 // median voluntary switches per message: baseline, variant
}

const (
	rttMetric  = "client.rtt_p50_ns"
	cpuMetric  = "client.cpu_ns_per_msg"
	vcswMetric = "client.vcsw_per_msg"
)

func verdict(p experiments.Params, steps []*experimentv1.StepResult, rows []*experimentv1.SummaryRow) *experimentv1.Verdict {
	rounds := experiments.As[params](p).Rounds
	out := &experimentv1.Verdict{}
	var cmps []comparison
	var unsupported []string
	// Not engaged: per device, the variants that did not and those that did.
	missed, hit := map[device][]string{}, map[device]bool{}
	epollOnly, asked := true, false
	for _, row := range rows {
		v, err := parseVariant(row.GetVariant())
		if err != nil && row.GetEngagement() == experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED {
			unsupported = appendNew(unsupported, row.GetVariant()) // a device the lab lacks
		}
		if err != nil || !v.Mechanism.KernelBusyPoll() {
			continue
		}
		asked = true
		epollOnly = epollOnly && v.Mechanism.Mode() == modeEpoll
		switch row.GetEngagement() {
		case experimentv1.Engagement_ENGAGEMENT_ENGAGED:
			hit[v.Device] = true
			base := variant{Device: v.Device, Mechanism: v.Mechanism.BaselineOf()}
			if report.Row(rows, base.String()) == nil {
				continue
			}
			med := func(variant, metric string) float64 {
				return measure.SpreadOf(report.Values(steps, variant, metric)).Median
			}
			// The claim is about the direction: busy polling cuts the
			// RTT, by whatever it cuts it.
			cmps = append(cmps, comparison{v: v, base: base,
				rtt:  judge.Compare(out, rounds.Test(0), steps, rttMetric, base.String(), v.String()),
				cpu:  judge.Decide(rounds.Test(0), steps, cpuMetric, base.String(), v.String()),
				vcsw: [2]float64{med(base.String(), vcswMetric), med(v.String(), vcswMetric)}})
		case experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED:
			missed[v.Device] = append(missed[v.Device], v.String())
		case experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED:
			unsupported = appendNew(unsupported, v.String())
		}
	}
	claim := "C1"
	if asked && epollOnly {
		claim = "C2"
	}
	out.Claim = claim
	var tail []string
	// A device where nothing engaged is named; elsewhere the variants.
	var notEngaged []string
	for _, d := range devices {
		switch {
		case len(missed[d]) == 0:
		case hit[d]:
			notEngaged = append(notEngaged, missed[d]...)
		default:
			notEngaged = append(notEngaged, string(d))
		}
	}
	if len(notEngaged) > 0 {
		tail = append(tail, "busy polling not engaged on "+strings.Join(notEngaged, ", ")+" (see each row's evidence)")
	}
	if len(unsupported) > 0 {
		tail = append(tail, "could not measure "+strings.Join(unsupported, ", "))
	}
	switch {
	case !asked:
		out.Outcome = experimentv1.Outcome_OUTCOME_MEASURED
		out.Explanation = "no busy-poll mechanism was measured; the rows are baselines and user-space spin"
		return out
	case len(cmps) == 0:
		out.Outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
		if len(notEngaged) == 0 {
			out.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
			tail = append(tail, "no engaged variant had its baseline measured on the same device")
		}
		out.Explanation = "The run says nothing about the claim: " + strings.Join(tail, "; ") + "."
		return out
	}
	var lower, higher, undecided []comparison
	for _, c := range cmps {
		switch c.rtt.Verdict {
		case measure.Lower:
			lower = append(lower, c)
		case measure.Higher:
			higher = append(higher, c)
		default:
			undecided = append(undecided, c)
		}
	}
	switch {
	case len(lower) == len(cmps) && len(notEngaged) == 0:
		out.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
	case len(lower) > 0:
		out.Outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
	case len(higher) > 0:
		out.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
	default:
		out.Outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
	}
	best := cmps[0]
	for _, c := range cmps[1:] {
		if c.rtt.Ratio < best.rtt.Ratio {
			best = c
		}
	}
	first := fmt.Sprintf("On %s, %s took the median p50 RTT from %s (%s) to %s (%s), at %s of client CPU per message instead of %s and %.2f voluntary context switches instead of %.2f",
		best.v.Device, best.v.Mechanism, usec(best.rtt.A.Median), best.base.Mechanism, usec(best.rtt.B.Median), significance(best.rtt),
		usec(best.cpu.B.Median), usec(best.cpu.A.Median), best.vcsw[1], best.vcsw[0])
	if napi, ok := medianEvidence(steps, best.v.String(), "napi_id"); ok {
		first += fmt.Sprintf(" (evidence: NAPI id %.0f, %.2f packets per message taken by busy polling in the server's node)", napi,
			measure.SpreadOf(report.Values(steps, best.v.String(), "server.busy_poll_rx_packets_per_msg")).Median)
	}
	if spin := report.Values(steps, variant{Device: best.v.Device, Mechanism: spin}.String(), rttMetric); len(spin) > 0 {
		first += fmt.Sprintf("; a user-space spin on the same device: %s", usec(measure.SpreadOf(spin).Median))
	}
	counts := fmt.Sprintf("%d of %d engaged variants were faster than their baseline, %d slower, %d undecided (%.0f%% confidence per comparison)",
		len(lower), len(cmps), len(higher), len(undecided), 100*best.rtt.Level)
	for _, c := range undecided {
		counts += fmt.Sprintf("; %s: %s", c.v, c.rtt.Reason)
	}
	out.Explanation = first + ". " + strings.Join(append([]string{counts}, tail...), "; ") + "."
	return out
}

// medianEvidence is the median over a variant's repeats of a piece of the
// server's evidence.
func medianEvidence(steps []*experimentv1.StepResult, variant, name string) (float64, bool) {
	var xs []float64
	for _, s := range stepsOf(steps, variant) {
		if x, ok := report.EvidenceValue(report.ReportOf(s, "server"), name); ok {
			xs = append(xs, x)
		}
	}
	return measure.SpreadOf(xs).Median, len(xs) > 0
}

func significance(d measure.Decision) string {
	return fmt.Sprintf("×%.2f: %s", d.Ratio, d.Reason)
}

func usec(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1e3) }

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// PacketStages: the receive entry, where the poller of each packet is
// told.
func (Experiment) PacketStages() []string { return []string{"netif_receive_skb"} }

// JudgePackets adds who took the traced packets from their queue, per
// variant: a busy-polling thread or the receive softirq. It is the
// packets' own account of what busy_poll_rx_packets counts for the whole
// namespace.
func (Experiment) JudgePackets(rows []*experimentv1.SummaryRow, v *experimentv1.Verdict) {
	var parts []string
	for _, row := range rows {
		pp := row.GetPacketPath()
		busy, softirq := pp.GetPolledByBusyPoll(), pp.GetPolledInSoftirq()
		if busy+softirq == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d receptions busy polled, %d in softirq", row.GetVariant(), busy, softirq))
	}
	if len(parts) > 0 {
		v.Explanation += " Packet path, who took the traced packets from their queue: " + strings.Join(parts, "; ") + "."
	}
}
