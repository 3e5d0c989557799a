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

// median of a role-qualified metric in a result's summary row.
func summaryMedian(r map[string]any, variant, metric string) (float64, bool) {
	rows, _ := r["summary"].([]any)
	for _, row := range rows {
		m, _ := row.(map[string]any)
		if variant != "" && m["variant"] != variant {
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
	port := "11111"
	srv := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", server, "sockperf", "server", "--tcp", "-i", addr, "-p", port}, extra...)...)
	if err := srv.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	args := append([]string{"netns", "exec", client, "sockperf", "ping-pong", "--tcp", "--full-rtt", "-m", strconv.Itoa(size),
		"-i", addr, "-p", port, "-t", strconv.Itoa(seconds)}, extra...)
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
	client, server := "labctl-"+lab+"-n1", "labctl-"+lab+"-n2"
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
	return s.String(), nil
}
