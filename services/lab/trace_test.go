package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/labs"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/runs"
)

// TestUpSpanTree brings a small lab up through the API and checks its
// trace: the caller's span, the service's span across the gRPC hop, and
// beneath it netns's spans for the apply, each namespace and each link.
func TestUpSpanTree(t *testing.T) {
	privtest.Root(t)
	exp := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(sdktrace.NewTracerProvider()) })

	host := &labs.Host{StateDir: t.TempDir(), RunDir: t.TempDir(), Version: "test"}
	srv := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler()))
	labv1.RegisterLabServiceServer(srv, &Server{Host: host,
		Runner: &runs.Runner{Registry: all.Registry(), Store: &runs.Store{Dir: host.ResultsDir()}}})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///lab", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	c := labv1.NewLabServiceClient(cc)

	b := make([]byte, 3)
	_, _ = rand.Read(b)
	lab := "tr-" + hex.EncodeToString(b)
	topo := fmt.Sprintf("name: %s\ndefaults: {agent: false}\nnodes: {a: {}, b: {}}\nlinks:\n  - endpoints: [a:eth0, b:eth0]\n", lab)
	t.Cleanup(func() {
		if s, err := c.Down(context.Background(), &labv1.DownRequest{Lab: lab}); err == nil {
			_ = drain(s.Recv)
		}
	})
	ctx, root := otel.Tracer("test").Start(context.Background(), "labctl up")
	s, err := c.Up(ctx, &labv1.UpRequest{Source: "t.yaml", Topology: []byte(topo)})
	if err != nil {
		t.Fatal(err)
	}
	if err := drain(s.Recv); err != nil {
		t.Fatal(err)
	}
	root.End()

	// The server's span ends when its handler has returned, which the
	// client may learn of (the stream's end) a moment before: on a busy
	// machine the spans are read only once both sides' Up spans are in.
	var spans tracetest.SpanStubs
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		spans = exp.GetSpans()
		n := 0
		for _, sp := range spans {
			if sp.Name == "labctl.lab.v1.LabService/Up" {
				n++
			}
		}
		if n == 2 || time.Now().After(deadline) {
			break
		}
	}
	byID := map[string]tracetest.SpanStub{}
	names := map[string]int{}
	for _, sp := range spans {
		byID[sp.SpanContext.SpanID().String()] = sp
		names[sp.Name]++
	}
	ancestors := func(sp tracetest.SpanStub) []string {
		var out []string
		for {
			p, ok := byID[sp.Parent.SpanID().String()]
			if !ok {
				return out
			}
			out = append(out, p.Name)
			sp = p
		}
	}
	for _, sp := range spans {
		if sp.SpanContext.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %s is in another trace", sp.Name)
		}
		switch sp.Name {
		case "netns.apply":
			chain := strings.Join(ancestors(sp), " <- ")
			if chain != "labctl.lab.v1.LabService/Up <- labctl.lab.v1.LabService/Up <- labctl up" {
				t.Errorf("netns.apply's ancestors: %s", chain)
			}
		case "netns.link":
			if a := ancestors(sp); len(a) == 0 || a[len(a)-1] != "labctl up" {
				t.Errorf("netns.link is not in the up's tree: %v", a)
			}
		}
	}
	if names["netns.apply"] != 1 || names["netns.link"] != 1 || names["netns.namespace"] != 2 || names["netns.node"] != 2 {
		t.Errorf("spans: %v", names)
	}
}
