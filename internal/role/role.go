// Package role holds what the roles of experiments are written with while
// they run inside an agent: a locked (and optionally pinned) measuring
// thread, spans for the phases of a role, the one TCP connection most roles
// accept, and the shutdown that wakes a role blocked in a system call when
// its run is cancelled.
package role

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/sock"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"
)

// LockThread locks the calling goroutine to its OS thread, as every
// measuring role must (RUSAGE_THREAD, CPU pinning and io_uring's task work
// all belong to one thread), and for cpu >= 0 pins that thread to the CPU.
// The returned function puts the thread's CPU affinity back and unlocks
// it; if the affinity cannot be put back, the thread stays locked and Go
// ends it with the goroutine, so no pinned thread ever goes back to the
// scheduler to run other goroutines on one CPU.
func LockThread(cpu int) (unlock func(), err error) {
	runtime.LockOSThread()
	if cpu < 0 {
		return runtime.UnlockOSThread, nil
	}
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	if err := sock.PinThread(cpu); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() {
		if unix.SchedSetaffinity(0, &orig) == nil {
			runtime.UnlockOSThread()
		}
	}, nil
}

var tracer = otel.Tracer("github.com/labctl/labctl/internal/role")

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

// Events adds one event per kept sample to span, slowest first, each at
// the moment it was taken (start is the measurement's).
func (s *Slowest) Events(span trace.Span, name string, start time.Time) {
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
		span.AddEvent(name, trace.WithTimestamp(start.Add(s.at[i])), trace.WithAttributes(
			attribute.Int64("labctl.sample_ns", int64(s.d[i])), attribute.Int64("labctl.offset_ns", int64(s.at[i]))))
	}
}

// ShutdownOnDone shuts the sockets down when ctx ends. A thread blocked in
// recv, send or accept on a socket does not notice the socket being closed
// by another thread, but shutdown(2) wakes it with an error or EOF; that is
// how a cancelled run stops a role stuck in a blocking call. Call the
// returned stop once the sockets are no longer in use (before closing them).
func ShutdownOnDone(ctx context.Context, fds ...sock.FD) (stop func()) {
	var mu sync.Mutex
	done := false
	stopWatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		for _, fd := range fds {
			_ = unix.Shutdown(int(fd), unix.SHUT_RDWR)
		}
	})
	return func() {
		stopWatch()
		mu.Lock()
		done = true
		mu.Unlock()
	}
}

// AcceptOne listens for one TCP connection on the role's address, tells the
// orchestrator its port, and accepts. setup, when not nil, configures the
// listening socket first (options an accepted socket inherits, such as
// SO_RCVBUF). The connection is shut down if ctx ends while it is in use;
// done stops that watch and closes it.
func AcceptOne(ctx context.Context, env *experiments.Env, setup func(ln sock.FD) error) (fd sock.FD, done func(), err error) {
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(env.Address(), 0), 1)
	if err != nil {
		return -1, nil, err
	}
	defer ln.Close()
	if setup != nil {
		if err := setup(ln); err != nil {
			return -1, nil, err
		}
	}
	local, err := sock.LocalAddr(ln)
	if err != nil {
		return -1, nil, err
	}
	stop := ShutdownOnDone(ctx, ln)
	env.Ready(int(local.Port()))
	fd, err = sock.Accept(ln)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return -1, nil, ctx.Err()
		}
		return -1, nil, fmt.Errorf("%s %s: accept: %w", env.Step.GetVariant(), env.Role, err)
	}
	stop = ShutdownOnDone(ctx, fd)
	return fd, func() { stop(); fd.Close() }, nil
}

// CtxErr prefers the context's error: a role whose socket was shut down
// because the run was cancelled failed because of the cancel, not because
// of the EOF or EPIPE the shutdown caused.
func CtxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
