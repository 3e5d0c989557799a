package traces

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// ErrNotFound is wrapped by Read and FetchJaeger when they know nothing of
// the trace.
var ErrNotFound = errors.New("trace not found")

// The local store: every process that traces appends its finished spans to
// <dir>/<trace id>/<file>, one OTLP JSON ResourceSpans per line, file being
// <service>-<node>-<pid>.jsonl. One file per process means no two writers
// share a file, so lines never interleave; agents share the host's
// filesystem, so the CLI reads what its agents wrote.
type storeExporter struct {
	dir  string
	file string

	mu  sync.Mutex
	err error // the first failed write, reported by Shutdown
}

func storeFileName(service, node string, pid int) string {
	parts := []string{safeName(service)}
	if node != "" {
		parts = append(parts, safeName(node))
	}
	return fmt.Sprintf("%s-%d.jsonl", strings.Join(parts, "-"), pid)
}

// safeName keeps a name usable as a file name component.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\n' {
			return '_'
		}
		return r
	}, s)
}

// ExportSpans runs on the batch processor's goroutine, never on the thread
// that ended the span. A failed write is kept for Shutdown rather than
// returned: the batch processor would hand each one to otel.Handle, which
// prints a line per batch.
func (e *storeExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	byTrace := map[string][]sdktrace.ReadOnlySpan{}
	var order []string
	for _, s := range spans {
		id := s.SpanContext().TraceID().String()
		if _, ok := byTrace[id]; !ok {
			order = append(order, id)
		}
		byTrace[id] = append(byTrace[id], s)
	}
	for _, id := range order {
		if err := e.append(id, byTrace[id]); err != nil {
			e.mu.Lock()
			if e.err == nil {
				e.err = err
			}
			e.mu.Unlock()
		}
	}
	return nil
}

func (e *storeExporter) append(traceID string, spans []sdktrace.ReadOnlySpan) error {
	var buf bytes.Buffer
	for _, rs := range toOTLP(spans) {
		line, err := marshalOTLPJSON(rs)
		if err != nil {
			return fmt.Errorf("trace %s: %w", traceID, err)
		}
		buf.Write(line)
	}
	dir := filepath.Join(e.dir, traceID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("trace store: %w", err)
	}
	path := filepath.Join(dir, e.file)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("trace store: %w", err)
	}
	// One write of whole lines: a reader sees complete lines, or at worst
	// (a crash mid-write) an unterminated last one, which Read skips.
	_, werr := f.Write(buf.Bytes())
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("trace store %s: %w", path, err)
	}
	return nil
}

func (e *storeExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// Read returns the local copy of a trace: every line of every file under
// <dir>/<trace id>/, files in name order. An unterminated last line (its
// writer died mid-write) is skipped; any other malformed line is an error.
func Read(dir, traceID string) ([]*tracepb.ResourceSpans, error) {
	id, err := ParseTraceID(traceID)
	if err != nil {
		return nil, err
	}
	tdir := filepath.Join(dir, id)
	entries, err := os.ReadDir(tdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("trace %s in %s: %w", id, dir, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", id, err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".jsonl") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []*tracepb.ResourceSpans
	for _, name := range names {
		rss, err := readStoreFile(filepath.Join(tdir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, rss...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trace %s in %s: no spans: %w", id, dir, ErrNotFound)
	}
	return out, nil
}

func readStoreFile(path string) ([]*tracepb.ResourceSpans, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trace store: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []*tracepb.ResourceSpans
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return out, nil // an empty or unterminated last line
		}
		if err != nil {
			return nil, fmt.Errorf("trace store %s: %w", path, err)
		}
		rs := &tracepb.ResourceSpans{}
		if err := unmarshalOTLPJSON(line, rs); err != nil {
			return nil, fmt.Errorf("trace store %s:%d: %w", path, n, err)
		}
		out = append(out, rs)
	}
}

// ParseTraceID checks that s is a trace id (32 hex digits, not all zero)
// and returns it in lower case, the form used in file names and URLs.
func ParseTraceID(s string) (string, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return "", fmt.Errorf("trace id %q: want 32 hex digits", s)
	}
	if bytes.Equal(b, make([]byte, 16)) {
		return "", fmt.Errorf("trace id %q: all zero is not a valid id", s)
	}
	return hex.EncodeToString(b), nil
}
