package runs

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/services/agent"
)

// TestRunSpanTree checks the trace of an rr run: the run and its steps on
// the orchestrating side, and beneath each step, across the gRPC hop to the
// agents, each role with its phases and its summary as attributes.
func TestRunSpanTree(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(sdktrace.NewTracerProvider()) })

	agents := fakeAgents{}
	for _, n := range []string{"n1", "n2"} {
		lis := bufconn.Listen(1 << 20)
		srv := agent.NewGRPCServer(&agent.Server{Lab: "t", Node: n, Version: "test", Registry: all.Registry(), SettingsDir: t.TempDir()},
			grpc.StatsHandler(otelgrpc.NewServerHandler()))
		go func() { _ = srv.Serve(lis) }()
		cc, err := grpc.NewClient("passthrough:///"+n, append(agent.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close(); srv.Stop() })
		agents[n] = &fakeAgent{cc: cc, srv: srv}
	}
	res, err := newRunner(t).Run(context.Background(), Request{Plan: loopbackPlan(), Agents: agents, Experiment: "rr",
		Params: map[string]string{"count": "200", "warmup": "5ms", "repeats": "2"}}, func(Event) {})
	if err != nil {
		t.Fatal(err)
	}
	// An agent's server span ends when its RunRole handler returns, which
	// can be after the runner has the role's report: wait (boundedly) for
	// every role span's parent before reading the tree.
	var spans tracetest.SpanStubs
	byID := map[string]tracetest.SpanStub{}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		spans = exp.GetSpans()
		clear(byID)
		for _, s := range spans {
			byID[s.SpanContext.SpanID().String()] = s
		}
		parented := true
		for _, s := range spans {
			if _, ok := byID[s.Parent.SpanID().String()]; strings.HasPrefix(s.Name, "role ") && !ok {
				parented = false
			}
		}
		if parented || time.Now().After(deadline) {
			break
		}
	}
	parent := func(s tracetest.SpanStub) (tracetest.SpanStub, bool) {
		p, ok := byID[s.Parent.SpanID().String()]
		return p, ok
	}
	attr := func(s tracetest.SpanStub, key string) (string, bool) {
		for _, kv := range s.Attributes {
			if string(kv.Key) == key {
				return kv.Value.String(), true
			}
		}
		return "", false
	}
	count := map[string]int{}
	for _, s := range spans {
		count[s.Name]++
		if s.SpanContext.TraceID().String() != res.GetTraceId() {
			t.Errorf("span %s is in trace %s, the result names %s", s.Name, s.SpanContext.TraceID(), res.GetTraceId())
		}
		switch s.Name {
		case "run rr":
			if v, _ := attr(s, "labctl.run.id"); v != res.GetId() {
				t.Errorf("run span names run %q", v)
			}
			if v, _ := attr(s, "labctl.verdict.outcome"); v != "MEASURED" {
				t.Errorf("run span verdict %q", v)
			}
			if _, ok := attr(s, "labctl.verdict.claim"); ok {
				t.Error("run span names a claim rr does not answer")
			}
		case "step":
			if p, ok := parent(s); !ok || p.Name != "run rr" {
				t.Errorf("%s's parent is %q", s.Name, p.Name)
			}
			if v, _ := attr(s, "labctl.variant"); v != "tcp" {
				t.Errorf("step variant %q", v)
			}
			if _, ok := attr(s, "labctl.client.rtt_p50_ns"); !ok {
				t.Error("step span lacks the client's p50")
			}
		case "role rr client", "role rr server":
			// role <- agent's server span <- the runner's client span <- step
			srv, ok := parent(s)
			if !ok || srv.SpanKind.String() != "server" {
				t.Fatalf("%s's parent is not the agent's server span: %+v", s.Name, srv.Name)
			}
			cli, ok := parent(srv)
			if !ok || cli.SpanKind.String() != "client" {
				t.Fatalf("the agent's server span has no client span across the hop: %q", cli.Name)
			}
			if step, ok := parent(cli); !ok || step.Name[:4] != "step" {
				t.Errorf("the RunRole call is not beneath a step: %q", step.Name)
			}
			if _, ok := attr(s, "labctl."+strings.TrimPrefix(s.Name, "role rr ")+".cpu_ns_per_msg"); !ok {
				t.Errorf("%s lacks its metrics as attributes", s.Name)
			}
		case "measure":
			if p, ok := parent(s); !ok || p.Name != "role rr client" {
				t.Errorf("measure's parent is %q", p.Name)
			}
			if n := len(s.Events); n == 0 || n > 5 {
				t.Errorf("measure has %d events; want the slowest round trips, at most 5", n)
			}
		}
	}
	for name, want := range map[string]int{"run rr": 1, "step": 2, "role rr client": 2, "role rr server": 2, "warm-up": 2, "measure": 2} {
		if count[name] != want {
			t.Errorf("%d spans %q, want %d", count[name], name, want)
		}
	}
}
