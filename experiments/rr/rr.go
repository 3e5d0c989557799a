// Package rr is the TCP request/response experiment: one connection, one
// message of a fixed size each way at a time, blocking syscalls on locked OS
// threads. It is labctl's calibration target (compare it with sockperf
// ping-pong --tcp --full-rtt on the same link) and the base every receive-path
// experiment varies.
package rr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is rr; the zero value is ready to use.
type Experiment struct{}

// Every request starts with a phase byte, so the server can tell warm-up
// from measured messages and measure its own CPU over the same messages as
// the client, without a second connection.
const (
	phaseWarmup   = 0
	phaseMeasured = 1
)

// Spec describes rr.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "rr",
		Summary: "TCP request/response latency over one connection (the calibration target)",
		Description: `The client sends a request of size bytes and waits for the server's response of
the same size, one at a time, over one TCP connection with TCP_NODELAY, using
blocking write/read on a locked OS thread, entered as raw system calls so that
Go's scheduler stays out of the loop (sock.Hot). Each round trip is timed with the
monotonic clock into a histogram (0.4% resolution, exact below 256 ns).

Reported per step: RTT percentiles p50 to p99.99, messages per second, and for
both roles the CPU time and voluntary/involuntary context switches per message
of the measuring thread (getrusage RUSAGE_THREAD over the measured messages
only: each request carries a phase byte, so warm-up is excluded on both sides).
Evidence: TCP retransmissions during the step, and the NAPI id the server's
socket saw (0 means packets arrived without a NAPI context, as on loopback and
veth without GRO).

Compare with sockperf ping-pong --tcp --full-rtt -m SIZE on the same link.`,
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.rtt_p50_ns", "client.rtt_p99_ns", "client.rtt_p999_ns", "client.msgs_per_s", "client.cpu_ns_per_msg", "server.cpu_ns_per_msg", "client.vcsw_per_msg", "server.vcsw_per_msg"},
		Params:         experiments.Declare(defaults),
	}
}

// params are rr's parameters.
type params struct {
	Size  experiments.Size `param:"size" min:"1" max:"1MiB" help:"bytes per request and per response"`
	Count int              `param:"count" min:"0" max:"100000000" help:"stop after this many measured round trips (0: run for duration)"`
	experiments.Timing
	experiments.Repeats
	experiments.Pinning
}

var defaults = params{
	Size:    64,
	Timing:  experiments.Timing{Duration: 5 * time.Second, Warmup: 500 * time.Millisecond},
	Repeats: experiments.Repeats{Repeats: 5},
	Pinning: experiments.Unpinned,
}

// Steps runs the server on its node and the client on its own, one step
// per repeat.
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	place, err := lab.ServerClient()
	if err != nil {
		return nil, err
	}
	steps := make([]*experimentv1.Step, experiments.As[params](p).Repeats.Repeats)
	for i := range steps {
		steps[i] = &experimentv1.Step{Variant: "tcp", Repeat: int32(i), Params: p.Map(), Roles: place.Roles()}
	}
	return steps, nil
}

// Run runs the server or the client.
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	switch env.Role {
	case experiments.Server:
		return Serve(ctx, env, int(p.Size), p.ServerCPU, nil)
	case experiments.Client:
		peer, err := env.Peer(experiments.Server)
		if err != nil {
			return nil, err
		}
		opts := ClientOptions{
			Size:     int(p.Size),
			Duration: p.Duration,
			Count:    p.Count,
			Warmup:   p.Warmup,
			CPU:      p.ClientCPU,
		}
		return Client(ctx, env, peer, opts, nil)
	}
	return nil, fmt.Errorf("rr has no role %q", env.Role)
}

// SocketHook lets an experiment built on rr set options on the connected
// socket of a role before the first message (busy polling, buffers).
type SocketHook func(fd sock.FD) error

// Serve accepts one connection on the role's address and echoes requests of
// size bytes until the client closes it.
func Serve(ctx context.Context, env *experiments.Env, size, cpu int, hook SocketHook) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	fd, done, err := role.AcceptOne(ctx, env, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := sock.SetNoDelay(fd, true); err != nil {
		return nil, err
	}
	if hook != nil {
		if err := hook(fd); err != nil {
			return nil, err
		}
	}
	hot, err := sock.NewHot(fd)
	if err != nil {
		return nil, err
	}
	before, _ := kstat.ReadNetStat()
	buf := make([]byte, size)
	var start measure.Usage
	var measured int64
	for {
		if _, err := hot.ReadFull(buf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, role.CtxErr(ctx, fmt.Errorf("rr server: recv: %w", err))
		}
		if buf[0] == phaseMeasured {
			if measured == 0 {
				start, _ = measure.ThreadUsage()
			}
			measured++
		}
		if _, err := hot.WriteFull(buf); err != nil {
			return nil, role.CtxErr(ctx, fmt.Errorf("rr server: send: %w", err))
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the EOF came from our own shutdown
	}
	end, _ := measure.ThreadUsage()
	r := env.Report()
	r.Metrics["messages"] = float64(measured)
	if measured > 0 {
		// The first measured message's recv started before the snapshot; its
		// cost is one message in thousands.
		report.AddUsage(r, end.Sub(start), measured, "msg")
	}
	napi, _ := sock.IncomingNAPIID(fd)
	report.AddEvidence(r, "napi_id", float64(napi), "", "getsockopt SO_INCOMING_NAPI_ID on the server's socket",
		napiDetail(napi))
	addRetrans(r, before)
	return finish(ctx, r, env.Node, cpu)
}

// ClientOptions are the client's knobs.
type ClientOptions struct {
	Size     int
	Duration time.Duration
	Count    int // measured round trips; 0 runs for Duration
	Warmup   time.Duration
	CPU      int
}

// Client connects to peer and times round trips.
func Client(ctx context.Context, env *experiments.Env, peer netip.AddrPort, o ClientOptions, hook SocketHook) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(o.CPU)
	if err != nil {
		return nil, err
	}
	defer unlock()
	env.Ready(0)
	fd, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return nil, fmt.Errorf("rr client: %w", err)
	}
	defer fd.Close()
	stop := role.ShutdownOnDone(ctx, fd)
	defer stop()
	if err := sock.SetNoDelay(fd, true); err != nil {
		return nil, err
	}
	if hook != nil {
		if err := hook(fd); err != nil {
			return nil, err
		}
	}
	hot, err := sock.NewHot(fd)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, o.Size)
	roundTrip := func() error {
		if _, err := hot.WriteFull(buf); err != nil {
			return fmt.Errorf("rr client: send: %w", err)
		}
		if _, err := hot.ReadFull(buf); err != nil {
			return fmt.Errorf("rr client: recv: %w", err)
		}
		return nil
	}
	env.Progressf("warming up for %v", o.Warmup)
	_, warm := role.Phase(ctx, "warm-up")
	buf[0] = phaseWarmup
	for t0 := time.Now(); time.Since(t0) < o.Warmup; {
		if err := roundTrip(); err != nil {
			warm.End()
			return nil, role.CtxErr(ctx, err)
		}
	}
	warm.End()
	env.Progressf("measuring %s", describe(o))
	_, span := role.Phase(ctx, "measure")
	defer span.End()
	before, _ := kstat.ReadNetStat()
	var h measure.Histogram
	slow := role.NewSlowest(5)
	start, _ := measure.ThreadUsage()
	begin := time.Now()
	deadline := begin.Add(o.Duration)
	var n int
	for {
		buf[0] = phaseMeasured
		t0 := time.Now()
		if err := roundTrip(); err != nil {
			return nil, role.CtxErr(ctx, err)
		}
		t1 := time.Now()
		h.Record(t1.Sub(t0))
		slow.Add(t0.Sub(begin), t1.Sub(t0))
		n++
		if (o.Count > 0 && n >= o.Count) || (o.Count == 0 && !t1.Before(deadline)) {
			break
		}
	}
	elapsed := time.Since(begin)
	end, _ := measure.ThreadUsage()
	slow.Events(span, "slow round trip", begin)
	r := env.Report()
	report.AddLatency(r, "rtt", &h)
	r.Metrics["messages"] = float64(n)
	r.Metrics["msgs_per_s"] = float64(n) / elapsed.Seconds()
	report.AddUsage(r, end.Sub(start), int64(n), "msg")
	addRetrans(r, before)
	return finish(ctx, r, env.Node, o.CPU)
}

func describe(o ClientOptions) string {
	if o.Count > 0 {
		return fmt.Sprintf("%d round trips of %d bytes", o.Count, o.Size)
	}
	return fmt.Sprintf("%d-byte round trips for %v", o.Size, o.Duration)
}

func napiDetail(id uint32) string {
	if id == 0 {
		return "0: packets reached the socket without a NAPI context (loopback, veth without GRO or XDP)"
	}
	return "packets reached the socket through NAPI instance " + fmt.Sprint(id)
}

func addRetrans(r *experimentv1.RoleReport, before kstat.NetStat) {
	after, err := kstat.ReadNetStat()
	if err != nil {
		return
	}
	d := after.Sub(before)
	report.AddEvidence(r, "tcp_retrans_segs", float64(d["Tcp.RetransSegs"]), "segments",
		"/proc/net/snmp Tcp.RetransSegs delta in the node", "retransmissions during the measurement; non-zero means loss on the path")
}

// finish adds the node's environment to a report.
func finish(ctx context.Context, r *experimentv1.RoleReport, node string, cpu int) (*experimentv1.RoleReport, error) {
	r.Environment = report.Node(ctx, node, nil)
	r.Environment.PinnedCpu = int32(cpu)
	return r, nil
}

// Judge summarises the repeats; rr answers no claim, it measures.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	v := &experimentv1.Verdict{Outcome: experimentv1.Outcome_OUTCOME_MEASURED}
	if row := report.Row(rows, "tcp"); row != nil {
		row.Engagement = experimentv1.Engagement_ENGAGEMENT_BASELINE
		p50, p99 := row.GetMetrics()["client.rtt_p50_ns"], row.GetMetrics()["client.rtt_p99_ns"]
		rate := row.GetMetrics()["client.msgs_per_s"]
		v.Explanation = fmt.Sprintf("%s-byte TCP round trips: p50 %s (repeats %s–%s), p99 %s, %.0f msg/s over %d repeats",
			experiments.As[params](p).Size, us(p50.GetMedian()), us(p50.GetMin()), us(p50.GetMax()), us(p99.GetMedian()), rate.GetMedian(), p50.GetN())
	}
	return rows, v
}

func us(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1e3) }

// Figures: the round trips, and the context switches that show a sleep
// per message.
func (Experiment) Figures() []experiments.Figure {
	return append(experiments.RoundTrips(), experiments.Figure{Kind: experiments.Bars, Title: "Voluntary context switches per message",
		Metrics: []string{"client.vcsw_per_msg", "server.vcsw_per_msg"}, YLabel: "switches per message"})
}

// JudgePackets splits the round trip: the time the kernel's stages take,
// from each packet's first traced stage to the copy to the reader along
// the way most packets go, in both directions, against the RTT; the rest
// is the applications, system call entry and exit, and what no stage
// sees.
func (Experiment) JudgePackets(rows []*experimentv1.SummaryRow, v *experimentv1.Verdict) {
	row := report.Row(rows, "tcp")
	pp := row.GetPacketPath()
	if pp.GetPackets() == 0 {
		return
	}
	// Each stage's usual next stage: a few packets take another way (a
	// reader that was not asleep is not woken), and counting those too
	// would count the same stretch twice.
	next := map[string]*experimentv1.StageTime{}
	for _, st := range pp.GetStages() {
		if afterDelivery(st.GetFrom(), st.GetTo()) {
			continue
		}
		if n := next[st.GetFrom()]; n == nil || st.GetPackets() > n.GetPackets() {
			next[st.GetFrom()] = st
		}
	}
	var kernel float64
	for _, st := range next {
		kernel += st.GetP50Ns()
	}
	rtt := row.GetMetrics()["client.rtt_p50_ns"].GetMedian()
	v.Explanation += fmt.Sprintf("; packet path (%d traced packets): the kernel's stages up to the copy to the reader add up to %s per round trip (the medians between stages, both directions)",
		pp.GetPackets(), us(kernel))
	if rtt > kernel {
		v.Explanation += fmt.Sprintf(", the other %s of the p50 (%.0f%%) are the applications and what no stage sees", us(rtt-kernel), 100*(rtt-kernel)/rtt)
	}
}

// PacketStages: the landmarks are enough to split the round trip.
func (Experiment) PacketStages() []string { return []string{"tc egress", "copy to user"} }

// afterDelivery says whether a transition between stages comes after the
// data reached the application, or ends a packet that carried none.
func afterDelivery(from, to string) bool {
	name := func(s string) string { n, _, _ := strings.Cut(s, "@"); return n }
	switch name(to) {
	case "consumed", "drop", "capture copy":
		return true
	}
	return name(from) == "copy to user"
}
