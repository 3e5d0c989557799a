package traces

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/golden"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// readTracesData reads a hand-made trace in OTLP JSON, as Jaeger serves it.
func readTracesData(t *testing.T, path string) []*tracepb.ResourceSpans {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var td tracepb.TracesData
	if err := unmarshalOTLPJSON(b, &td); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return td.ResourceSpans
}

func TestRender(t *testing.T) {
	tests := []struct {
		golden string
		input  string // "" renders no spans
		width  int
	}{
		{"run.txt", "run.json", 0},
		{"run-wide.txt", "run.json", 160},
		{"run-narrow.txt", "run.json", 60},
		{"orphan.txt", "orphan.json", 140},
		{"cycle.txt", "cycle.json", 80},
		{"empty.txt", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var spans []*tracepb.ResourceSpans
			if tt.input != "" {
				spans = readTracesData(t, filepath.Join("testdata", "render", tt.input))
			}
			var buf bytes.Buffer
			if err := Render(&buf, spans, RenderOptions{Width: tt.width}); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "render", tt.golden), buf.Bytes())
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"},
		{850, "850ns"},
		{999, "999ns"},
		{1000, "1.00µs"},
		{12_345, "12.3µs"},
		{999_960, "1000µs"},
		{5 * time.Millisecond, "5.00ms"},
		{123_456_789, "123ms"},
		{1_250 * time.Millisecond, "1.25s"},
		{59_990 * time.Millisecond, "60.0s"},
		{125 * time.Second, "2m05s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%d) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
