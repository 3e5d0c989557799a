package traces

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/privtest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestFetchJaeger(t *testing.T) {
	const id = "5b8aa5a2d2c872e8321cf37308d69df2"
	runJSON, err := os.ReadFile(filepath.Join("testdata", "render", "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		status   int
		body     string
		spans    int
		wantErr  string
		notFound bool
	}{
		{"found", 200, `{"result":` + string(runJSON) + `}`, 8, "", false},
		{"unknown", 404, `{"error":{"httpCode":404,"message":"trace not found"}}`, 0, "trace not found", true},
		{"empty result", 200, `{"result":{"resourceSpans":[]}}`, 0, "empty result", true},
		{"server error", 500, `{"error":{"httpCode":500,"message":"storage down"}}`, 0, "500 Internal Server Error: storage down", false},
		{"plain error", 502, "bad gateway\n", 0, "502 Bad Gateway: bad gateway", false},
		{"not json", 200, "<html>", 0, "response", false},
		{"no result", 200, `{}`, 0, "no result", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			rss, err := FetchJaeger(context.Background(), srv.URL+"/", strings.ToUpper(id))
			if path != "/api/v3/traces/"+id {
				t.Errorf("requested %s", path)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if errors.Is(err, ErrNotFound) != tt.notFound {
					t.Errorf("errors.Is(%v, ErrNotFound) = %v", err, !tt.notFound)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := len(collect(rss)); n != tt.spans {
				t.Errorf("%d spans, want %d", n, tt.spans)
			}
		})
	}
	if _, err := FetchJaeger(context.Background(), "http://127.0.0.1:1", "nothex"); err == nil {
		t.Error("FetchJaeger accepted a bad trace id")
	}
}

func TestUILink(t *testing.T) {
	tests := []struct{ url, id, want string }{
		{"http://127.0.0.1:16686", "ABCDEF0123456789abcdef0123456789", "http://127.0.0.1:16686/trace/abcdef0123456789abcdef0123456789"},
		{"http://jaeger.lab/base/", "0af7651916cd43dd8448eb211c80319c", "http://jaeger.lab/base/trace/0af7651916cd43dd8448eb211c80319c"},
	}
	for _, tt := range tests {
		if got := UILink(tt.url, tt.id); got != tt.want {
			t.Errorf("UILink(%q, %q) = %q, want %q", tt.url, tt.id, got, tt.want)
		}
	}
}

// TestJaegerEndToEnd exports a small tree from two services to a real
// Jaeger v2 (one over OTLP gRPC, one over OTLP HTTP), reads it back through
// the query API, and renders it.
func TestJaegerEndToEnd(t *testing.T) {
	privtest.Root(t)
	query, otlpGRPC, otlpHTTP := startJaeger(t)

	localDir := t.TempDir()
	cli := setupForTest(t, Options{Service: "labctl", Attributes: []attribute.KeyValue{KeyLab.String("e2e")},
		Endpoint: otlpGRPC, Protocol: "grpc", LocalDir: localDir})
	agent := setupForTest(t, Options{Service: "labctl-agent", Attributes: []attribute.KeyValue{KeyLab.String("e2e"), KeyNode.String("n1")},
		Endpoint: "http://" + otlpHTTP, Protocol: "http/protobuf", LocalDir: localDir})

	ctx, root := cli.TracerProvider().Tracer("cli").Start(context.Background(), "run rr", trace.WithAttributes(KeyRunID.String("e2e-1")))
	ctx, call := cli.TracerProvider().Tracer("cli").Start(ctx, "AgentService/Run", trace.WithSpanKind(trace.SpanKindClient))
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	actx := propagation.TraceContext{}.Extract(context.Background(), carrier)
	actx, serve := agent.TracerProvider().Tracer("agent").Start(actx, "AgentService/Run", trace.WithSpanKind(trace.SpanKindServer))
	_, step := agent.TracerProvider().Tracer("agent").Start(actx, "rr.client")
	Summary(step, "rr", map[string]float64{"client.rtt_p50_ns": 23456})
	step.End()
	serve.End()
	call.End()
	root.End()
	traceID := root.SpanContext().TraceID().String()
	for _, p := range []*Provider{agent, cli} {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p.ExportFailed() {
			t.Fatal("export to Jaeger failed")
		}
	}

	// Jaeger batches what it receives; wait until both services' spans are
	// queryable (a bound on waiting, not a timing assertion).
	var rss []*tracepb.ResourceSpans
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		rss, err = FetchJaeger(ctx, query, traceID)
		cancel()
		if err == nil && len(collect(rss)) == 4 {
			break
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger has %d of 4 spans after 30s (last error: %v)", len(collect(rss)), err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	var got []string
	for _, r := range treeOrder(collect(rss)) {
		got = append(got, fmt.Sprintf("%s%s@%s orphan=%v", strings.Repeat(" ", r.depth), r.span.Name, r.service, r.orphan))
	}
	want := []string{
		"run rr@labctl orphan=false",
		" AgentService/Run@labctl orphan=false",
		"  AgentService/Run@labctl-agent/n1 orphan=false",
		"   rr.client@labctl-agent/n1 orphan=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree from Jaeger:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	local, err := Read(localDir, traceID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSpans(local, rss) {
		t.Error("Jaeger's copy and the local copy differ in span ids or parents")
	}
	var out bytes.Buffer
	if err := Render(&out, rss, RenderOptions{Width: 120}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"run rr", "rr.client", "labctl-agent/n1", "rr.client.rtt_p50_ns=23456", "run.id=e2e-1"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("waterfall lacks %q", s)
		}
	}
	t.Logf("%s\n%s", UILink(query, traceID), out.String())

	if _, err := FetchJaeger(context.Background(), query, "0af7651916cd43dd8448eb211c80319c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown trace: %v, want ErrNotFound", err)
	}
}

// sameSpans compares span ids with their parents.
func sameSpans(a, b []*tracepb.ResourceSpans) bool {
	index := func(rss []*tracepb.ResourceSpans) map[string]string {
		m := map[string]string{}
		for _, it := range collect(rss) {
			m[fmt.Sprintf("%x", it.span.SpanId)] = fmt.Sprintf("%x %s", it.span.ParentSpanId, it.span.Name)
		}
		return m
	}
	ia, ib := index(a), index(b)
	if len(ia) != len(ib) {
		return false
	}
	for k, v := range ia {
		if ib[k] != v {
			return false
		}
	}
	return true
}

// startJaeger starts a Jaeger v2 with scripts/jaeger.sh on free loopback
// ports and a private run directory, and stops it at cleanup. It returns
// the query URL and the OTLP gRPC and HTTP addresses.
func startJaeger(t *testing.T) (query, otlpGRPC, otlpHTTP string) {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(repo, "scripts", "jaeger.sh")
	bin := os.Getenv("LABCTL_JAEGER_BIN")
	if bin == "" {
		bin = filepath.Join(repo, "bin", "jaeger")
	}
	if _, err := os.Stat(bin); err != nil {
		// scripts/test.sh builds it once, before the tests that need it.
		privtest.Unavailable(t, fmt.Sprintf("no Jaeger binary at %s (scripts/jaeger.sh build)", bin))
	}

	ports := freePorts(t, 4)
	env := append(os.Environ(),
		"LABCTL_JAEGER_BIN="+bin,
		"LABCTL_JAEGER_DIR="+t.TempDir(),
		"LABCTL_JAEGER_HOST=127.0.0.1",
		"LABCTL_JAEGER_OTLP_GRPC_PORT="+ports[0],
		"LABCTL_JAEGER_OTLP_HTTP_PORT="+ports[1],
		"LABCTL_JAEGER_QUERY_HTTP_PORT="+ports[2],
		"LABCTL_JAEGER_QUERY_GRPC_PORT="+ports[3],
		"LABCTL_JAEGER_STOP_TIMEOUT=10",
	)
	run := func(arg string) ([]byte, error) {
		cmd := exec.Command(script, arg)
		cmd.Env = env
		return cmd.CombinedOutput()
	}
	// Registered before start: stop is harmless when nothing runs, and a
	// start that fails half-way is cleaned up too.
	t.Cleanup(func() {
		if out, err := run("stop"); err != nil {
			t.Errorf("stopping Jaeger: %v\n%s", err, out)
		}
	})
	if out, err := run("start"); err != nil {
		t.Fatalf("starting Jaeger: %v\n%s", err, out)
	}
	return "http://127.0.0.1:" + ports[2], "127.0.0.1:" + ports[0], "127.0.0.1:" + ports[1]
}

// freePorts returns n loopback TCP ports that were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
