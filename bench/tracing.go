package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// withEnv returns a copy of b whose labctl runs with more environment.
func (b *bench) withEnv(env ...string) *bench {
	c := *b
	c.env = append(append([]string(nil), b.env...), env...)
	return &c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tracing measures rr's p50 with tracing off, exporting to a real Jaeger,
// and with only the local copy (the collector unreachable), alternating.
// Each mode has a lab of its own, since agents take their tracing from the
// environment they are started in.
func tracing(ctx context.Context, b *bench) (string, error) {
	jaegerBin, _ := filepath.Abs("bin/jaeger")
	if _, err := os.Stat(jaegerBin); err != nil {
		return "", fmt.Errorf("no Jaeger at %s (scripts/jaeger.sh build)", jaegerBin)
	}
	ports := map[string]int{}
	for _, name := range []string{"GRPC", "HTTP", "QUERY", "QUERYGRPC", "CLOSED"} {
		p, err := freePort()
		if err != nil {
			return "", err
		}
		ports[name] = p
	}
	dir, err := os.MkdirTemp("", "bench-jaeger")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	jenv := append(os.Environ(), "LABCTL_JAEGER_DIR="+dir,
		"LABCTL_JAEGER_OTLP_GRPC_PORT="+strconv.Itoa(ports["GRPC"]), "LABCTL_JAEGER_OTLP_HTTP_PORT="+strconv.Itoa(ports["HTTP"]),
		"LABCTL_JAEGER_QUERY_HTTP_PORT="+strconv.Itoa(ports["QUERY"]), "LABCTL_JAEGER_QUERY_GRPC_PORT="+strconv.Itoa(ports["QUERYGRPC"]))
	start := exec.CommandContext(ctx, "scripts/jaeger.sh", "start")
	start.Env = jenv
	if out, err := start.CombinedOutput(); err != nil {
		return "", fmt.Errorf("jaeger: %v\n%s", err, out)
	}
	defer func() {
		stop := exec.Command("scripts/jaeger.sh", "stop")
		stop.Env = jenv
		_ = stop.Run()
	}()
	modes := []struct {
		name string
		b    *bench
	}{
		{"off (OTEL_SDK_DISABLED)", b.withEnv("OTEL_SDK_DISABLED=true")},
		{"on, to Jaeger", b.withEnv(fmt.Sprintf("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", ports["GRPC"]))},
		{"on, local copy only (no collector)", b.withEnv(fmt.Sprintf("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%d", ports["CLOSED"]))},
	}
	labs := make([]string, len(modes))
	for i, m := range modes {
		lab, down, err := m.b.lab(ctx, "quickstart", fmt.Sprintf("bench-tr%d", i))
		if err != nil {
			return "", err
		}
		defer down()
		labs[i] = lab
	}
	seconds := 5
	if b.quick {
		seconds = 2
	}
	p50 := make([]figure, len(modes))
	for rep := range b.reps {
		for i, m := range modes {
			b.log("tracing %s rep %d", m.name, rep+1)
			r, err := m.b.runJSON(ctx, "rr", labs[i], "-p", fmt.Sprintf("duration=%ds", seconds), "-p", "repeats=1")
			if err != nil {
				return "", err
			}
			v, _ := summaryMedian(r, "", "client.rtt_p50_ns")
			p50[i] = append(p50[i], v/1e3)
		}
	}
	var rows [][]string
	for i, m := range modes {
		overhead := "–"
		if i > 0 {
			overhead = ratio(p50[i], p50[0]).cell(pct)
		}
		rows = append(rows, []string{m.name, p50[i].cell(usec), overhead})
	}
	var s strings.Builder
	s.WriteString("## Tracing overhead on rr\n\n")
	fmt.Fprintf(&s, "rr p50 RTT (64 B, %d s) in three quickstart labs whose CLI and agents trace differently, run in turn. Spans mark phases, never messages, so the measured loop does not trace. Target: under 2%%.\n\n", seconds)
	s.WriteString(table([]string{"tracing", "rr p50 RTT", "vs off, pair by pair"}, rows))
	s.WriteString("\n")
	return s.String(), nil
}
