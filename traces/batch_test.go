package traces

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestBatcher: spans wait at most the delay, a full batch goes at once,
// ForceFlush and Shutdown send what is queued, and with nothing queued no
// timer is armed (an idle process is never woken).
func TestBatcher(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	b := newBatcher(exp, 50*time.Millisecond, time.Second)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	tr := tp.Tracer("test")
	armed := func() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.timer != nil }
	if armed() {
		t.Fatal("a timer is armed with nothing queued")
	}
	_, s := tr.Start(context.Background(), "one")
	s.End()
	if !armed() || len(exp.GetSpans()) != 0 {
		t.Fatalf("after one span: armed %v, exported %d", armed(), len(exp.GetSpans()))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(exp.GetSpans()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(exp.GetSpans()) != 1 || armed() {
		t.Fatalf("after the delay: exported %d, armed %v", len(exp.GetSpans()), armed())
	}
	exp.Reset()
	for range maxBatch {
		_, s := tr.Start(context.Background(), "many")
		s.End()
	}
	for len(exp.GetSpans()) < maxBatch && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if len(exp.GetSpans()) != maxBatch {
		t.Fatalf("a full batch: exported %d of %d", len(exp.GetSpans()), maxBatch)
	}
	exp.Reset()
	_, s = tr.Start(context.Background(), "flushed")
	s.End()
	if err := b.ForceFlush(context.Background()); err != nil || len(exp.GetSpans()) != 1 || armed() {
		t.Fatalf("ForceFlush: %v, exported %d, armed %v", err, len(exp.GetSpans()), armed())
	}
	exp.Reset()
	_, s = tr.Start(context.Background(), "last")
	s.End()
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, late := tr.Start(context.Background(), "late")
	late.End()
	if got := exp.GetSpans(); len(got) != 0 {
		// InMemoryExporter.Shutdown resets what it holds; what matters is
		// that the late span is not queued.
		t.Logf("after shutdown: %d", len(got))
	}
	b.mu.Lock()
	queued := len(b.queue)
	b.mu.Unlock()
	if queued != 0 || armed() {
		t.Errorf("after Shutdown: %d queued, armed %v", queued, armed())
	}
}
