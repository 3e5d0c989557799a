package traces

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// batcher sends finished spans to an exporter in batches, as the SDK's
// BatchSpanProcessor does, but with no ticker: the first span of a batch
// arms a timer, and an idle process is never woken. The SDK's processor
// wakes every batch timeout whether it holds spans or not, and each wakeup
// stirs the Go runtime's other threads: an idle agent with the local store
// and an OTLP exporter used 2.4 ms of CPU a second on the reference machine
// (2 vCPUs, Linux 6.18), so that 1,000 idle agents took both CPUs and the
// agents of a large lab could not start in time.
type batcher struct {
	exp     sdktrace.SpanExporter
	delay   time.Duration // how long the first span of a batch waits
	timeout time.Duration // bound on one export

	mu      sync.Mutex
	queue   []sdktrace.ReadOnlySpan
	timer   *time.Timer // armed while the queue holds spans
	stopped bool

	exporting sync.Mutex // one export at a time, batches in order
}

// maxBatch is the most spans a batch waits with: a full batch goes at once.
const maxBatch = 512

func newBatcher(exp sdktrace.SpanExporter, delay, timeout time.Duration) *batcher {
	return &batcher{exp: exp, delay: delay, timeout: timeout}
}

func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.queue = append(b.queue, s)
	switch {
	case len(b.queue) >= maxBatch:
		b.disarm()
		go b.send()
	case b.timer == nil:
		b.timer = time.AfterFunc(b.delay, b.send)
	}
}

// send exports what is queued, from the timer or a full batch; an error
// goes where the SDK's processors send theirs.
func (b *batcher) send() {
	if err := b.flush(context.Background()); err != nil {
		otel.Handle(err)
	}
}

func (b *batcher) disarm() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

func (b *batcher) flush(ctx context.Context) error {
	b.exporting.Lock()
	defer b.exporting.Unlock()
	b.mu.Lock()
	spans := b.queue
	b.queue = nil
	b.disarm()
	b.mu.Unlock()
	if len(spans) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.exp.ExportSpans(ctx, spans)
}

// ForceFlush exports what is queued now.
func (b *batcher) ForceFlush(ctx context.Context) error { return b.flush(ctx) }

// Shutdown exports what is queued and stops the exporter; spans that end
// afterwards are dropped.
func (b *batcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
	return errors.Join(b.flush(ctx), b.exp.Shutdown(ctx))
}
