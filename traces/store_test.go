package traces

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TestStoreMergesProcesses has two "processes" (providers with different
// services) write one trace to the local store, and reads it back as one
// tree.
func TestStoreMergesProcesses(t *testing.T) {
	dir := t.TempDir()
	cli := setupForTest(t, Options{Service: "labctl", Attributes: []attribute.KeyValue{KeyLab.String("quickstart")}, Endpoint: "none", LocalDir: dir})
	agent := setupForTest(t, Options{Service: "labctl-agent", Attributes: []attribute.KeyValue{KeyLab.String("quickstart"), KeyNode.String("n1")}, Endpoint: "none", LocalDir: dir})

	ctx, root := cli.TracerProvider().Tracer("cli").Start(context.Background(), "run rr")
	ctx, call := cli.TracerProvider().Tracer("cli").Start(ctx, "AgentService/Run", trace.WithSpanKind(trace.SpanKindClient))
	// Across the process boundary only the W3C header travels.
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	actx := propagation.TraceContext{}.Extract(context.Background(), carrier)
	actx, serve := agent.TracerProvider().Tracer("agent").Start(actx, "AgentService/Run", trace.WithSpanKind(trace.SpanKindServer))
	_, step := agent.TracerProvider().Tracer("agent").Start(actx, "rr.client")
	step.End()
	serve.End()
	call.End()
	root.End()
	traceID := root.SpanContext().TraceID().String()

	for _, p := range []*Provider{cli, agent} {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p.ExportFailed() {
			t.Error("ExportFailed with OTLP disabled")
		}
	}

	entries, err := os.ReadDir(filepath.Join(dir, traceID))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	pid := os.Getpid()
	want := []string{fmt.Sprintf("labctl-%d.jsonl", pid), fmt.Sprintf("labctl-agent-n1-%d.jsonl", pid)}
	sort.Strings(want)
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", files, want)
	}

	rss, err := Read(dir, strings.ToUpper(traceID))
	if err != nil {
		t.Fatal(err)
	}
	rows := treeOrder(collect(rss))
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s%s@%s orphan=%v", strings.Repeat(" ", r.depth), r.span.Name, r.service, r.orphan))
	}
	wantRows := []string{
		"run rr@labctl orphan=false",
		" AgentService/Run@labctl orphan=false",
		"  AgentService/Run@labctl-agent/n1 orphan=false",
		"   rr.client@labctl-agent/n1 orphan=false",
	}
	if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
	}
	var out strings.Builder
	if err := Render(&out, rss, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
}

func TestReadStore(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	good := readTracesData(t, filepath.Join("testdata", "render", "cycle.json"))[0]
	line, err := marshalOTLPJSON(good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		files   map[string]string
		id      string
		spans   int    // spans read
		wantErr string // "" for none
	}{
		{"two files", map[string]string{"a-1.jsonl": string(line), "b-2.jsonl": string(line) + string(line)}, id, 9, ""},
		{"unterminated last line", map[string]string{"a-1.jsonl": string(line) + `{"resource":`}, id, 3, ""},
		{"other files ignored", map[string]string{"a-1.jsonl": string(line), "notes.txt": "x"}, id, 3, ""},
		{"malformed line", map[string]string{"a-1.jsonl": "{\n" + string(line)}, id, 0, "a-1.jsonl:1: decode JSON"},
		{"unknown trace", nil, "4bf92f3577b34da6a3ce929d0e0e4737", 0, "trace not found"},
		{"empty trace", map[string]string{"a-1.jsonl": ""}, id, 0, "trace not found"},
		{"bad id", nil, "../../etc", 0, "want 32 hex digits"},
		{"zero id", nil, strings.Repeat("0", 32), 0, "all zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.files != nil {
				if err := os.Mkdir(filepath.Join(dir, id), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, id, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rss, err := Read(dir, tt.id)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "not found") && !errors.Is(err, ErrNotFound) {
					t.Errorf("error %v does not wrap ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, rs := range rss {
				for _, ss := range rs.ScopeSpans {
					n += len(ss.Spans)
				}
			}
			if n != tt.spans {
				t.Errorf("read %d spans, want %d", n, tt.spans)
			}
		})
	}
}

// TestStoreWriteFailure: a local store that cannot be written is reported
// by Shutdown, naming the path, and not printed per batch.
func TestStoreWriteFailure(t *testing.T) {
	lines := quietCheck(t)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := setupForTest(t, Options{Service: "labctl", Endpoint: "none", LocalDir: notDir})
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "op")
	span.End()
	err := p.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), notDir) {
		t.Errorf("Shutdown: %v, want an error naming %s", err, notDir)
	}
	if got := lines(); len(got) != 0 {
		t.Errorf("logged %v", got)
	}
}
