package iomodels

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// clientConfig is the client's part of a step. The client is the same for
// every model: rr's blocking request/response on a locked thread.
type clientConfig struct {
	variant
	Size     int
	Duration time.Duration
	Count    int // measured round trips; 0 runs for Duration
	Warmup   time.Duration
	CPU      int
}

// udpTimeout bounds the wait for a UDP response. One datagram is in flight
// at a time, so nothing in the lab drops one unless something is wrong; the
// step then fails instead of hanging.
const udpTimeout = 2 * time.Second

// runClient connects (idle connections first, then the active one) and
// times round trips.
func runClient(ctx context.Context, env *experiments.Env, peer netip.AddrPort, cfg clientConfig) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(cfg.CPU)
	if err != nil {
		return nil, err
	}
	defer unlock()
	env.Ready(0)
	idle, err := connectIdle(ctx, env, peer, cfg.Idle)
	defer closeIdle(idle)
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	fd, err := sock.Connect(sock.Network(cfg.Proto), peer)
	if err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("io-models client: %w", err))
	}
	defer fd.Close()
	stop := role.ShutdownOnDone(ctx, append([]sock.FD{fd}, idle...)...)
	defer stop()
	if cfg.Proto == protoTCP {
		if err := sock.SetNoDelay(fd, true); err != nil {
			return nil, fmt.Errorf("io-models client: fd %d: %w", fd, err)
		}
	}
	// rr's client, raw calls and all (sock.Hot): every model is measured
	// from the same loop.
	hot, err := sock.NewHot(fd)
	if err != nil {
		return nil, fmt.Errorf("io-models client: %w", err)
	}
	buf := make([]byte, cfg.Size)
	r := env.Report()
	// One warm-up round trip always comes first: the server reads it during
	// setup, learns the UDP client's address from it, and answers declined
	// when it cannot serve the model.
	declined, err := roundTrip(hot, cfg.Proto, buf, phaseWarmup)
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	if declined {
		r.Notes = append(r.Notes, "the server declined the variant: it cannot run on this kernel or with this many descriptors (see the server's note)")
		r.Metrics["declined"] = 1
		return finish(ctx, r, env.Node, cfg.CPU)
	}
	env.Progressf("warming up for %v", cfg.Warmup)
	for t0 := time.Now(); time.Since(t0) < cfg.Warmup; {
		if _, err := roundTrip(hot, cfg.Proto, buf, phaseWarmup); err != nil {
			return nil, role.CtxErr(ctx, err)
		}
	}
	if cfg.Count > 0 {
		env.Progressf("measuring %d %d-byte %s round trips against %s", cfg.Count, cfg.Size, cfg.Proto, cfg.Model)
	} else {
		env.Progressf("measuring %d-byte %s round trips against %s for %v", cfg.Size, cfg.Proto, cfg.Model, cfg.Duration)
	}
	var h measure.Histogram
	start, _ := measure.ThreadUsage()
	begin := time.Now()
	deadline := begin.Add(cfg.Duration)
	n := 0
	for {
		t0 := time.Now()
		if _, err := roundTrip(hot, cfg.Proto, buf, phaseMeasured); err != nil {
			return nil, role.CtxErr(ctx, err)
		}
		t1 := time.Now()
		h.Record(t1.Sub(t0))
		n++
		if (cfg.Count > 0 && n >= cfg.Count) || (cfg.Count == 0 && !t1.Before(deadline)) {
			break
		}
	}
	elapsed := time.Since(begin)
	end, _ := measure.ThreadUsage()
	if _, err := roundTrip(hot, cfg.Proto, buf, phaseDone); err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	report.AddLatency(r, "rtt", &h)
	r.Metrics["messages"] = float64(n)
	r.Metrics["msgs_per_s"] = float64(n) / elapsed.Seconds()
	report.AddUsage(r, end.Sub(start), int64(n), "msg")
	return finish(ctx, r, env.Node, cfg.CPU)
}

// roundTrip sends one request with the phase byte and reads the response,
// reporting whether the server declined.
func roundTrip(h sock.Hot, proto string, buf []byte, phase byte) (bool, error) {
	buf[0] = phase
	if proto == protoTCP {
		if _, err := h.WriteFull(buf); err != nil {
			return false, fmt.Errorf("io-models client: send: %w", err)
		}
		if _, err := h.ReadFull(buf); err != nil {
			return false, fmt.Errorf("io-models client: recv: %w", err)
		}
	} else {
		if _, err := h.Send(buf); err != nil {
			return false, fmt.Errorf("io-models client: send: %w", err)
		}
		n, err := h.RecvWithin(buf, udpTimeout)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return false, fmt.Errorf("io-models client: no UDP response within %v", udpTimeout)
		case err != nil:
			return false, fmt.Errorf("io-models client: recv: %w", err)
		case n != len(buf):
			return false, fmt.Errorf("io-models client: response of %d bytes, expected %d", n, len(buf))
		}
	}
	switch buf[0] {
	case phase:
		return false, nil
	case phaseDeclined:
		return true, nil
	}
	return false, fmt.Errorf("io-models client: response carries phase %d, the request %d", buf[0], phase)
}

// connectIdle opens n idle TCP connections to the server. They close with
// a reset (SO_LINGER 0), so that thousands of them per step do not pile up
// in TIME_WAIT.
func connectIdle(ctx context.Context, env *experiments.Env, peer netip.AddrPort, n int) ([]sock.FD, error) {
	if n == 0 {
		return nil, nil
	}
	if err := raiseNoFile(n); err != nil {
		return nil, err
	}
	env.Progressf("opening %d idle connections", n)
	fds := make([]sock.FD, 0, n)
	for range n {
		if ctx.Err() != nil {
			return fds, ctx.Err()
		}
		fd, err := sock.Connect(sock.TCP, peer)
		if err != nil {
			return fds, fmt.Errorf("io-models client: idle connection %d of %d: %w", len(fds)+1, n, err)
		}
		fds = append(fds, fd)
		if err := unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return fds, fmt.Errorf("io-models client: SO_LINGER on fd %d: %w", fd, err)
		}
	}
	return fds, nil
}

func closeIdle(fds []sock.FD) {
	for _, fd := range fds {
		fd.Close()
	}
}
