package traces

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// setupForTest runs Setup and shuts the provider down at cleanup.
func setupForTest(t *testing.T, o Options) *Provider {
	t.Helper()
	p, err := Setup(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	return p
}

func TestResolveEndpoint(t *testing.T) {
	tests := []struct {
		name               string
		endpoint, protocol string
		env                map[string]string
		want               string // endpoint.String(), "disabled", or "error: ..."
	}{
		{"defaults", "", "", nil, "grpc http://localhost:4317"},
		{"http default port", "", "http/protobuf", nil, "http/protobuf http://localhost:4318/v1/traces"},
		{"env endpoint", "", "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14317"}, "grpc http://127.0.0.1:14317"},
		{"env protocol", "", "", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http/protobuf http://localhost:4318/v1/traces"},
		{"flag over env", "10.0.0.1:4317", "grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "grpc http://10.0.0.1:4317"},
		{"https", "https://collector.example:443", "", nil, "grpc https://collector.example:443"},
		{"url without port", "http://jaeger", "http/protobuf", nil, "http/protobuf http://jaeger:4318/v1/traces"},
		{"http base path", "http://jaeger:4318/otlp/", "http/protobuf", nil, "http/protobuf http://jaeger:4318/otlp/v1/traces"},
		{"grpc ignores path", "http://jaeger:4317/otlp", "grpc", nil, "grpc http://jaeger:4317"},
		{"ipv6", "[::1]:4317", "", nil, "grpc http://[::1]:4317"},
		{"host only", "jaeger", "", nil, "grpc http://jaeger:4317"},
		{"none", "none", "", nil, "disabled"},
		{"none from env", "", "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "none"}, "disabled"},
		{"bad protocol", "", "http/json", nil, `error: traces: OTLP protocol "http/json": want grpc or http/protobuf`},
		{"bad scheme", "ftp://x:1", "", nil, `error: traces: OTLP endpoint "ftp://x:1": scheme "ftp", want http or https`},
		{"no host", "http://:4317", "", nil, `error: traces: OTLP endpoint "http://:4317": no host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, err := resolveEndpoint(tt.endpoint, tt.protocol, func(k string) string { return tt.env[k] })
			var got string
			switch {
			case err != nil:
				got = "error: " + err.Error()
			case ep == nil:
				got = "disabled"
			default:
				got = ep.String()
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// quietCheck fails the test if the SDK reports an error through otel.Handle
// (which prints a line per call by default) and counts the records slog
// gets at debug level.
func quietCheck(t *testing.T) (debugLines func() []string) {
	t.Helper()
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		t.Errorf("otel.Handle called (a printed line per failure): %v", err)
	}))
	var mu sync.Mutex
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		slog.SetDefault(old)
		// Not t.Logf: a late export may report after the test ended.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Print(err) }))
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return strings.FieldsFunc(buf.String(), func(r rune) bool { return r == '\n' })
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// countingDial dials normally and counts its calls, to show the exporter
// makes its connections through Options.Dial.
func countingDial(n *atomic.Int32) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// TestSetupUnreachable: with no collector, or one that accepts TCP and
// never answers, spans still reach the local store, Shutdown returns within
// its bound without an error, ExportFailed says so, and at most one line
// is logged, at debug level.
func TestSetupUnreachable(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	// A listener that never accepts: the kernel completes the handshake
	// and queues what the client sends; nothing ever answers.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })

	tests := []struct{ name, endpoint, protocol string }{
		{"grpc closed port", closedAddr, "grpc"},
		{"http closed port", closedAddr, "http/protobuf"},
		{"grpc black hole", hole.Addr().String(), "grpc"},
		{"http black hole", "http://" + hole.Addr().String(), "http/protobuf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := quietCheck(t)
			dir := t.TempDir()
			var dials atomic.Int32
			p := setupForTest(t, Options{Service: "labctl", Endpoint: tt.endpoint, Protocol: tt.protocol,
				Dial: countingDial(&dials), LocalDir: dir})
			tr := p.TracerProvider().Tracer("test")
			var traceID string
			for i := range 3 { // three traces, so more than one export can fail
				_, span := tr.Start(context.Background(), "op", withInt("i", i))
				span.End()
				traceID = span.SpanContext().TraceID().String()
			}
			start := time.Now()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			t.Logf("Shutdown took %v (bound %v); %d dials", time.Since(start), ShutdownTimeout, dials.Load())
			if !p.ExportFailed() {
				t.Error("ExportFailed() = false")
			}
			if dials.Load() == 0 {
				t.Error("the exporter never called Options.Dial")
			}
			if got := lines(); len(got) > 1 {
				t.Errorf("%d log lines, want at most 1:\n%s", len(got), strings.Join(got, "\n"))
			} else {
				t.Logf("log: %v", got)
			}
			if _, err := Read(dir, traceID); err != nil {
				t.Errorf("local copy: %v", err)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}
		})
	}
}

func withInt(k string, v int) trace.SpanStartOption {
	return trace.WithAttributes(attribute.Int(k, v))
}

// collector is a minimal OTLP receiver over gRPC and HTTP.
type collector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	services map[string]int // spans per service.name
	paths    []string       // HTTP request paths
}

func (c *collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.services == nil {
		c.services = map[string]int{}
	}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			c.services[serviceLabel(rs.Resource)] += len(ss.Spans)
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req collectorpb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.paths = append(c.paths, r.URL.Path)
	c.mu.Unlock()
	resp, _ := c.Export(r.Context(), &req)
	b, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(b)
}

func TestSetupExports(t *testing.T) {
	var grpcCol collector
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, &grpcCol)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	var httpCol collector
	hs := httptest.NewServer(&httpCol)
	t.Cleanup(hs.Close)

	tests := []struct {
		name, endpoint, protocol string
		col                      *collector
		wantPath                 string
	}{
		{"grpc", lis.Addr().String(), "grpc", &grpcCol, ""},
		{"http", hs.URL + "/otlp", "http/protobuf", &httpCol, "/otlp/v1/traces"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := quietCheck(t)
			var dials atomic.Int32
			p := setupForTest(t, Options{Service: "labctl-agent", Attributes: []attribute.KeyValue{KeyNode.String("n2")},
				Endpoint: tt.endpoint, Protocol: tt.protocol, Dial: countingDial(&dials)})
			_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "op")
			span.End()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if p.ExportFailed() {
				t.Errorf("ExportFailed; log: %v", lines())
			}
			if dials.Load() == 0 {
				t.Error("the exporter never called Options.Dial")
			}
			tt.col.mu.Lock()
			defer tt.col.mu.Unlock()
			if tt.col.services["labctl-agent/n2"] != 1 {
				t.Errorf("collector got %v, want 1 span of labctl-agent/n2", tt.col.services)
			}
			if tt.wantPath != "" && (len(tt.col.paths) == 0 || tt.col.paths[0] != tt.wantPath) {
				t.Errorf("HTTP paths %v, want %s", tt.col.paths, tt.wantPath)
			}
		})
	}
}

func TestSetupResource(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "not-labctl")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=lab,labctl.node=wrong")
	exp := tracetest.NewInMemoryExporter()
	p := setupForTest(t, Options{Service: "labctl-agent", Attributes: []attribute.KeyValue{KeyLab.String("q"), KeyNode.String("n1")}, Endpoint: "none"})
	p.tp.RegisterSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp))
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "op")
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	got := map[string]string{}
	for _, kv := range spans[0].Resource.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, want := range map[string]string{
		"service.name": "labctl-agent", "labctl.lab": "q", "labctl.node": "n1",
		"deployment.environment.name": "lab", "telemetry.sdk.language": "go",
	} {
		if got[k] != want {
			t.Errorf("resource %s = %q, want %q", k, got[k], want)
		}
	}
	if got["process.pid"] == "" {
		t.Error("resource lacks process.pid")
	}
	if _, err := Setup(context.Background(), Options{}); err == nil {
		t.Error("Setup without a service succeeded")
	}
}
