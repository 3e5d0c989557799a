package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/labctl/labctl/topologies"
)

// lab brings up an example lab under a bench name and returns its name and
// a function that brings it down.
func (b *bench) lab(ctx context.Context, example, name string) (string, func(), error) {
	src, err := os.ReadFile(filepath.Join("topologies", "examples", example+".yaml"))
	if err != nil {
		return "", nil, err
	}
	text := regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllString(string(src), "name: "+name)
	dir, err := os.MkdirTemp("", "bench-lab")
	if err != nil {
		return "", nil, err
	}
	file := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		return "", nil, err
	}
	if _, _, err := b.timed(ctx, "up", file, "-q"); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return name, func() { b.timed(context.Background(), "down", name, "-q"); os.RemoveAll(dir) }, nil
}

// runJSON runs an experiment and returns the stored result as JSON.
func (b *bench) runJSON(ctx context.Context, args ...string) (map[string]any, error) {
	cmd := exec.CommandContext(ctx, b.labctl, append(append([]string{"run"}, args...), "-q", "-o", "json")...)
	cmd.Env = b.env
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("labctl run %v: %v: %s", args, err, ee.Stderr)
		}
		return nil, err
	}
	var r map[string]any
	return r, json.Unmarshal(out, &r)
}

// median of a role-qualified metric in the first summary row whose variant
// contains variant.
func summaryMedian(r map[string]any, variant, metric string) (float64, bool) {
	rows, _ := r["summary"].([]any)
	for _, row := range rows {
		m, _ := row.(map[string]any)
		if name, _ := m["variant"].(string); !strings.Contains(name, variant) {
			continue
		}
		metrics, _ := m["metrics"].(map[string]any)
		if s, ok := metrics[metric].(map[string]any); ok {
			v, ok := s["median"].(float64)
			return v, ok
		}
	}
	return 0, false
}

// sockperf runs ping-pong from one node to a sockperf server in another
// and returns its p50 and p99 in µs.
func sockperf(ctx context.Context, client, server, addr string, size int, seconds int, extra ...string) (p50, p99 float64, err error) {
	return sockperfPinned(ctx, client, server, addr, size, seconds, -1, -1, extra...)
}

// sockperfPinned is sockperf with each side pinned to a CPU (-1: not).
func sockperfPinned(ctx context.Context, client, server, addr string, size int, seconds, clientCPU, serverCPU int, extra ...string) (p50, p99 float64, err error) {
	port := "11111"
	pin := func(cpu int) []string {
		if cpu < 0 {
			return nil
		}
		return []string{"taskset", "-c", strconv.Itoa(cpu)}
	}
	stop, err := sockperfServer(ctx, server, pin(serverCPU), addr, port, extra...)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	args := append(append([]string{"netns", "exec", client}, pin(clientCPU)...), append([]string{"sockperf", "ping-pong", "--tcp", "--full-rtt", "-m", strconv.Itoa(size),
		"-i", addr, "-p", port, "-t", strconv.Itoa(seconds)}, extra...)...)
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("sockperf: %v\n%s", err, out)
	}
	pct := func(p string) (float64, error) {
		m := regexp.MustCompile(`percentile ` + regexp.QuoteMeta(p) + ` =\s+([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("sockperf printed no percentile %s:\n%s", p, out)
		}
		return strconv.ParseFloat(string(m[1]), 64)
	}
	if p50, err = pct("50.000"); err != nil {
		return 0, 0, err
	}
	p99, err = pct("99.000")
	return p50, p99, err
}

// sockperfServer starts a TCP sockperf server in namespace ns (prefixed
// by pin, a taskset command or nothing) and gives it 300 ms to listen;
// stop kills it.
func sockperfServer(ctx context.Context, ns string, pin []string, addr, port string, extra ...string) (stop func(), err error) {
	args := append(append([]string{"netns", "exec", ns}, pin...), append([]string{"sockperf", "server", "--tcp", "-i", addr, "-p", port}, extra...)...)
	srv := exec.CommandContext(ctx, "ip", args...)
	if err := srv.Start(); err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond)
	return func() { _ = srv.Process.Kill(); _ = srv.Wait() }, nil
}

// latency compares rr with sockperf ping-pong on the same veth.
func latency(ctx context.Context, b *bench) (string, error) {
	lab, down, err := b.lab(ctx, "quickstart", "bench-rr")
	if err != nil {
		return "", err
	}
	defer down()
	if _, err := exec.LookPath("sockperf"); err != nil {
		return "", fmt.Errorf("sockperf is not installed (scripts/deps.sh --bench)")
	}
	seconds := 5
	if b.quick {
		seconds = 2
	}
	client, server := topologies.Namespace(lab, "n1"), topologies.Namespace(lab, "n2")
	var rows, ratios [][]string
	for _, size := range []int{64, 1024} {
		var rr50, rr99, sp50, sp99 figure
		for rep := range b.reps {
			b.log("latency %d B rep %d", size, rep+1)
			r, err := b.runJSON(ctx, "rr", lab, "-p", fmt.Sprintf("size=%d", size), "-p", fmt.Sprintf("duration=%ds", seconds), "-p", "repeats=1")
			if err != nil {
				return "", err
			}
			p50, _ := summaryMedian(r, "", "client.rtt_p50_ns")
			p99, _ := summaryMedian(r, "", "client.rtt_p99_ns")
			rr50, rr99 = append(rr50, p50/1e3), append(rr99, p99/1e3)
			s50, s99, err := sockperf(ctx, client, server, "198.18.0.2", size, seconds)
			if err != nil {
				return "", err
			}
			sp50, sp99 = append(sp50, s50), append(sp99, s99)
		}
		rows = append(rows,
			[]string{strconv.Itoa(size), "labctl rr", rr50.cell(usec), rr99.cell(usec)},
			[]string{strconv.Itoa(size), "sockperf ping-pong --tcp --full-rtt", sp50.cell(usec), sp99.cell(usec)})
		ratios = append(ratios, []string{strconv.Itoa(size), ratio(rr50, sp50).cell(pct), ratio(rr99, sp99).cell(pct)})
	}
	var s strings.Builder
	s.WriteString("## Latency fidelity: rr vs sockperf\n\n")
	fmt.Fprintf(&s, "Round-trip time of one TCP connection over the quickstart veth (n1 → n2, 198.18.0.2), %d s per measurement, alternating labctl `rr` and `sockperf ping-pong --tcp --full-rtt` (whose percentiles are full round trips with that flag). Target: rr within 5%% of sockperf at p50 and 15%% at p99.\n\n", seconds)
	s.WriteString(table([]string{"size (B)", "tool", "p50 RTT", "p99 RTT"}, rows))
	s.WriteString("\nrr relative to sockperf, pair by pair:\n\n")
	s.WriteString(table([]string{"size (B)", "p50", "p99"}, ratios))
	s.WriteString("\n")
	io, err := ioModelsVsSockperf(ctx, b, lab, client, server, seconds)
	if err != nil {
		return "", err
	}
	s.WriteString(io)
	bp, err := busyPollVsSockperf(ctx, b, seconds)
	if err != nil {
		fmt.Fprintf(&s, "busy-poll vs sockperf --lls: not measured: %v\n\n", err)
	} else {
		s.WriteString(bp)
	}
	return s.String(), nil
}

// ioModelsVsSockperf calibrates io-models' blocking server, whose waits go
// through the same bounded raw calls as rr's, against sockperf on the same
// veth, alternating.
func ioModelsVsSockperf(ctx context.Context, b *bench, lab, client, server string, seconds int) (string, error) {
	var io50, io99, sp50, sp99 figure
	for rep := range b.reps {
		b.log("io-models blocking vs sockperf rep %d", rep+1)
		r, err := b.runJSON(ctx, "io-models", lab, "-p", "models=blocking", "-p", "protocols=tcp", "-p", "size=64",
			"-p", fmt.Sprintf("duration=%ds", seconds), "-p", "repeats=1", "-p", "max_repeats=1")
		if err != nil {
			return "", err
		}
		p50, ok50 := summaryMedian(r, "blocking/tcp", "client.rtt_p50_ns")
		p99, ok99 := summaryMedian(r, "blocking/tcp", "client.rtt_p99_ns")
		if !ok50 || !ok99 {
			return "", fmt.Errorf("io-models: no blocking/tcp RTT in the result")
		}
		io50, io99 = append(io50, p50/1e3), append(io99, p99/1e3)
		s50, s99, err := sockperf(ctx, client, server, "198.18.0.2", 64, seconds)
		if err != nil {
			return "", err
		}
		sp50, sp99 = append(sp50, s50), append(sp99, s99)
	}
	var s strings.Builder
	s.WriteString("### io-models' blocking server vs sockperf\n\n")
	fmt.Fprintf(&s, "64-byte TCP round trips over the same veth, %d s each, alternating `labctl run io-models -p models=blocking -p protocols=tcp` (a blocking recv/send server, a blocking client) and `sockperf ping-pong --tcp --full-rtt`. Target: p50 within 5%%, p99 within 15%%.\n\n", seconds)
	s.WriteString(table([]string{"tool", "p50 RTT", "p99 RTT", "p50 vs sockperf", "p99 vs sockperf"}, [][]string{
		{"labctl io-models blocking/tcp", io50.cell(usec), io99.cell(usec), ratio(io50, sp50).cell(pct), ratio(io99, sp99).cell(pct)},
		{"sockperf ping-pong --tcp --full-rtt", sp50.cell(usec), sp99.cell(usec), "–", "–"},
	}))
	s.WriteString("\n")
	return s.String(), nil
}

// busyPollVsSockperf compares busy-poll's so_busy_poll variant with
// sockperf --lls (which sets SO_BUSY_POLL) on the veth that has NAPI (GRO
// on, TSO off: busy-poll.yaml's napi0), both sides pinned as busy-poll pins
// them (client CPU 0, server CPU 1).
func busyPollVsSockperf(ctx context.Context, b *bench, seconds int) (string, error) {
	lab, down, err := b.lab(ctx, "busy-poll", "bench-bp")
	if err != nil {
		return "", err
	}
	defer down()
	client, server := topologies.Namespace(lab, "client"), topologies.Namespace(lab, "server")
	var ours, theirs figure
	var oursBase, theirsBase figure
	for rep := range b.reps {
		b.log("busy-poll vs sockperf --lls rep %d", rep+1)
		r, err := b.runJSON(ctx, "busy-poll", lab, "-p", "devices=veth-gro", "-p", "mechanisms=blocking,so_busy_poll", "-p", "timeouts=50us",
			"-p", "repeats=1", "-p", fmt.Sprintf("duration=%ds", seconds), "-p", "warmup=500ms")
		if err != nil {
			return "", err
		}
		bp, ok1 := summaryMedian(r, "so_busy_poll", "client.rtt_p50_ns")
		base, ok2 := summaryMedian(r, "blocking", "client.rtt_p50_ns")
		if !ok1 || !ok2 {
			return "", fmt.Errorf("busy-poll result lacks the so_busy_poll or blocking row")
		}
		ours, oursBase = append(ours, bp/1e3), append(oursBase, base/1e3)
		p50, _, err := sockperfPinned(ctx, client, server, "198.18.0.2", 64, seconds, 0, 1, "--lls", "50")
		if err != nil {
			return "", err
		}
		p50b, _, err := sockperfPinned(ctx, client, server, "198.18.0.2", 64, seconds, 0, 1)
		if err != nil {
			return "", err
		}
		theirs, theirsBase = append(theirs, p50), append(theirsBase, p50b)
	}
	var s strings.Builder
	s.WriteString("### busy-poll vs sockperf --lls\n\n")
	fmt.Fprintf(&s, "64-byte TCP round trips on busy-poll.yaml's napi0 (veth with GRO on and TSO off, so it has NAPI), %d s each, both tools pinned client CPU 0 / server CPU 1; SO_BUSY_POLL 50 µs on both sides (`--lls 50`).\n\n", seconds)
	s.WriteString(table([]string{"", "labctl busy-poll", "sockperf", "labctl/sockperf"}, [][]string{
		{"blocking (no busy poll)", oursBase.cell(usec), theirsBase.cell(usec), ratio(oursBase, theirsBase).cell(pct)},
		{"SO_BUSY_POLL 50 µs", ours.cell(usec), theirs.cell(usec), ratio(ours, theirs).cell(pct)},
	}))
	s.WriteString("\n")
	return s.String(), nil
}
