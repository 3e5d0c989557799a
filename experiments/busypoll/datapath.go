package busypoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// The epoll and spin data paths speak rr's protocol: fixed-size requests
// echoed back, the first byte of each request saying whether it is a
// warm-up or a measured message, so that both roles measure the same
// messages. One more phase than rr's ends the server's measurement: a
// spinning server would otherwise charge the wait for the client's close
// (while the client reads its node's environment) to the messages.
const (
	phaseWarmup   = 0
	phaseMeasured = 1
	phaseEnd      = 2
)

// conns is how many connections the variant's data path uses.
func (r *roleRun) conns() int {
	if r.v.Mechanism.Mode() == modeEpoll {
		return r.o.conns
	}
	return 1
}

func (r *roleRun) serve(ctx context.Context) (*experimentv1.RoleReport, error) {
	switch r.v.Mechanism.Mode() {
	case modeEpoll:
		return r.serveEpoll(ctx)
	case modeSpin:
		return r.serveSpin(ctx)
	}
	return rr.Serve(ctx, r.env, r.o.size, r.o.cpu, r.hook)
}

func (r *roleRun) client(ctx context.Context, peer netip.AddrPort) (*experimentv1.RoleReport, error) {
	switch r.v.Mechanism.Mode() {
	case modeEpoll:
		return r.clientEpoll(ctx, peer)
	case modeSpin:
		return r.clientSpin(ctx, peer)
	}
	return rr.Client(ctx, r.env, peer, rr.ClientOptions{Size: r.o.size, Duration: r.o.duration, Warmup: r.o.warmup, CPU: r.o.cpu}, r.hook)
}

// refuse is a role whose variant cannot run here: it still makes and
// closes its connections, so that the other role (which finds the same
// thing missing) is not left waiting, and reports why instead of numbers.
func (r *roleRun) refuse(ctx context.Context, peer netip.AddrPort, why error) (*experimentv1.RoleReport, error) {
	if r.env.Role == experiments.Server {
		ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(r.env.Address(), 0), r.conns())
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		fds, err := acceptAll(ctx, r.env, ln, r.conns())
		closeAll(fds)
		if err != nil {
			return nil, err
		}
	} else {
		r.env.Ready(0)
		for range r.conns() {
			fd, err := sock.Connect(sock.TCP, peer)
			if err != nil {
				return nil, fmt.Errorf("busy-poll client: %w", err)
			}
			fd.Close()
		}
	}
	rep := r.env.Report()
	rep.Notes = append(rep.Notes, fmt.Sprintf("%s cannot run here: %v", r.v, why))
	report.AddEvidence(rep, "unsupported", 1, "", "setting up "+r.v.String()+" on "+r.iface, why.Error())
	return rep, nil
}

// acceptAll tells the orchestrator the listener's port and accepts n
// connections.
func acceptAll(ctx context.Context, env *experiments.Env, ln sock.FD, n int) ([]sock.FD, error) {
	local, err := sock.LocalAddr(ln)
	if err != nil {
		return nil, err
	}
	stop := role.ShutdownOnDone(ctx, ln)
	defer stop()
	env.Ready(int(local.Port()))
	var fds []sock.FD
	for range n {
		fd, err := sock.Accept(ln)
		if err != nil {
			closeAll(fds)
			return nil, role.CtxErr(ctx, fmt.Errorf("busy-poll server: accept: %w", err))
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func closeAll(fds []sock.FD) {
	for _, fd := range fds {
		fd.Close()
	}
}

// connectAll opens n connections to peer.
func connectAll(peer netip.AddrPort, n int, flags ...sock.Flag) ([]sock.FD, error) {
	var fds []sock.FD
	for range n {
		fd, err := sock.Connect(sock.TCP, peer, flags...)
		if err != nil {
			closeAll(fds)
			return nil, fmt.Errorf("busy-poll client: %w", err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// prepare sets TCP_NODELAY and the variant's options on every socket.
func (r *roleRun) prepare(fds []sock.FD) error {
	for _, fd := range fds {
		if err := sock.SetNoDelay(fd, true); err != nil {
			return err
		}
		if err := r.hook(fd); err != nil {
			return err
		}
	}
	return nil
}

// newEpoll makes the epoll instance of the data path, with the variant's
// busy-poll parameters set before any socket is added: epoll records the
// NAPI id of a socket as it is added or becomes ready, and only while
// busy polling is on for the instance.
func (r *roleRun) newEpoll(fds []sock.FD) (*sock.Epoll, error) {
	ep, err := sock.NewEpoll()
	if err != nil {
		return nil, err
	}
	if r.epoll != nil {
		if err := ep.SetBusyPollParams(*r.epoll); err != nil {
			ep.Close()
			return nil, err
		}
		set, err := ep.BusyPollParams()
		if err != nil {
			ep.Close()
			return nil, err
		}
		r.epollSet = &set
	}
	for _, fd := range fds {
		if err := ep.Add(fd, unix.EPOLLIN); err != nil {
			ep.Close()
			return nil, err
		}
	}
	return ep, nil
}

// meter measures a server's CPU over the measured messages: from the first
// measured request to the first connection the client closes.
type meter struct {
	start, end measure.Usage
	measured   int64
	empty      int64 // recv calls that found nothing (spin)
	stopped    bool
}

func (m *meter) request(phase byte) {
	if phase == phaseEnd {
		m.stop()
	}
	if phase == phaseMeasured && !m.stopped {
		if m.measured == 0 {
			m.start, _ = measure.ThreadUsage()
			m.empty = 0
		}
		m.measured++
	}
}

func (m *meter) stop() {
	if !m.stopped {
		m.end, _ = measure.ThreadUsage()
		m.stopped = true
	}
}

func (m *meter) report(r *roleRun) *experimentv1.RoleReport {
	rep := r.env.Report()
	rep.Metrics["messages"] = float64(m.measured)
	if m.measured > 0 {
		report.AddUsage(rep, m.end.Sub(m.start), m.measured, "msg")
	}
	if r.v.Mechanism == spin && m.measured > 0 {
		rep.Metrics["empty_recvs_per_msg"] = float64(m.empty) / float64(m.measured)
	}
	return rep
}

// serveEpoll echoes requests on several connections, waiting in
// epoll_wait for the next one.
func (r *roleRun) serveEpoll(ctx context.Context) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(r.o.cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(r.env.Address(), 0), r.o.conns)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	fds, err := acceptAll(ctx, r.env, ln, r.o.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(fds)
	stop := role.ShutdownOnDone(ctx, fds...)
	defer stop()
	if err := r.prepare(fds); err != nil {
		return nil, err
	}
	ep, err := r.newEpoll(fds)
	if err != nil {
		return nil, err
	}
	defer ep.Close()
	buf := make([]byte, r.o.size)
	events := make([]unix.EpollEvent, len(fds))
	var m meter
	for open := len(fds); open > 0; {
		n, err := ep.WaitHot(events)
		if err != nil {
			return nil, role.CtxErr(ctx, err)
		}
		for _, ev := range events[:n] {
			fd := sock.FD(ev.Fd)
			if _, err := sock.ReadFull(fd, buf); err != nil {
				if !errors.Is(err, io.EOF) {
					return nil, role.CtxErr(ctx, fmt.Errorf("busy-poll server: recv: %w", err))
				}
				m.stop()
				if err := ep.Del(fd); err != nil {
					return nil, err
				}
				open--
				continue
			}
			m.request(buf[0])
			if _, err := sock.WriteFull(fd, buf); err != nil {
				return nil, role.CtxErr(ctx, fmt.Errorf("busy-poll server: send: %w", err))
			}
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the EOFs came from our own shutdown
	}
	return r.finish(ctx, m.report(r)), nil
}

// clientEpoll sends each request on the next of several connections and
// waits in epoll_wait for its response.
func (r *roleRun) clientEpoll(ctx context.Context, peer netip.AddrPort) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(r.o.cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r.env.Ready(0)
	fds, err := connectAll(peer, r.o.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(fds)
	stop := role.ShutdownOnDone(ctx, fds...)
	defer stop()
	if err := r.prepare(fds); err != nil {
		return nil, err
	}
	ep, err := r.newEpoll(fds)
	if err != nil {
		return nil, err
	}
	defer ep.Close()
	buf := make([]byte, r.o.size)
	events := make([]unix.EpollEvent, len(fds))
	next := 0
	roundTrip := func() error {
		fd := fds[next]
		next = (next + 1) % len(fds)
		if _, err := sock.WriteFull(fd, buf); err != nil {
			return fmt.Errorf("busy-poll client: send: %w", err)
		}
		for {
			n, err := ep.WaitHot(events)
			if err != nil {
				return err
			}
			// One request is in flight, so only its connection can be
			// ready, unless another one was shut down.
			for _, ev := range events[:n] {
				if sock.FD(ev.Fd) != fd {
					return fmt.Errorf("busy-poll client: connection fd %d became ready with no request in flight (events %#x)", ev.Fd, ev.Events)
				}
			}
			if n > 0 {
				break
			}
		}
		if _, err := sock.ReadFull(fd, buf); err != nil {
			return fmt.Errorf("busy-poll client: recv: %w", err)
		}
		return nil
	}
	rep, err := r.measure(ctx, buf, roundTrip, nil)
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	return r.finish(ctx, rep), nil
}

// serveSpin echoes requests on one non-blocking connection, calling recv
// until it returns data.
func (r *roleRun) serveSpin(ctx context.Context) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(r.o.cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(r.env.Address(), 0), 1)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	fds, err := acceptAll(ctx, r.env, ln, 1)
	if err != nil {
		return nil, err
	}
	defer closeAll(fds)
	fd := fds[0]
	stop := role.ShutdownOnDone(ctx, fd)
	defer stop()
	if err := unix.SetNonblock(int(fd), true); err != nil {
		return nil, fmt.Errorf("busy-poll server: O_NONBLOCK on fd %d: %w", fd, err)
	}
	if err := r.prepare(fds); err != nil {
		return nil, err
	}
	buf := make([]byte, r.o.size)
	var m meter
	for {
		if err := spinRead(fd, buf, &m.empty); err != nil {
			if errors.Is(err, io.EOF) {
				m.stop()
				break
			}
			return nil, role.CtxErr(ctx, fmt.Errorf("busy-poll server: recv: %w", err))
		}
		m.request(buf[0])
		if err := spinWrite(fd, buf); err != nil {
			return nil, role.CtxErr(ctx, fmt.Errorf("busy-poll server: send: %w", err))
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r.finish(ctx, m.report(r)), nil
}

// clientSpin times round trips on one non-blocking connection.
func (r *roleRun) clientSpin(ctx context.Context, peer netip.AddrPort) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(r.o.cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r.env.Ready(0)
	fds, err := connectAll(peer, 1, sock.NonBlock)
	if err != nil {
		return nil, err
	}
	defer closeAll(fds)
	fd := fds[0]
	stop := role.ShutdownOnDone(ctx, fd)
	defer stop()
	if err := r.prepare(fds); err != nil {
		return nil, err
	}
	buf := make([]byte, r.o.size)
	var empty int64
	roundTrip := func() error {
		if err := spinWrite(fd, buf); err != nil {
			return fmt.Errorf("busy-poll client: send: %w", err)
		}
		if err := spinRead(fd, buf, &empty); err != nil {
			return fmt.Errorf("busy-poll client: recv: %w", err)
		}
		return nil
	}
	rep, err := r.measure(ctx, buf, roundTrip, &empty)
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	return r.finish(ctx, rep), nil
}

// spinRead fills buf from a non-blocking socket, retrying every EAGAIN
// (counted in empty).
func spinRead(fd sock.FD, buf []byte, empty *int64) error {
	for off := 0; off < len(buf); {
		n, err := sock.ReadFull(fd, buf[off:])
		off += n
		switch {
		case err == unix.EAGAIN:
			*empty++
		case errors.Is(err, io.EOF) && off > 0:
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
	}
	return nil
}

// spinWrite writes buf to a non-blocking socket, retrying EAGAIN (a full
// send buffer, only for large messages).
func spinWrite(fd sock.FD, buf []byte) error {
	for off := 0; off < len(buf); {
		n, err := sock.WriteFull(fd, buf[off:])
		off += n
		if err != nil && err != unix.EAGAIN {
			return err
		}
	}
	return nil
}

// measure runs the client's warm-up, then times round trips for the
// measured duration, as rr.Client does. empty, when given, counts the
// recv calls that found nothing; it is reported per measured message.
func (r *roleRun) measure(ctx context.Context, buf []byte, roundTrip func() error, empty *int64) (*experimentv1.RoleReport, error) {
	r.env.Progressf("warming up for %v", r.o.warmup)
	buf[0] = phaseWarmup
	for t0 := time.Now(); time.Since(t0) < r.o.warmup; {
		if err := roundTrip(); err != nil {
			return nil, err
		}
	}
	r.env.Progressf("measuring %d-byte round trips for %v (%s)", r.o.size, r.o.duration, r.v)
	buf[0] = phaseMeasured
	if empty != nil {
		*empty = 0
	}
	var h measure.Histogram
	start, _ := measure.ThreadUsage()
	begin := time.Now()
	deadline := begin.Add(r.o.duration)
	n := 0
	for {
		t0 := time.Now()
		if err := roundTrip(); err != nil {
			return nil, err
		}
		t1 := time.Now()
		h.Record(t1.Sub(t0))
		n++
		if !t1.Before(deadline) {
			break
		}
	}
	elapsed := time.Since(begin)
	end, _ := measure.ThreadUsage()
	var emptyMeasured int64
	if empty != nil {
		emptyMeasured = *empty
	}
	buf[0] = phaseEnd
	if err := roundTrip(); err != nil {
		return nil, err
	}
	rep := r.env.Report()
	report.AddLatency(rep, "rtt", &h)
	rep.Metrics["messages"] = float64(n)
	rep.Metrics["msgs_per_s"] = float64(n) / elapsed.Seconds()
	report.AddUsage(rep, end.Sub(start), int64(n), "msg")
	if empty != nil {
		rep.Metrics["empty_recvs_per_msg"] = float64(emptyMeasured) / float64(n)
	}
	return rep, nil
}

// finish adds the node's environment, as rr does for its reports.
func (r *roleRun) finish(ctx context.Context, rep *experimentv1.RoleReport) *experimentv1.RoleReport {
	rep.Environment = report.Node(ctx, r.env.Node, nil)
	rep.Environment.PinnedCpu = int32(r.o.cpu)
	return rep
}
