package captureorder

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// counts are one step's numbers, from both roles' reports.
type counts struct {
	Client, Server  string // nodes
	Sent, OK, EPERM float64
	Wire            float64 // egress copies on the sender's interface
	Captured        float64 // ingress copies on the receiver's interface
	Rule            float64 // the drop rule's counter delta
	Delivered       float64
	// Tcpdump holds tcpdump's "packets captured" per role, when it ran.
	Tcpdump map[string]float64
	// Drops are frames the capture sockets could not queue.
	Drops float64
}

// countsOf reads a step's counts; ok is false when a report is missing.
func countsOf(s *experimentv1.StepResult) (c counts, ok bool) {
	cl, sv := report.ReportOf(s, "client"), report.ReportOf(s, "server")
	if cl == nil || sv == nil {
		return c, false
	}
	cm, sm := cl.GetMetrics(), sv.GetMetrics()
	c = counts{Client: cl.GetNode(), Server: sv.GetNode(), Sent: cm["sent_packets"], OK: cm["send_ok_packets"], EPERM: cm["send_eperm_packets"],
		Wire: cm["wire_packets"], Captured: sm["captured_packets"], Delivered: sm["delivered_packets"], Tcpdump: map[string]float64{}}
	owner := sm
	if s.GetStep().GetVariant() == variantOutput {
		owner = cm
	}
	c.Rule = owner["rule_packets"]
	for role, r := range map[string]*experimentv1.RoleReport{"client": cl, "server": sv} {
		if n, ran := r.GetMetrics()["tcpdump_packets"]; ran {
			c.Tcpdump[role] = n
		}
		d, _ := report.EvidenceValue(r, "capture_drops")
		c.Drops += d
	}
	return c, true
}

// Expected checks a step's counts against the ordering C7 claims and
// returns what contradicts it.
func (c counts) Expected(variant string) []string {
	var bad []string
	want := func(what string, got, want float64) {
		if got != want {
			bad = append(bad, fmt.Sprintf("%s %.0f, expected %.0f", what, got, want))
		}
	}
	onWire := c.Sent // what the sender's interface should carry
	if variant == variantOutput {
		onWire = 0
		want("sends refused with EPERM", c.EPERM, c.Sent)
	} else {
		want("successful sends", c.OK, c.Sent)
	}
	want("frames on "+c.Client+"'s wire", c.Wire, onWire)
	want("frames captured at "+c.Server, c.Captured, onWire)
	want("delivered to the application", c.Delivered, 0)
	for _, role := range slices.Sorted(maps.Keys(c.Tcpdump)) {
		want("tcpdump on the "+role, c.Tcpdump[role], onWire)
	}
	return bad
}

func (c counts) String() string {
	s := fmt.Sprintf("sent %.0f (ok %.0f, EPERM %.0f), on %s's wire %.0f, captured at %s %.0f, rule %.0f, delivered %.0f",
		c.Sent, c.OK, c.EPERM, c.Client, c.Wire, c.Server, c.Captured, c.Rule, c.Delivered)
	for _, role := range slices.Sorted(maps.Keys(c.Tcpdump)) {
		s += fmt.Sprintf(", tcpdump (%s) %.0f", role, c.Tcpdump[role])
	}
	return s
}

// Judge checks every step against the ordering and answers C7.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	v := &experimentv1.Verdict{Claim: "C7"}
	results := map[string]*variantResult{}
	for _, s := range steps {
		variant := s.GetStep().GetVariant()
		r := results[variant]
		if r == nil {
			r = &variantResult{engaged: true}
			results[variant] = r
		}
		c, ok := countsOf(s)
		if !ok {
			continue
		}
		if r.n == 0 {
			r.first = c
		}
		r.n++
		rep := fmt.Sprintf("repeat %d: ", s.GetStep().GetRepeat()+1)
		if c.Rule != c.Sent {
			r.engaged = false
			r.bad = append(r.bad, fmt.Sprintf("%sthe rule matched %.0f of %.0f", rep, c.Rule, c.Sent))
			continue
		}
		if c.Drops > 0 {
			r.lost = append(r.lost, fmt.Sprintf("%sthe capture sockets lost %.0f frames", rep, c.Drops))
		}
		for _, b := range c.Expected(variant) {
			r.bad = append(r.bad, rep+b)
		}
	}
	for _, row := range rows {
		r := results[row.GetVariant()]
		row.Note = r.first.String()
		row.Engagement = experimentv1.Engagement_ENGAGEMENT_ENGAGED
		if !r.engaged {
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			row.Note += "; " + strings.Join(r.bad, "; ")
		}
	}
	in, out := results[variantInput], results[variantOutput]
	switch {
	case in == nil || out == nil || in.n == 0 || out.n == 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "C7 needs both an INPUT and an OUTPUT drop with reports from both roles; this run lacks one."
	case !in.engaged || !out.engaged:
		v.Outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
		v.Explanation = "The drop rules did not match every datagram, so the counts say nothing about the ordering: " +
			strings.Join(append(in.bad, out.bad...), "; ") + "."
	case len(in.lost)+len(out.lost) > 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "The capture sockets lost frames, so their counts are lower bounds: " + strings.Join(append(in.lost, out.lost...), "; ") + "."
	case len(in.bad)+len(out.bad) > 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		v.Explanation = fmt.Sprintf("The counts contradict the ordering: %s. INPUT: %s. OUTPUT: %s.",
			strings.Join(append(in.bad, out.bad...), "; "), in.first, out.first)
	default:
		v.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
		v.Explanation = fmt.Sprintf("INPUT drop on %s: %s — captured, not delivered: on ingress __netif_receive_skb_core hands the frame to the "+
			"capture (ptype_all) before ip_rcv, and NF_INET_LOCAL_IN comes later in ip_local_deliver. "+
			"OUTPUT drop on %s: %s — every sendto failed with EPERM and nothing reached the wire or the capture: NF_INET_LOCAL_OUT runs in "+
			"ip_local_out, before dev_queue_xmit hands frames to the egress tap (dev_queue_xmit_nit). Same in all %d repeats of each.",
			in.first.Server, in.first, out.first.Client, out.first, min(in.n, out.n))
	}
	return rows, v
}

// variantResult gathers the steps of one variant.
type variantResult struct {
	first   counts // of the first repeat, for the explanation
	n       int
	engaged bool     // the rule matched every datagram in every repeat
	bad     []string // contradictions, by repeat
	lost    []string // repeats whose captures lost frames
}

// JudgePackets adds what packet tracing saw of the order: on the way in,
// the packets reach netif_receive_skb (where the capture's tap clones
// them) before netfilter's LOCAL_IN drops them; on the way out, LOCAL_OUT
// drops them before they reach the device queue the tap sits behind.
func (Experiment) JudgePackets(rows []*experimentv1.SummaryRow, v *experimentv1.Verdict) {
	var parts []string
	if pp := report.Row(rows, variantInput).GetPacketPath(); pp.GetPackets() > 0 {
		n, where := judge.Dropped(pp, "NETFILTER_DROP")
		parts = append(parts, fmt.Sprintf("INPUT: %d traced packets, %d came to netif_receive_skb (the capture's tap), %d later to nf LOCAL_IN, %d dropped with NETFILTER_DROP (%s)",
			pp.GetPackets(), judge.Reached(pp, "netif_receive_skb"), judge.Reached(pp, "nf LOCAL_IN"), n, orNone(where)))
	}
	if pp := report.Row(rows, variantOutput).GetPacketPath(); pp.GetPackets() > 0 {
		n, where := judge.Dropped(pp, "NETFILTER_DROP")
		parts = append(parts, fmt.Sprintf("OUTPUT: %d traced packets, %d dropped with NETFILTER_DROP (%s), %d reached net_dev_queue",
			pp.GetPackets(), n, orNone(where), judge.Reached(pp, "net_dev_queue")))
	}
	if len(parts) > 0 {
		v.Explanation += " Packet path: " + strings.Join(parts, "; ") + "."
	}
}

// PacketStages: the capture's tap, netfilter's LOCAL_IN and the device
// queue, against the drop.
func (Experiment) PacketStages() []string {
	return []string{"netif_receive_skb", "nf LOCAL_IN", "net_dev_queue", "drop"}
}

func orNone(s string) string {
	if s == "" {
		return "nowhere"
	}
	return s
}
