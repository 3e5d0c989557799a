package runs

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/pktpath"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
)

// PacketCap bounds the packets a run traces: past it, sampling stops (and
// the result says so), drops are still reported.
const PacketCap = 20000

// packetTrace is a run's trace of the kernel's packet path (labctl run
// --trace-packets): the tracer, and what it saw of each variant.
type packetTrace struct {
	t       *pktpath.Tracer
	info    *experimentv1.PacketTracing
	packets map[string][]*pktpath.Packet
	drops   map[string][]pktpath.Drop
}

// startPacketTrace starts tracing the lab's packets at rate, for a run of
// exp, at the stages PacketStages chooses (all: every stage). A tracer
// that cannot start (no BTF, no privilege) leaves the run untraced, with
// the reason in the result; stages that cannot attach, or were left out,
// are listed.
func startPacketTrace(plan *topologies.Plan, exp experiments.Experiment, rate float64, all bool, say func(string)) *packetTrace {
	pt := &packetTrace{info: &experimentv1.PacketTracing{Rate: rate, Cap: PacketCap},
		packets: map[string][]*pktpath.Packet{}, drops: map[string][]pktpath.Drop{}}
	rules := slices.ContainsFunc(plan.Nodes, func(n topologies.Node) bool { return len(n.Firewall) > 0 })
	detail, netfilter := PacketStages(exp, rate, all, rules)
	t, err := pktpath.Start(pktpath.Options{Namespaces: labNamespaces(plan), Rate: rate, Cap: PacketCap,
		Stages: detail, Netfilter: netfilter})
	if err != nil {
		pt.info.Error = err.Error()
		say("packet tracing not engaged: " + err.Error())
		return pt
	}
	pt.t = t
	pt.info.Omitted = t.Omitted()
	for _, m := range t.Missing() {
		pt.info.Missing = append(pt.info.Missing, fmt.Sprintf("%s: %v", m.Stage, m.Err))
		say(fmt.Sprintf("packet tracing: stage %s missing: %v", m.Stage, m.Err))
	}
	return pt
}

// step takes the packets whose path began during one step, puts them in
// the trace under the step's span (ctx), and keeps them for the variant's
// summary.
func (pt *packetTrace) step(ctx context.Context, variant string, from, to time.Time) {
	if pt == nil || pt.t == nil {
		return
	}
	pt.t.Flush()
	packets := pt.t.Take(from, to)
	pktpath.Record(ctx, tracer, packets)
	pt.packets[variant] = append(pt.packets[variant], packets...)
	pt.drops[variant] = append(pt.drops[variant], pt.t.TakeDrops(from, to)...)
}

// finish puts each variant's summary in its row and the trace's own
// numbers in the result, and stops tracing.
func (pt *packetTrace) finish(res *experimentv1.Result) {
	if pt == nil {
		return
	}
	res.PacketTracing = pt.info
	if pt.t == nil {
		return
	}
	st := pt.t.Stats()
	pt.info.Traced, pt.info.Capped, pt.info.Lost = int64(st.Traced), st.Capped, st.Lost
	pt.info.BpfNs, pt.info.BpfPackets = st.BPFTime.Nanoseconds(), int64(st.BPFPackets)
	for _, row := range res.GetSummary() {
		if p, d := pt.packets[row.GetVariant()], pt.drops[row.GetVariant()]; len(p) > 0 || len(d) > 0 {
			row.PacketPath = pktpath.Summarize(p, d)
		}
	}
}

// close stops tracing: every program and link goes.
func (pt *packetTrace) close() {
	if pt != nil && pt.t != nil {
		_ = pt.t.Close()
	}
}

// PacketStages is what a run of exp traces at rate (bench/ measures the
// same): every tracepoint stage when every packet is traced or all is
// asked for, else the landmarks and the stages the experiment's verdict
// reads, since each attached tracepoint costs every packet a program run,
// sampled or not (pktpath.Detail).
// Netfilter's hooks are traced when every packet is, when the lab has
// firewall rules (where a packet meets them is then the point), or when
// the verdict reads them: in a node without rules, a BPF netfilter hook
// would put every packet through netfilter, four hooks a packet.
func PacketStages(exp experiments.Experiment, rate float64, all, rules bool) (detail pktpath.Detail, netfilter bool) {
	var stages []string
	if pj, ok := exp.(experiments.PacketJudged); ok {
		stages = pj.PacketStages()
	}
	detail, netfilter = pktpath.DetailFor(stages)
	if rate >= 1 || all {
		detail = pktpath.Every
	}
	return detail, netfilter || rate >= 1 || rules
}

// labNamespaces are the lab's namespaces with the node of each.
func labNamespaces(plan *topologies.Plan) map[string]string {
	out := map[string]string{}
	for _, ns := range plan.Namespaces() {
		out[ns], _ = plan.NodeOf(ns)
	}
	return out
}
