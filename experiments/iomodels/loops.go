package iomodels

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/uring"
)

// A loop serves requests until the done request; it returns nil then, and
// io.EOF or another error when the connection ends before.
type loop func(m *meter) error

// prepare sets the model up on the session's sockets and returns its loop
// and what to release afterwards; or, when the model cannot run on this
// kernel or with this many descriptors, the reason.
func prepare(s *session, cfg serverConfig) (run loop, cleanup func(), reason string, err error) {
	nothing := func() {}
	nonblock := func() error {
		for _, fd := range s.all() {
			if err := unix.SetNonblock(int(fd), true); err != nil {
				return fmt.Errorf("set O_NONBLOCK on fd %d: %w", fd, err)
			}
		}
		return nil
	}
	switch cfg.Model {
	case blocking:
		h, err := sock.NewHot(s.fd)
		if err != nil {
			return nil, nothing, "", err
		}
		s.hot = &h
		return s.blocking, nothing, "", nil
	case spin:
		return s.spin, nothing, "", nonblock()
	case selectModel:
		var set sock.Select
		for _, fd := range s.all() {
			if err := set.Add(fd); errors.Is(err, sock.ErrSelectLimit) {
				return nil, nothing, fmt.Sprintf("select cannot watch fd %d: its fd_set is a bitmap of FD_SETSIZE (1024) bits, and this step's %d descriptors (with the agent's own) go beyond it; poll and epoll have no such limit",
					fd, len(s.all())), nil
			}
		}
		s.calibrate = func() { s.calibrateWait(func() error { _, err := set.Wait(0); return err }) }
		return func(m *meter) error { return s.selectLoop(&set, m) }, nothing, "", nonblock()
	case poll:
		var p sock.Poll
		for _, fd := range s.all() {
			p.Add(fd, unix.POLLIN)
		}
		s.calibrate = func() { s.calibrateWait(func() error { _, err := p.Wait(0); return err }) }
		return func(m *meter) error { return s.pollLoop(p, m) }, nothing, "", nonblock()
	case epollLT, epollET:
		ep, err := sock.NewEpoll()
		if err != nil {
			return nil, nothing, "", err
		}
		events := uint32(unix.EPOLLIN)
		if cfg.Model == epollET {
			events |= unix.EPOLLET
		}
		for _, fd := range s.all() {
			if err := ep.Add(fd, events); err != nil {
				ep.Close()
				return nil, nothing, "", err
			}
		}
		evs := make([]unix.EpollEvent, 8)
		s.calibrate = func() { s.calibrateWait(func() error { _, err := ep.Wait(evs, 0); return err }) }
		cleanup := func() { ep.Close() }
		if cfg.Model == epollET {
			return func(m *meter) error { return s.epollLoop(ep, evs, true, m) }, cleanup, "", nonblock()
		}
		return func(m *meter) error { return s.epollLoop(ep, evs, false, m) }, cleanup, "", nonblock()
	case uringModel, uringSQPoll:
		return s.prepareUring(cfg)
	}
	return nil, nothing, "", fmt.Errorf("io-models has no model %q", cfg.Model)
}

// blocking: recv sleeps until the request is there.
func (s *session) blocking(m *meter) error {
	for {
		complete, err := s.recv()
		if err != nil {
			return err
		}
		if complete {
			if done, err := s.respond(m); done || err != nil {
				return err
			}
		}
	}
}

// spin: recv on a non-blocking socket, again and again until data comes.
// Every EAGAIN is a system call, and counts. The calls are raw: now and
// then the loop yields, so that a stop-the-world never waits on it for long.
func (s *session) spin(m *meter) error {
	for empty := 0; ; {
		complete, err := s.recv()
		if errors.Is(err, unix.EAGAIN) {
			if empty++; empty%1024 == 0 {
				runtime.Gosched()
			}
			continue
		}
		if err != nil {
			return err
		}
		if complete {
			if done, err := s.respond(m); done || err != nil {
				return err
			}
		}
	}
}

func (s *session) selectLoop(set *sock.Select, m *meter) error {
	for {
		s.n.wait++
		if _, err := set.WaitHot(); err != nil {
			return err
		}
		if !set.Ready(s.fd) {
			for _, fd := range s.idle {
				if set.Ready(fd) {
					return s.idleReady(fd)
				}
			}
			continue
		}
		if done, err := s.readReady(m, false); done || err != nil {
			return err
		}
	}
}

func (s *session) pollLoop(p sock.Poll, m *meter) error {
	for {
		s.n.wait++
		if _, err := p.WaitHot(); err != nil {
			return err
		}
		// p[0] is the active connection (all() lists it first).
		if p[0].Revents == 0 {
			for _, pfd := range p[1:] {
				if pfd.Revents != 0 {
					return s.idleReady(sock.FD(pfd.Fd))
				}
			}
			continue
		}
		if done, err := s.readReady(m, false); done || err != nil {
			return err
		}
	}
}

func (s *session) epollLoop(ep *sock.Epoll, evs []unix.EpollEvent, edge bool, m *meter) error {
	for {
		s.n.wait++
		n, err := ep.WaitHot(evs)
		if err != nil {
			return err
		}
		for _, ev := range evs[:n] {
			if sock.FD(ev.Fd) != s.fd {
				return s.idleReady(sock.FD(ev.Fd))
			}
			if done, err := s.readReady(m, edge); done || err != nil {
				return err
			}
		}
	}
}

// readReady reads from the active socket after a wait reported it readable
// and answers a complete request. Level triggered, one recv is enough: a
// request still incomplete is reported again. Edge triggered, the socket is
// reported once per arrival, so it must be read until EAGAIN, which costs
// one more recv per message.
func (s *session) readReady(m *meter, drain bool) (bool, error) {
	for {
		complete, err := s.recv()
		if errors.Is(err, unix.EAGAIN) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if complete {
			if done, err := s.respond(m); done || err != nil {
				return done, err
			}
		}
		if !drain {
			return false, nil
		}
	}
}

// Bounds of the calibration of an empty readiness check.
const (
	calibrationCalls = 2000
	calibrationTime  = 20 * time.Millisecond
)

// calibrateWait times readiness checks that wait for nothing (timeout 0)
// while no descriptor is ready (the client waits for the answer to its done
// request): the bare cost of one select, poll or epoll_wait over the
// watched descriptors, which is what grows with their number for select and
// poll (C9), without the sleep and wakeup a real wait adds. The result goes
// to the meter's report as wait_ns_per_call.
func (s *session) calibrateWait(check func() error) {
	calls := 0
	t0 := time.Now()
	var elapsed time.Duration
	for calls < calibrationCalls && elapsed < calibrationTime {
		if check() != nil {
			return
		}
		calls++
		elapsed = time.Since(t0)
	}
	s.waitCost = elapsed / time.Duration(calls)
}

// prepareUring sets up the ring; a kernel without io_uring, without RECV
// and SEND, or refusing SQPOLL makes the model unsupported.
func (s *session) prepareUring(cfg serverConfig) (loop, func(), string, error) {
	nothing := func() {}
	var opts []uring.Option
	if cfg.Model == uringSQPoll {
		opts = append(opts, uring.WithSQPoll(cfg.SQIdle))
	}
	before, err := threads()
	if err != nil {
		return nil, nothing, "", err
	}
	ring, err := uring.New(8, opts...)
	if errors.Is(err, uring.ErrUnavailable) || errors.Is(err, kernel.ErrNotSupported) {
		return nil, nothing, err.Error(), nil
	}
	if err != nil {
		return nil, nothing, "", err
	}
	cleanup := func() { ring.Close() }
	probe, err := ring.Probe()
	if err == nil {
		err = probe.Require(uring.OpRecv, uring.OpSend)
	}
	if errors.Is(err, kernel.ErrNotSupported) {
		return nil, cleanup, err.Error(), nil
	}
	if err != nil {
		return nil, cleanup, "", err
	}
	sqTID := 0
	if cfg.Model == uringSQPoll {
		if sqTID, err = findSQPollThread(before); err != nil {
			return nil, cleanup, "", err
		}
	}
	// The ring's waits and the socket's own calls (the first response)
	// raw, as every model's.
	if !ring.SetHot() {
		s.notes = append(s.notes, "io_uring_enter takes no timeout on this kernel (IORING_FEAT_EXT_ARG, Linux 5.11): its waits go through Go's scheduler, unlike the other models' raw calls")
	}
	h, err := sock.NewHot(s.fd)
	if err != nil {
		return nil, cleanup, "", err
	}
	s.hot = &h
	return func(m *meter) error { return s.uringLoop(ring, sqTID, m) }, cleanup, "", nil
}

// userData tags of the two requests a uring loop keeps in flight.
const (
	opRecv = 1
	opSend = 2
)

// uringLoop keeps a RECV of the next request in flight while it sends each
// response: one io_uring_enter submits the SEND and the next RECV and waits
// for both to complete (the SEND at once, the RECV when the next request
// arrives), so a message costs one system call. With SQPOLL the kernel
// thread picks the requests up by itself; Submit enters the kernel only to
// wake it (counted as wakeups), and the wait is its own enter.
//
// The response goes out of its own buffer: the kernel reads it while the
// next request is being received into the request buffer.
func (s *session) uringLoop(ring *uring.Ring, sqTID int, m *meter) error {
	m.sqTID = sqTID
	m.counts = func() counts {
		c := s.n
		c.enter = int64(ring.Enters())
		return c
	}
	inflight := uint32(0)
	recv := func() error {
		inflight++
		return ring.PrepRecv(int(s.fd), s.req[s.got:], 0, opRecv)
	}
	send := func(from int) error {
		inflight++
		return ring.PrepSend(int(s.fd), s.resp[from:], 0, opSend)
	}
	if err := recv(); err != nil {
		return err
	}
	sent, done := s.size, false // the first response went out during setup
	for {
		if sqTID != 0 {
			before := ring.Enters()
			if _, err := ring.Submit(); err != nil {
				return err
			}
			s.n.wakeup += int64(ring.Enters() - before)
		}
		if _, err := ring.SubmitAndWait(inflight); err != nil {
			return err
		}
		for c := ring.PeekCQE(); c != nil; c = ring.PeekCQE() {
			op, res, cerr := c.UserData, c.Res, c.Err()
			ring.SeenCQE()
			inflight--
			if cerr != nil {
				return fmt.Errorf("io_uring %s on fd %d: %w", opName(op), s.fd, cerr)
			}
			switch op {
			case opSend:
				if sent += int(res); sent < s.size {
					if err := send(sent); err != nil {
						return err
					}
				}
			case opRecv:
				if res == 0 {
					return io.EOF
				}
				if s.proto == protoUDP && int(res) != s.size {
					return fmt.Errorf("datagram of %d bytes, expected %d", res, s.size)
				}
				if s.got += int(res); s.got < s.size {
					if err := recv(); err != nil {
						return err
					}
					continue
				}
				s.got = 0
				copy(s.resp, s.req)
				done = m.message(s.req[0])
				sent = 0
				if err := send(0); err != nil {
					return err
				}
				if !done {
					if err := recv(); err != nil {
						return err
					}
				}
			}
		}
		if done && inflight == 0 {
			return nil
		}
	}
}

func opName(op uint64) string {
	if op == opSend {
		return "SEND"
	}
	return "RECV"
}
