package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/labctl/labctl/topologies"
)

// iperf3 runs one TCP stream from client to a one-off server in another
// node and returns the receiver's rate in bit/s.
func iperf3(ctx context.Context, client, server, addr string, seconds int, zerocopy bool) (float64, error) {
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", server, "iperf3", "-s", "-1", "-B", addr, "-p", "5201")
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	args := []string{"netns", "exec", client, "iperf3", "-c", addr, "-p", "5201", "-t", fmt.Sprint(seconds), "-J"}
	if zerocopy {
		args = append(args, "-Z")
	}
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil {
		return 0, fmt.Errorf("iperf3: %v\n%s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %v", err)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// throughput compares the zerocopy experiment's read+write and sendfile
// streams with iperf3 and iperf3 -Z on the same veth.
func throughput(ctx context.Context, b *bench) (string, error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return "", fmt.Errorf("iperf3 is not installed (scripts/deps.sh --bench)")
	}
	lab, down, err := b.lab(ctx, "quickstart", "bench-tp")
	if err != nil {
		return "", err
	}
	defer down()
	seconds := 5
	if b.quick {
		seconds = 2
	}
	client, server := topologies.Namespace(lab, "n1"), topologies.Namespace(lab, "n2")
	var rows, ratios [][]string
	for _, c := range []struct {
		path     string
		zerocopy bool
		peer     string
	}{{"read_write", false, "iperf3"}, {"sendfile", true, "iperf3 -Z"}} {
		var ours, theirs figure
		for rep := range b.reps {
			b.log("throughput %s rep %d", c.path, rep+1)
			// iperf3 writes 128 KiB at a time by default; so does the experiment here.
			r, err := b.runJSON(ctx, "zerocopy", lab, "-p", "send="+c.path, "-p", "recv=read", "-p", "sizes=128KiB", "-p", "link=lab",
				"-p", fmt.Sprintf("duration=%ds", seconds), "-p", "repeats=1")
			if err != nil {
				return "", err
			}
			bps, ok := summaryMedian(r, "", "client.throughput_bps")
			if !ok {
				return "", fmt.Errorf("zerocopy %s: no throughput in the result", c.path)
			}
			ours = append(ours, bps)
			v, err := iperf3(ctx, client, server, "198.18.0.2", seconds, c.zerocopy)
			if err != nil {
				return "", err
			}
			theirs = append(theirs, v)
		}
		rows = append(rows, []string{"labctl zerocopy send=" + c.path, ours.cell(gbps)}, []string{c.peer, theirs.cell(gbps)})
		ratios = append(ratios, []string{c.path + " vs " + c.peer, ratio(ours, theirs).cell(pct)})
	}
	var s strings.Builder
	s.WriteString("## Throughput fidelity: zerocopy streams vs iperf3\n\n")
	fmt.Fprintf(&s, "One TCP stream over the quickstart veth (n1 → n2), %d s per measurement, 128 KiB writes, alternating. Target: within 5%% of iperf3.\n\n", seconds)
	s.WriteString(table([]string{"tool", "throughput"}, rows))
	s.WriteString("\nlabctl relative to the peer, pair by pair:\n\n")
	s.WriteString(table([]string{"stream", "throughput"}, ratios))
	s.WriteString("\n")
	return s.String(), nil
}
