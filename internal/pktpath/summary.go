package pktpath

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// label is a stage as a summary names it: where it ran, too.
func label(s Stage) string {
	if s.Node == "" {
		return s.Name
	}
	return s.Name + "@" + s.Node
}

// Summarize is where the time went over packets: for each pair of stages
// that follow each other in a packet's path, the median and p99 time
// between them, in path order (by median time from the first stage), and
// the drops by reason, place and node.
func Summarize(packets []*Packet, drops []Drop) *experimentv1.PacketPath {
	type pair struct{ from, to string }
	gaps := map[pair][]float64{}
	since := map[pair][]float64{} // from the packet's first stage, to order pairs
	out := &experimentv1.PacketPath{Packets: int64(len(packets))}
	for _, p := range packets {
		for i, s := range p.Stages {
			switch s.Polled {
			case PolledSoftirq:
				out.PolledInSoftirq++
			case PolledBusy:
				out.PolledByBusyPoll++
			}
			if i == 0 {
				continue
			}
			k := pair{label(p.Stages[i-1]), label(s)}
			gaps[k] = append(gaps[k], float64(s.Time.Sub(p.Stages[i-1].Time)))
			since[k] = append(since[k], float64(s.Time.Sub(p.Stages[0].Time)))
		}
	}
	for k, g := range gaps {
		out.Stages = append(out.Stages, &experimentv1.StageTime{From: k.from, To: k.to, Packets: int64(len(g)),
			P50Ns: quantile(g, 0.5), P99Ns: quantile(g, 0.99)})
	}
	order := func(st *experimentv1.StageTime) float64 { return quantile(since[pair{st.GetFrom(), st.GetTo()}], 0.5) }
	sort.Slice(out.Stages, func(i, j int) bool {
		a, b := out.Stages[i], out.Stages[j]
		if oa, ob := order(a), order(b); oa != ob {
			return oa < ob
		}
		return a.GetFrom()+a.GetTo() < b.GetFrom()+b.GetTo()
	})
	counts := map[[3]string]int64{}
	for _, d := range drops {
		counts[[3]string{d.Reason, d.Location, d.Node}]++
	}
	for k, n := range counts {
		out.Drops = append(out.Drops, &experimentv1.DropCount{Reason: k[0], Location: k[1], Node: k[2], Count: n})
	}
	slices.SortFunc(out.Drops, func(a, b *experimentv1.DropCount) int { return int(b.GetCount() - a.GetCount()) })
	return out
}

// quantile is the nearest-rank quantile q of xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Record puts each packet in the trace as a span, a child of ctx's span
// (the step that sent it), from its first stage to its last, with one
// event per stage at the moment it happened; a dropped packet's span ends
// in error with the drop's reason and place.
func Record(ctx context.Context, tr trace.Tracer, packets []*Packet) {
	for _, p := range packets {
		first, last := p.Stages[0].Time, p.Stages[len(p.Stages)-1].Time
		attrs := []attribute.KeyValue{
			attribute.String("network.transport", p.Proto),
			attribute.String("source.address", p.Src.Addr().String()), attribute.Int("source.port", int(p.Src.Port())),
			attribute.String("destination.address", p.Dst.Addr().String()), attribute.Int("destination.port", int(p.Dst.Port())),
			attribute.Int("labctl.packet.ip_id", int(p.IPID)),
		}
		if p.Proto == "tcp" {
			attrs = append(attrs, attribute.Int64("labctl.packet.seq", int64(p.Seq)), attribute.Int64("labctl.packet.ack", int64(p.Ack)))
			if p.Offset >= 0 {
				attrs = append(attrs, attribute.Int64("labctl.packet.stream_offset", p.Offset))
			}
		} else {
			attrs = append(attrs, attribute.Int64("labctl.packet.udp_length", int64(p.Ack)))
		}
		_, span := tr.Start(ctx, "packet", trace.WithTimestamp(first), trace.WithAttributes(attrs...))
		for _, s := range p.Stages {
			ev := []attribute.KeyValue{attribute.String("labctl.node", s.Node), attribute.Int("labctl.cpu", s.CPU), attribute.Int("labctl.packet.len", s.Len)}
			if s.Ifindex != 0 {
				ev = append(ev, attribute.Int("labctl.ifindex", s.Ifindex))
			}
			if s.NAPIID != 0 {
				ev = append(ev, attribute.Int64("labctl.napi_id", int64(s.NAPIID)))
			}
			if s.PID != 0 {
				ev = append(ev, attribute.Int("labctl.pid", s.PID))
			}
			if s.Copied != 0 {
				ev = append(ev, attribute.Int("labctl.copied_bytes", s.Copied))
			}
			if s.Polled != "" {
				ev = append(ev, attribute.String("labctl.polled_by", s.Polled))
			}
			span.AddEvent(s.Name, trace.WithTimestamp(s.Time), trace.WithAttributes(ev...))
		}
		if d := p.Drop; d != nil {
			span.SetAttributes(attribute.String("drop.reason", d.Reason), attribute.String("drop.location", d.Location), attribute.String("labctl.node", d.Node))
			span.SetStatus(codes.Error, fmt.Sprintf("dropped: %s at %s", d.Reason, d.Location))
		}
		span.End(trace.WithTimestamp(last.Add(time.Nanosecond)))
	}
}
