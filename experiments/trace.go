package experiments

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

var tracer = otel.Tracer("github.com/labctl/labctl/experiments")

// Phase starts the span of one phase of a role (setup, warm-up, measure,
// teardown); end it when the phase ends. Spans mark phases, never single
// messages: a measured loop must not pay for tracing.
func Phase(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// Slowest keeps the k largest samples of a measurement, to show as span
// events: a trace shows the outliers without one event per sample (the SDK
// keeps 128 events per span, and the histogram has the rest). Add costs one
// comparison in the common case and never allocates.
type Slowest struct {
	at, d []time.Duration // offset since the start of the measurement, and the sample
}

// NewSlowest keeps the k largest samples.
func NewSlowest(k int) *Slowest {
	return &Slowest{at: make([]time.Duration, 0, k), d: make([]time.Duration, 0, k)}
}

// Add offers one sample taken at offset from the start.
func (s *Slowest) Add(offset, d time.Duration) {
	if len(s.d) < cap(s.d) {
		s.at, s.d = append(s.at, offset), append(s.d, d)
		return
	}
	// Replace the smallest kept sample if this one is larger.
	min := 0
	for i := range s.d {
		if s.d[i] < s.d[min] {
			min = i
		}
	}
	if d > s.d[min] {
		s.at[min], s.d[min] = offset, d
	}
}

// Events adds one event per kept sample to span, slowest first.
func (s *Slowest) Events(span trace.Span, name string) {
	order := make([]int, len(s.d))
	for i := range order {
		order[i] = i
	}
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && s.d[order[j]] > s.d[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	for _, i := range order {
		span.AddEvent(name, trace.WithAttributes(
			attribute.Int64("labctl.sample_ns", int64(s.d[i])), attribute.Int64("labctl.offset_ns", int64(s.at[i]))))
	}
}
