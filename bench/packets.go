package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/internal/pktpath"
	"github.com/labctl/labctl/runs"
	"github.com/labctl/labctl/topologies"
)

// packets measures what tracing the kernel's packet path costs rr: p50 and
// p99 with --trace-packets off against 1% of packets (the landmarks a
// sampled run attaches, then every stage), and off against every packet,
// each pair alternating in one lab; then, in runs of their own with the
// kernel counting BPF run time, the time the tracer's programs take a
// packet.
//
// The two comparisons have shapes of their own, each with its own
// baseline: 1% runs for seconds, like any rr run; every packet runs 5,000
// round trips after 100 ms of warm-up, short enough to stay below a run's
// cap of 20,000 traced packets (a longer run would stop tracing at the cap
// and measure mostly untraced packets). Short runs start right after the
// run's setup (loading the programs takes a CPU for most of a second), and
// on this VM a run's latency depends on how busy the vCPUs just were, so a
// short traced run is only compared with a short untraced one.
func packets(ctx context.Context, b *bench) (string, error) {
	lab, down, err := b.lab(ctx, "quickstart", "bench-pkt")
	if err != nil {
		return "", err
	}
	defer down()
	// The target's comparison (1% against off, within 3% at p50) gets as
	// many pairs as the short runs: run-to-run drift on this VM is some
	// ±15%, and 20 pairs bound the median's change only to ±4%.
	target, long, short := max(4*b.reps, 20), max(2*b.reps, 10), max(4*b.reps, 20)
	seconds := 3
	if b.quick {
		target, long, short, seconds = b.reps, b.reps, b.reps, 1
	}
	type mode struct {
		name  string
		args  []string
		shape []string
	}
	longShape := []string{"-p", fmt.Sprintf("duration=%ds", seconds), "-p", "repeats=1"}
	shortShape := []string{"-p", "count=5000", "-p", "warmup=100ms", "-p", "repeats=1"}
	pairs := []struct {
		off, on mode
		reps    int
	}{
		{mode{"off", nil, longShape}, mode{"1% of packets (--trace-packets=0.01): the landmarks", []string{"--trace-packets=0.01"}, longShape}, target},
		{mode{"off", nil, longShape}, mode{"1% of packets, every stage (--trace-all-stages)", []string{"--trace-packets=0.01", "--trace-all-stages"}, longShape}, long},
		{mode{"off, 5,000 round trips", nil, shortShape}, mode{"every packet (--trace-packets), 5,000 round trips", []string{"--trace-packets"}, shortShape}, short},
	}
	type result struct {
		p50, p99, traced, cost figure
		lost                   float64
	}
	run := func(m mode, r *result) error {
		res, err := b.runJSON(ctx, append(append([]string{"rr", lab}, m.shape...), m.args...)...)
		if err != nil {
			return err
		}
		p50, ok50 := summaryMedian(res, "", "client.rtt_p50_ns")
		p99, ok99 := summaryMedian(res, "", "client.rtt_p99_ns")
		if !ok50 || !ok99 {
			return fmt.Errorf("rr %s: no RTT in the result", m.name)
		}
		r.p50, r.p99 = append(r.p50, p50/1e3), append(r.p99, p99/1e3)
		if pt, ok := res["packet_tracing"].(map[string]any); ok {
			r.traced = append(r.traced, jsonInt(pt["traced"]))
			r.lost += jsonInt(pt["lost"])
			if n := jsonInt(pt["bpf_packets"]); n > 0 {
				r.cost = append(r.cost, jsonInt(pt["bpf_ns"])/n)
			}
		}
		return nil
	}
	results := make([][2]*result, len(pairs))
	for i, pair := range pairs {
		results[i] = [2]*result{{}, {}}
		for rep := range pair.reps {
			for j, m := range []mode{pair.off, pair.on} {
				b.log("packets %s rep %d", m.name, rep+1)
				if err := run(m, results[i][j]); err != nil {
					return "", err
				}
			}
		}
	}
	// The kernel's own count of the programs' run time, in runs apart:
	// counting costs some 20-40 ns a program run, which the latency runs
	// above must not pay.
	restore, err := setSysctl("kernel/bpf_stats_enabled", "1")
	if err != nil {
		return "", err
	}
	costs := make([]*result, len(pairs))
	for i, pair := range pairs {
		costs[i] = &result{}
		for rep := range max(3, b.reps) {
			b.log("packets cost %s rep %d", pair.on.name, rep+1)
			if err := run(pair.on, costs[i]); err != nil {
				restore()
				return "", err
			}
		}
	}
	restore()

	oneRun, err := tracerWindows(ctx, b, lab)
	if err != nil {
		return "", err
	}

	var rows [][]string
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	for i, pair := range pairs {
		off, on := results[i][0], results[i][1]
		rows = append(rows,
			[]string{pair.off.name, off.p50.cell(usec), "–", off.p99.cell(usec), "–", "–", "–"},
			[]string{pair.on.name, on.p50.cell(usec), ciCell(ratio(on.p50, off.p50)), on.p99.cell(usec), ciCell(ratio(on.p99, off.p99)),
				on.traced.cell(count) + fmt.Sprintf(", %.0f events lost", on.lost), costs[i].cost.cell(func(v float64) string { return fmt.Sprintf("%.0f ns", v) })})
	}
	var s strings.Builder
	s.WriteString("## Packet tracing overhead on rr\n\n")
	fmt.Fprintf(&s, "rr (64 B) in one quickstart lab: --trace-packets off against 1%% of packets (%d s runs, %d of each in turn; a sampled run attaches the path's landmarks, the egress hook of the lab's devices, the copy to the reader and kfree_skb, unless --trace-all-stages asks for every stage, %d of each in turn), and off against every packet (5,000 round trips after 100 ms of warm-up, below the run's cap of 20,000 traced packets, %d of each in turn); each comparison has a baseline of its own shape. The changes are the median of the run-by-run ratios with its 95%% interval (order statistics of the ratios, no assumption on their distribution). The kernel time is the tracer's programs' run time over the transmissions the first device stage saw (one a packet in this lab: nothing is forwarded), counted by the kernel (kernel.bpf_stats_enabled) in %d runs of their own, since counting adds 20-40 ns to every program run. Targets: 1%% within 3%% of off at p50; every packet is a measurement, expected 10-30%%.\n\n", seconds, target, long, short, max(3, b.reps))
	s.WriteString(table([]string{"packet tracing", "p50 RTT", "p50 vs off", "p99 RTT", "p99 vs off", "packets traced", "kernel time a packet"}, rows))
	s.WriteString("\n")
	s.WriteString(oneRun)
	return s.String(), nil
}

// tracerWindows measures the tracer in one run (tracerInOneRun), loaded
// as labctl run rr loads it in this lab: at 1% (--trace-packets=0.01, the
// landmarks), the target's case, for long enough to bound its median
// within about ±0.5%; at 1% with --trace-all-stages; and every packet
// (--trace-packets), with no cap: a run's (runs.PacketCap) would stop
// sampling within a second, and the rest would be measured untraced.
func tracerWindows(ctx context.Context, b *bench, lab string) (string, error) {
	ns := map[string]string{topologies.Namespace(lab, "n1"): "n1", topologies.Namespace(lab, "n2"): "n2"}
	var rows [][]string
	for _, m := range []struct {
		name    string
		rate    float64
		all     bool
		seconds int
	}{
		{"1% of packets (--trace-packets=0.01): the landmarks", 0.01, false, 240},
		{"1% of packets, every stage (--trace-all-stages)", 0.01, true, 60},
		{"every packet (--trace-packets)", 1, false, 60},
	} {
		b.log("packets in one run: %s", m.name)
		seconds := m.seconds
		if b.quick {
			seconds = 10
		}
		stages, netfilter := runs.PacketStages(rr.Experiment{}, m.rate, m.all, false) // quickstart has no firewall rules
		p50, p99, st, err := tracerInOneRun(ctx, pktpath.Options{Namespaces: ns, Rate: m.rate, Stages: stages, Netfilter: netfilter}, lab, seconds)
		if err != nil {
			return "", fmt.Errorf("packets in one run, %s: %w", m.name, err)
		}
		rows = append(rows, []string{m.name, fmt.Sprint(seconds), fmt.Sprint(len(p50)), ciCell(p50), ciCell(p99), fmt.Sprintf("%d, %d events lost", st.Traced, st.Lost)})
	}
	var s strings.Builder
	fmt.Fprintf(&s, "The same costs within one run, apart from the drift between runs: sockperf ping-pong (TCP, 64 B, every round trip logged) between the lab's nodes while the tracer, started as rr starts it, is attached for %v and detached for %v in turn (detached, its reader keeps polling; what it traced is taken as each attached window opens, as a run takes its steps' packets); the first %v of each window is left out. Each attached window's p50 and p99 are compared with the mean of the detached windows either side; the change is the median over the windows with its 95%% interval.\n\n",
		window, window, windowSettle)
	s.WriteString(table([]string{"packet tracing, in one run", "seconds", "attached windows", "p50 vs detached", "p99 vs detached", "packets traced"}, rows))
	s.WriteString("\n")
	return s.String(), nil
}

// jsonInt reads an integer from protojson, which writes 64-bit integers
// as strings.
func jsonInt(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		var f float64
		fmt.Sscan(x, &f)
		return f
	}
	return 0
}

// ciCell writes a ratio's median change with its 95% interval.
func ciCell(r figure) string {
	lo, hi := r.medianCI()
	return fmt.Sprintf("%s [%s .. %s]", pct(r.median()), pct(lo), pct(hi))
}

// setSysctl writes a /proc/sys value and returns what puts the old one
// back.
func setSysctl(key, value string) (func(), error) {
	path := "/proc/sys/" + key
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return nil, err
	}
	return func() { _ = os.WriteFile(path, old, 0o644) }, nil
}

// medianCI is the distribution-free 95% interval of the median: the order
// statistics k and n+1-k, with k the largest rank whose binomial(n, ½)
// tail stays within 2.5%.
func (f figure) medianCI() (lo, hi float64) {
	s := f.sorted()
	n := len(s)
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	k, tail := 0, 0.0
	for j := 0; j < n; j++ {
		// P(X <= j) for X ~ binomial(n, 1/2)
		tail += math.Exp(lgammaBinom(n, j) - float64(n)*math.Ln2)
		if tail > 0.025 {
			break
		}
		k = j + 1
	}
	if k == 0 {
		return s[0], s[n-1]
	}
	return s[k-1], s[n-k]
}

func lgammaBinom(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}
