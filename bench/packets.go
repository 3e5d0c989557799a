package main

import (
	"context"
	"fmt"
	"strings"
)

// packets measures what tracing the kernel's packet path costs rr: p50 and
// p99 with --trace-packets off, at 1% of packets, and at every packet,
// alternating in one lab.
func packets(ctx context.Context, b *bench) (string, error) {
	lab, down, err := b.lab(ctx, "quickstart", "bench-pkt")
	if err != nil {
		return "", err
	}
	defer down()
	seconds := 5
	if b.quick {
		seconds = 2
	}
	modes := []struct {
		name string
		args []string
	}{
		{"off", nil},
		{"1% of packets (--trace-packets=0.01)", []string{"--trace-packets=0.01"}},
		{"every packet (--trace-packets), up to the cap", []string{"--trace-packets"}},
	}
	p50 := make([]figure, len(modes))
	p99 := make([]figure, len(modes))
	traced := make([]figure, len(modes))
	for rep := range b.reps {
		for i, m := range modes {
			b.log("packets %s rep %d", m.name, rep+1)
			args := append([]string{"-p", fmt.Sprintf("duration=%ds", seconds), "-p", "repeats=1"}, m.args...)
			r, err := b.runJSON(ctx, append([]string{"rr", lab}, args...)...)
			if err != nil {
				return "", err
			}
			v, _ := summaryMedian(r, "", "client.rtt_p50_ns")
			p50[i] = append(p50[i], v/1e3)
			v, _ = summaryMedian(r, "", "client.rtt_p99_ns")
			p99[i] = append(p99[i], v/1e3)
			if pt, ok := r["packet_tracing"].(map[string]any); ok {
				n, _ := pt["traced"].(string) // int64 is a string in JSON
				var count float64
				fmt.Sscan(n, &count)
				traced[i] = append(traced[i], count)
			}
		}
	}
	var rows [][]string
	for i, m := range modes {
		o50, o99 := "–", "–"
		if i > 0 {
			o50, o99 = ratio(p50[i], p50[0]).cell(pct), ratio(p99[i], p99[0]).cell(pct)
		}
		n := "–"
		if len(traced[i]) > 0 {
			n = traced[i].cell(func(v float64) string { return fmt.Sprintf("%.0f", v) })
		}
		rows = append(rows, []string{m.name, p50[i].cell(usec), o50, p99[i].cell(usec), o99, n})
	}
	var s strings.Builder
	s.WriteString("## Packet tracing overhead on rr\n\n")
	fmt.Fprintf(&s, "rr (64 B, %d s) in one quickstart lab with labctl run --trace-packets off, sampling 1%% of packets, and tracing every packet (stopped at the cap of 20,000), run in turn. Every stage of every packet of the lab pays a header parse and a map lookup; sampled ones also write an event. Targets: 1%% within 3%% of off at p50; every packet is a measurement, expected 10-30%%.\n\n", seconds)
	s.WriteString(table([]string{"packet tracing", "p50 RTT", "vs off", "p99 RTT", "vs off", "packets traced"}, rows))
	s.WriteString("\n")
	return s.String(), nil
}
