package iomodels

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// serverConfig is what the server role needs from the step.
type serverConfig struct {
	variant
	Size          int
	CPU           int
	SQIdle        time.Duration
	CountSyscalls bool
}

// session is the server's side of one step: the active socket, the idle
// connections it watches too, the request being read and the response.
type session struct {
	ctx   context.Context
	proto string
	fd    sock.FD   // the active connection, or the connected UDP socket
	hot   *sock.Hot // fd as a hot socket, for the blocking models (nil: fd is non-blocking)
	idle  []sock.FD // idle TCP connections (multiplexing models)
	size  int
	req   []byte
	resp  []byte
	got   int // bytes of the current request read so far
	n     counts
	// calibrate measures the cost of one empty readiness check once the
	// done request has arrived (multiplexing models; nil otherwise) and
	// leaves it in waitCost.
	calibrate func()
	waitCost  time.Duration
	notes     []string // for the report: how the model ran
}

func (s *session) counts() counts { return s.n }

// all lists every socket of the session.
func (s *session) all() []sock.FD { return append([]sock.FD{s.fd}, s.idle...) }

func (s *session) close() {
	for _, fd := range s.all() {
		fd.Close()
	}
}

// recv makes one recv(2) into the rest of the request and reports whether
// the request is complete. It returns unix.EAGAIN bare from a non-blocking
// socket with nothing queued, and io.EOF when the peer shut down (or a
// cancelled run shut the socket down). Every model's calls are raw, as rr's
// are (sock.Hot): the models differ only in how they wait.
func (s *session) recv() (bool, error) {
	s.n.recv++
	var n int
	var err error
	if s.hot != nil {
		n, err = s.hot.Recv(s.req[s.got:])
	} else {
		n, err = sock.RecvRaw(s.fd, s.req[s.got:], 0)
	}
	switch {
	case err != nil:
		return false, err
	case n == 0:
		return false, io.EOF
	case s.proto == protoUDP && n != s.size:
		return false, fmt.Errorf("datagram of %d bytes, expected %d", n, s.size)
	}
	s.got += n
	return s.got == s.size, nil
}

// respond handles a complete request: the meter accounts for it, the
// response echoes it. A non-blocking socket whose send buffer is full waits
// for room with poll(2), counted as a wait. It reports whether the request
// was the last.
func (s *session) respond(m *meter) (bool, error) {
	s.got = 0
	copy(s.resp, s.req)
	done := m.message(s.req[0])
	if done && s.calibrate != nil {
		s.calibrate()
	}
	for sent := 0; sent < s.size; {
		s.n.send++
		var n int
		var err error
		if s.hot != nil {
			n, err = s.hot.Send(s.resp[sent:])
		} else {
			n, err = sock.SendRaw(s.fd, s.resp[sent:], 0)
		}
		if errors.Is(err, unix.EAGAIN) {
			s.n.wait++
			pfd := sock.Poll{{Fd: int32(s.fd), Events: unix.POLLOUT}}
			if _, err := pfd.WaitHot(); err != nil {
				return false, err
			}
			continue
		}
		if err != nil {
			return false, err
		}
		sent += n
	}
	return done, nil
}

// idleReady is the error of a loop woken by an idle connection: the peer
// closed it, or the run was cancelled and shut every socket down.
func (s *session) idleReady(fd sock.FD) error {
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	return fmt.Errorf("idle connection fd %d became readable: the client closed it early", fd)
}

// serve runs the server role: it accepts the client (and its idle
// connections), reads the first request, answers declined if the model
// cannot run here, and otherwise serves requests with the model until the
// client's done request.
func serve(ctx context.Context, env *experiments.Env, cfg serverConfig) (*experimentv1.RoleReport, error) {
	if cfg.Model == netConn {
		return serveNetConn(ctx, env, cfg)
	}
	unlock, err := role.LockThread(cfg.CPU)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s, err := open(ctx, env, cfg)
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	defer s.close()
	stop := role.ShutdownOnDone(ctx, s.all()...)
	defer stop()

	r := env.Report()
	report.AddEvidence(r, "watched_descriptors", float64(1+len(s.idle)), "fds", "the server's own count",
		"descriptors the server's wait watches: the active connection and the idle ones")
	loop, cleanup, reason, err := prepare(s, cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if reason != "" {
		// Answer the first request with the declined marker, so the client
		// stops and reports why instead of the step failing.
		s.req[0] = phaseDeclined
		if _, err := s.respond(&meter{}); err != nil {
			return nil, role.CtxErr(ctx, fmt.Errorf("io-models server: decline: %w", err))
		}
		r.Notes = append(r.Notes, "unsupported: "+reason)
		report.AddEvidence(r, "supported", 0, "", string(cfg.Model), reason)
		return finish(ctx, r, env.Node, cfg.CPU)
	}
	report.AddEvidence(r, "supported", 1, "", string(cfg.Model), "the server served this model")
	r.Notes = append(r.Notes, s.notes...)
	m := &meter{counts: s.counts}
	if cfg.CountSyscalls {
		sys, err := openProcessSyscalls()
		if err != nil {
			r.Notes = append(r.Notes, "process system calls not counted: "+err.Error())
		} else {
			defer sys.Close()
			m.sys = sys
		}
	}
	// The first request was read during setup (always a warm-up one).
	if _, err := s.respond(m); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("io-models server: send: %w", err))
	}
	if err := loop(m); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("io-models server (%s): %w", cfg.Model, err))
	}
	m.report(r)
	if s.waitCost > 0 {
		r.Metrics["wait_ns_per_call"] = float64(s.waitCost)
		report.AddEvidence(r, "wait_ns_per_call", float64(s.waitCost), "ns",
			fmt.Sprintf("%s with timeout 0 over %d descriptors, none ready, timed on the server", cfg.Model, 1+len(s.idle)),
			"the bare cost of one readiness check, without sleep and wakeup")
	}
	return finish(ctx, r, env.Node, cfg.CPU)
}

// open listens, accepts the client and reads its first request.
func open(ctx context.Context, env *experiments.Env, cfg serverConfig) (*session, error) {
	s := &session{ctx: ctx, proto: cfg.Proto, size: cfg.Size, req: make([]byte, cfg.Size), resp: make([]byte, cfg.Size)}
	network := sock.Network(cfg.Proto)
	if cfg.Idle > 0 {
		if err := raiseNoFile(cfg.Idle); err != nil {
			return nil, err
		}
	}
	ln, err := sock.Listen(network, netip.AddrPortFrom(env.Address(), 0), cfg.Idle+1)
	if err != nil {
		return nil, err
	}
	local, err := sock.LocalAddr(ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if network == sock.UDP {
		stop := role.ShutdownOnDone(ctx, ln)
		defer stop()
		env.Ready(int(local.Port()))
		s.fd = ln
		n, peer, err := sock.RecvFrom(ln, s.req, 0)
		switch {
		case err != nil:
		case n == 0:
			err = io.EOF
		case n != cfg.Size:
			err = fmt.Errorf("first datagram has %d bytes, expected %d", n, cfg.Size)
		default:
			// Connected, the socket takes recv and send like a TCP one,
			// which every model (io_uring's RECV included) can use.
			err = connectUDP(ln, peer)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("io-models server: first request: %w", err)
		}
		return s, nil
	}
	defer ln.Close()
	stop := role.ShutdownOnDone(ctx, ln)
	env.Ready(int(local.Port()))
	if cfg.Idle > 0 {
		env.Progressf("accepting %d idle connections and the active one", cfg.Idle)
	}
	conns := make([]sock.FD, 0, cfg.Idle+1)
	for len(conns) < cfg.Idle+1 {
		fd, err := sock.Accept(ln)
		if err != nil {
			stop()
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("io-models server: accept connection %d of %d: %w", len(conns)+1, cfg.Idle+1, err)
		}
		conns = append(conns, fd)
	}
	stop()
	active, err := firstReadable(ctx, conns)
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return nil, err
	}
	s.fd = conns[active]
	s.idle = append(conns[:active:active], conns[active+1:]...)
	if err := sock.SetNoDelay(s.fd, true); err != nil {
		s.close()
		return nil, err
	}
	stop = role.ShutdownOnDone(ctx, s.fd)
	defer stop()
	if _, err := sock.ReadFull(s.fd, s.req); err != nil {
		s.close()
		return nil, fmt.Errorf("io-models server: first request: %w", err)
	}
	return s, nil
}

// firstReadable finds the active connection among the accepted ones: the
// one the client's first request arrives on. (Accept order follows connect
// order only as long as the handshakes complete in order.)
func firstReadable(ctx context.Context, conns []sock.FD) (int, error) {
	if len(conns) == 1 {
		return 0, nil
	}
	stop := role.ShutdownOnDone(ctx, conns...)
	defer stop()
	var p sock.Poll
	for _, fd := range conns {
		p.Add(fd, unix.POLLIN)
	}
	if _, err := p.Wait(-1); err != nil {
		return 0, err
	}
	for i, pfd := range p {
		if pfd.Revents != 0 {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return i, nil
		}
	}
	return 0, fmt.Errorf("poll over %d connections returned none ready", len(conns))
}

func connectUDP(fd sock.FD, peer netip.AddrPort) error {
	var sa unix.Sockaddr
	if peer.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(peer.Port()), Addr: peer.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(peer.Port()), Addr: peer.Addr().As16()}
	}
	if err := unix.Connect(int(fd), sa); err != nil {
		return fmt.Errorf("connect UDP fd %d to %v: %w", fd, peer, err)
	}
	return nil
}

// raiseNoFile makes room for idle more descriptors in this process. Go
// raises the soft RLIMIT_NOFILE to the hard one at start, so this only acts
// when the hard limit is too low: then it raises both, which root may do up
// to fs.nr_open. The raised limit stays: it only permits more, and lowering
// it under another role that holds many descriptors would break that role.
func raiseNoFile(idle int) error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("count open descriptors: %w", err)
	}
	// The open ones, the idle connections, the active one and the
	// listener, with room for what the agent opens meanwhile.
	need := uint64(len(fds) + idle + 64)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	want := unix.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("%d idle connections need RLIMIT_NOFILE %d, the limit is %d (hard %d) and raising it failed: %w",
			idle, need, lim.Cur, lim.Max, err)
	}
	return nil
}

// finish adds the node's environment to a report.
func finish(ctx context.Context, r *experimentv1.RoleReport, node string, cpu int) (*experimentv1.RoleReport, error) {
	r.Environment = report.Node(ctx, node, nil)
	r.Environment.PinnedCpu = int32(cpu)
	return r, nil
}
