// Package conns holds the two experiments about what TCP connections cost
// the kernel. conn-cost (Cost) opens N idle connections between two nodes,
// holds them and closes them into TIME_WAIT, snapshotting kernel memory at
// each step, and fits the bytes per connection across N per slab cache.
// conn-limits (Limits) raises the number of connections until the kernel
// refuses one, and names the limit that refused with its errno and the
// value in force.
package conns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Cost is the conn-cost experiment; the zero value is ready to use.
type Cost struct{}

// Variants of conn-cost: what each connection carries besides itself.
const (
	variantIdle      = "idle"       // connected, nothing else
	variantEpoll     = "epoll"      // each end registered in an epoll instance of its role
	variantByte      = "byte"       // one byte sent by the client, left unread on the server
	variantEpollByte = "epoll+byte" // both
)

var costVariants = []string{variantIdle, variantEpoll, variantByte, variantEpollByte}

func hasEpoll(v string) bool { return v == variantEpoll || v == variantEpollByte }
func hasByte(v string) bool  { return v == variantByte || v == variantEpollByte }

// Phases: the snapshots after the baseline. Each role's metrics are the
// change since the baseline, named "<phase>.<series>_bytes".
const (
	phaseBaseline    = "baseline"
	phaseEstablished = "established" // both ends ESTABLISHED, with descriptors
	phaseCloseWait   = "close_wait"  // client ends closed (TIME_WAIT sockets awaiting the peer's FIN), server ends in CLOSE_WAIT
	phaseTimeWait    = "time_wait"   // server ends freed, client ends in TIME_WAIT
)

// maxConns bounds a step's connections (and the descriptors each role
// holds): the max of the counts and max_conns parameters
// (TestParamBoundsAreMaxConns).
const maxConns = 100_000

// settleTimeout bounds each wait for the kernel to finish a transition.
const settleTimeout = 30 * time.Second

// Spec describes conn-cost.
func (Cost) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "conn-cost",
		Summary: "kernel memory per idle TCP connection, ESTABLISHED and TIME_WAIT, fitted across N",
		Description: `The client opens N TCP connections to the server node, one at a time (spread
over as many server ports as the client's ephemeral port range needs: one
client address reaches one server address and port through at most
net.ipv4.ip_local_port_range ports), the server accepts them all, and both
hold them idle. Then the client closes its ends (active close: the TIME_WAIT
sockets land on the client) and the server closes its own.

Four snapshots of kernel memory are taken while nothing moves: baseline, all
connections ESTABLISHED ("established"), client ends closed and server ends in
CLOSE_WAIT ("close_wait"), server ends freed and client ends in TIME_WAIT
("time_wait"). Each reads /proc/slabinfo (objects in use times object size, per
cache: TCP, request_sock_TCP, tw_sock_TCP, sock_inode_cache, dentry, filp,
eventpoll_epi, eventpoll_pwq, tcp_bind_bucket, tcp_bind2_bucket, the skbuff
caches, and every cache of the host), /proc/net/sockstat (TCP mem: pages
charged to socket buffers) and the role's memory cgroup (kernel memory charged
to it; cgroup v1 counts TCP buffers only once memory.kmem.tcp.limit_in_bytes
is set, which is one-way, so labctl does not). Slab counts are host-wide, so
both ends count, and so does anything else the host does meanwhile: a busy
host shows as a lower R² and a wider spread.

From the snapshots: a connection pair (established - baseline), the server
end alone (close_wait - time_wait: its sockets are the only thing that goes),
the client end (pair - server end) and a TIME_WAIT socket (time_wait -
baseline). Bytes per connection are the slope of a least-squares line across
the counts, per repeat, per slab line; the result reports slope, intercept and
R², and the spread of the slope over repeats.

SLUB merges caches of the same size and flags and shows a merged cache under
one name: on Linux 6.18 x86-64 "eventpoll_epi" also counts tcp_bind_bucket and
tcp_bind2_bucket (so the client end's bind buckets appear there without
epoll), and eventpoll_pwq hides in "anon_vma_chain". Each report notes what
its lines count.

Variants: idle; epoll (every end registered in an epoll instance: one
eventpoll_epi and one eventpoll_pwq per end); byte (the client sends one byte
that the server never reads: an sk_buff stays queued per connection, and TCP
mem grows by most of a page per socket, since socket memory is accounted in
pages); epoll+byte. The default runs idle alone, so that 111,000 connections
per repeat stay within a minute; add the others with
-p variants=idle,epoll,byte,epoll+byte (and 4 repeats or more for the
comparison with idle to reach significance).

Evidence, from the kernel's own sock_diag view of each role's namespace:
connections ESTABLISHED on both sides, unread bytes queued, epoll
registrations (fdinfo of the epoll instance), TIME_WAIT sockets in their
FIN_WAIT2 and TIME_WAIT substates. A step whose connections were not all in
the state its snapshot assumes marks its variant not engaged (for instance
more connections than net.ipv4.tcp_max_tw_buckets: the excess closes without
TIME_WAIT and TcpExt.TCPTimeWaitOverflow counts them).

Expected on Linux 6.x x86-64: an idle end is about 3.6 KB of objects (TCP
~2.3 KB, sock_inode_cache ~0.8 KB, dentry and filp ~0.2 KB each), a client end
about 0.25 KB more for its bind buckets while each has its own port; a
TIME_WAIT socket 256 bytes plus a share of the bind buckets it keeps. The claim
"about 3.3 KB per ESTABLISHED connection, 0.4 KB per TIME_WAIT" is judged on
the idle variant, per socket (half a pair): it holds when every repeat's slope
lies within ±25% of the claimed value and the fits explain the memory (median
R² at least 0.95); repeats on both sides of the band's edge, or a poor fit,
make the verdict inconclusive.

The step's TIME_WAIT sockets are destroyed through sock_diag (SOCK_DESTROY,
CONFIG_INET_DIAG_DESTROY) once measured, so the next step does not start with
sockets expiring under its measurement; a cancelled step resets its
connections instead. A role holding more connections than RLIMIT_NOFILE
allows spreads them over threads with descriptor tables of their own
(unshare CLONE_FILES): the limit bounds each table, and raising it would need
CAP_SYS_RESOURCE and change the whole agent.`,
		Claims: []string{"C13"},
		Roles:  experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{
			"client.pair_per_conn_bytes", "client.server_end_per_conn_bytes", "client.client_end_per_conn_bytes", "client.time_wait_per_conn_bytes",
			"fit.pair.conn_caches_bytes", "fit.pair.conn_caches_r2", "fit.server_end.conn_caches_bytes", "fit.client_end.conn_caches_bytes",
			"fit.time_wait.conn_caches_bytes", "fit.time_wait.conn_caches_r2", "fit.pair.tcp_mem_bytes", "fit.pair.memcg_kmem_bytes",
		},
		Params: experiments.Declare(costDefaults),
	}
}

type costParams struct {
	Counts   []int         `param:"counts" min:"10" max:"100000" help:"connections per step; bytes per connection are fitted across these counts"`
	Variants []string      `param:"variants" choices:"idle,epoll,byte,epoll+byte" help:"what each connection carries"`
	Hold     time.Duration `param:"hold" min:"0s" max:"1m" help:"time the connections stay open before the established snapshot"`
	experiments.Rounds
}

var costDefaults = costParams{
	Counts:   []int{1000, 10000, 30000},
	Variants: []string{variantIdle},
	Hold:     200 * time.Millisecond,
	Rounds:   experiments.Rounds{Repeats: experiments.Repeats{Repeats: 6}, MaxRepeats: 6, Budget: 3 * time.Minute},
}

// Steps runs every variant at every count in each repeat, variants
// interleaved.
func (Cost) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	roles, err := placeRoles(lab)
	if err != nil {
		return nil, err
	}
	c := experiments.As[costParams](p)
	var steps []*experimentv1.Step
	for r := range c.Repeats.Repeats {
		for _, n := range c.Counts {
			for _, v := range c.Variants {
				one := c
				one.Counts, one.Variants = []int{n}, []string{v}
				sp, err := experiments.Set(p, one)
				if err != nil {
					return nil, err
				}
				steps = append(steps, &experimentv1.Step{Variant: costVariant(v, n), Repeat: int32(r), Params: sp.Map(), Roles: roles})
			}
		}
	}
	return steps, nil
}

func costVariant(v string, n int) string { return fmt.Sprintf("%s n=%d", v, n) }

// placeRoles places the server at its address towards the client, and the
// client at its address towards the server.
func placeRoles(lab experiments.Lab) ([]*experimentv1.RoleAssignment, error) {
	place, err := lab.ServerClient()
	if err != nil {
		return nil, err
	}
	client, err := lab.Address(lab.Node(experiments.Server), lab.Node(experiments.Client))
	if err != nil {
		return nil, err
	}
	place[1].Address = client.String()
	return place.Roles(), nil
}

// Run runs the server or the client.
func (Cost) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := experiments.As[costParams](env.Params)
	n, v := p.Counts[0], p.Variants[0]
	var r *experimentv1.RoleReport
	var err error
	switch env.Role {
	case experiments.Server:
		r, err = costServer(ctx, env, n, v)
	case experiments.Client:
		r, err = costClient(ctx, env, n, v, p.Hold)
	default:
		err = fmt.Errorf("conn-cost has no role %q", env.Role)
	}
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	r.Environment = report.Node(ctx, env.Node, []string{"net.ipv4.ip_local_port_range", "net.ipv4.tcp_max_tw_buckets", "net.core.somaxconn"})
	return r, nil
}

// listenControl listens on the role's address and returns the first
// connection, the control connection.
func listenControl(ctx context.Context, env *experiments.Env) (sock.FD, error) {
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(env.Address(), 0), 1)
	if err != nil {
		return -1, err
	}
	defer ln.Close()
	local, err := sock.LocalAddr(ln)
	if err != nil {
		return -1, err
	}
	stop := role.ShutdownOnDone(ctx, ln)
	defer stop()
	env.Ready(int(local.Port()))
	fd, err := sock.Accept(ln)
	if err != nil {
		return -1, fmt.Errorf("control: accept: %w", err)
	}
	return fd, nil
}

// portsFor is how many server ports n connections need from a client whose
// ephemeral range has portRange ports: each server port takes at most half
// the range, so the kernel's search for a free port (which starts at a
// hashed offset and walks the range) stays short.
func portsFor(n, portRange int) (int, error) {
	per := portRange / 2
	if per < 1 {
		return 0, fmt.Errorf("the client's ip_local_port_range has %d ports", portRange)
	}
	p := (n + per - 1) / per
	if p > 256 {
		return 0, fmt.Errorf("%d connections need %d server ports with the client's ip_local_port_range of %d ports; widen it", n, p, portRange)
	}
	return p, nil
}

// server is the server's side of a conn-cost step.
type server struct {
	n         int
	epoll     bool
	byte      bool
	addr      netip.Addr
	listeners []sock.FD
	ports     []uint16
	accepted  *pool // the server ends
	ep        *sock.Epoll
	diag      *diag
	memcg     *memcg
	report    *experimentv1.RoleReport
	base      snapshot // the server's side of the baseline
}

func costServer(ctx context.Context, env *experiments.Env, n int, v string) (*experimentv1.RoleReport, error) {
	cfd, err := listenControl(ctx, env)
	if err != nil {
		return nil, err
	}
	defer abort(cfd) // see control.go
	s := &server{n: n, epoll: hasEpoll(v), byte: hasByte(v), addr: env.Address(), report: env.Report()}
	defer s.cleanup()
	if err := s.serve(ctx, cfd); err != nil {
		_ = send(cfd, message{Op: opFailed, Err: "server: " + err.Error()})
		return nil, err
	}
	return s.report, nil
}

func (s *server) cleanup() {
	// The shards' tables keep the listeners: end them first, so that
	// closing the listeners below releases them.
	s.accepted.close()
	for _, fd := range s.listeners {
		fd.Close()
	}
	if s.ep != nil {
		s.ep.Close()
	}
	if s.diag != nil {
		s.diag.close()
	}
	s.memcg.Close()
}

func (s *server) serve(ctx context.Context, cfd sock.FD) error {
	var err error
	if s.diag, err = openDiag(); err != nil {
		return err
	}
	if s.memcg, err = openMemcg(); err != nil {
		s.report.Notes = append(s.report.Notes, "memory cgroup not read: "+err.Error())
	}
	for {
		m, err := receive(ctx, cfd)
		if err != nil {
			return err
		}
		reply := message{Op: opOK}
		switch m.Op {
		case opFailed:
			return errors.New(m.Err)
		case opHello:
			if reply.Ports, err = s.listen(m.PortRange); err != nil {
				return err
			}
			if s.memcg != nil {
				reply.Memcg = s.memcg.Path
			}
		case opSnap:
			cur := s.snap(m.Phase)
			reply.Kmem, reply.KmemOK = cur.Memcg.Kmem, cur.Memcg.OK
		case opOpen:
			err = s.open(ctx)
		case opFin:
			err = s.fin(ctx)
		case opClose:
			err = s.close(ctx)
		case opDone:
			return nil
		default:
			err = fmt.Errorf("control: unexpected %q", m.Op)
		}
		if err != nil {
			return err
		}
		if err := send(cfd, reply); err != nil {
			return err
		}
	}
}

// listen opens the listeners the connections need.
func (s *server) listen(portRange int) ([]uint16, error) {
	p, err := portsFor(s.n, portRange)
	if err != nil {
		return nil, err
	}
	for range p {
		// The backlog (capped by net.core.somaxconn) absorbs the
		// connections that complete while the server is busy.
		fd, err := sock.Listen(sock.TCP, netip.AddrPortFrom(s.addr, 0), 4096, sock.NonBlock)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, fd)
		local, err := sock.LocalAddr(fd)
		if err != nil {
			return nil, err
		}
		s.ports = append(s.ports, local.Port())
	}
	return s.ports, nil
}

// mine reports whether a socket is a server end of this step.
func (s *server) mine(d diagSocket) bool {
	return d.ID.Local.Addr() == s.addr && slices.Contains(s.ports, d.ID.Local.Port()) && d.State != tcpListen
}

// count counts the server ends in the given states, and their unread bytes.
func (s *server) count(states uint32) (n int, unread int64, err error) {
	err = s.diag.dump(states, func(d diagSocket) {
		if s.mine(d) {
			n++
			unread += int64(d.RQueue)
		}
	})
	return n, unread, err
}

// snap records the server's side of a snapshot: its memory cgroup (for
// the client), its namespace's sockstat and, in the evidence, the state of
// its ends.
func (s *server) snap(phase string) snapshot {
	cur := snapshot{Memcg: s.memcg.sample()}
	cur.SockStat, _ = kstat.ReadSockStat()
	if phase == phaseBaseline {
		s.base = cur
		return cur
	}
	d := cur.SockStat.Sub(s.base.SockStat)
	report.AddEvidence(s.report, phase+".sockstat_tcp_inuse", float64(d["TCP.inuse"]), "sockets",
		"/proc/net/sockstat TCP inuse, change since the baseline, server's namespace", "")
	switch phase {
	case phaseEstablished:
		n, unread, err := s.count(stateMask(tcpEstablished))
		if err == nil {
			report.AddEvidence(s.report, "server_established", float64(n), "sockets", "sock_diag: server ends ESTABLISHED", fmt.Sprintf("want %d", s.n))
			report.AddEvidence(s.report, "server_unread_bytes", float64(unread), "bytes", "sock_diag: bytes queued unread on the server ends", "")
		}
		if s.ep != nil {
			regs, err := epollRegistrations(s.ep)
			if err == nil {
				report.AddEvidence(s.report, "server_epoll_registrations", float64(regs), "", "/proc/thread-self/fdinfo of the server's epoll: tfd lines", "")
			}
		}
	case phaseCloseWait:
		if n, _, err := s.count(stateMask(tcpCloseWait)); err == nil {
			report.AddEvidence(s.report, "server_close_wait", float64(n), "sockets", "sock_diag: server ends in CLOSE_WAIT", fmt.Sprintf("want %d", s.n))
		}
	case phaseTimeWait:
		if n, _, err := s.count(allStates); err == nil {
			report.AddEvidence(s.report, "server_left", float64(n), "sockets", "sock_diag: server ends still in the kernel", "want 0")
		}
	}
	return cur
}

// open accepts the step's connections from all listeners, registers them
// in epoll and waits for their byte, as the variant says.
func (s *server) open(ctx context.Context) error {
	if s.epoll {
		ep, err := sock.NewEpoll()
		if err != nil {
			return err
		}
		s.ep = ep
	}
	// The listeners are watched by an epoll instance of their own, made
	// and closed within this phase, so it is in no snapshot.
	lep, err := sock.NewEpoll()
	if err != nil {
		return err
	}
	defer lep.Close()
	for _, fd := range s.listeners {
		if err := lep.Add(fd, unix.EPOLLIN); err != nil {
			return err
		}
	}
	// The shards' tables keep the epoll instances and listeners made
	// above.
	keep := append([]sock.FD{lep.FD()}, s.listeners...)
	if s.ep != nil {
		keep = append(keep, s.ep.FD())
	}
	if s.accepted, err = newPool(s.n, 0, keep...); err != nil {
		return err
	}
	events := make([]unix.EpollEvent, len(s.listeners))
	deadline := time.Now().Add(settleTimeout + time.Duration(s.n)*time.Millisecond)
	accepted := 0
	err = s.accepted.fill(func() (sock.FD, error) {
		for accepted < s.n {
			for _, ln := range s.listeners {
				fd, err := sock.Accept(ln, sock.NonBlock)
				if err == unix.EAGAIN {
					continue
				}
				if err != nil {
					return -1, err
				}
				if s.ep != nil {
					if err := s.ep.Add(fd, unix.EPOLLIN); err != nil {
						abort(fd)
						return -1, err
					}
				}
				accepted++
				return fd, nil
			}
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			if time.Now().After(deadline) {
				return -1, fmt.Errorf("accepted %d of %d connections", accepted, s.n)
			}
			if _, err := lep.Wait(events, 100*time.Millisecond); err != nil {
				return -1, err
			}
		}
		return -1, errEnough
	})
	if err != nil {
		return err
	}
	if s.byte {
		return s.accepted.each(func(fds *[]sock.FD) error {
			return waitEach(ctx, *fds, unix.POLLIN, "the client's byte")
		})
	}
	return nil
}

// waitEach waits until each descriptor has one of events, without reading.
func waitEach(ctx context.Context, fds []sock.FD, events int16, what string) error {
	deadline := time.Now().Add(settleTimeout)
	pfd := make([]unix.PollFd, 1)
	for _, fd := range fds {
		pfd[0] = unix.PollFd{Fd: int32(fd), Events: events}
		for {
			n, err := unix.Poll(pfd, 50)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return fmt.Errorf("poll fd %d for %s: %w", fd, what, err)
			}
			if n > 0 {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("fd %d: %s did not arrive within %v", fd, what, settleTimeout)
			}
		}
	}
	return nil
}

// fin waits for the client's FIN on every end. Without a byte the server
// reads the end of stream, which frees the FIN's sk_buff, so a CLOSE_WAIT
// end holds what an ESTABLISHED one held; with the byte it reads nothing
// (the FIN folds into the byte's queued sk_buff).
func (s *server) fin(ctx context.Context) error {
	return s.accepted.each(func(fds *[]sock.FD) error {
		if err := waitEach(ctx, *fds, unix.POLLRDHUP, "the client's FIN"); err != nil {
			return err
		}
		if s.byte {
			return nil
		}
		var b [1]byte
		for _, fd := range *fds {
			n, err := sock.Recv(fd, b[:], 0)
			if err != nil || n != 0 {
				return fmt.Errorf("fd %d: want the end of stream, got %d bytes, %v", fd, n, err)
			}
		}
		return nil
	})
}

// close closes the server ends (each sends its FIN, and the kernel frees
// it when the client's TIME_WAIT socket acknowledges) and waits until the
// kernel has freed them all.
func (s *server) close(ctx context.Context) error {
	err := s.accepted.each(func(fds *[]sock.FD) error {
		var b [2]byte
		for len(*fds) > 0 {
			fd := (*fds)[0]
			if s.byte {
				// The byte, then the end of stream: closing with unread
				// data would send a reset and kill the client's TIME_WAIT.
				if n, err := sock.ReadFull(fd, b[:1]); n != 1 || err != nil {
					return fmt.Errorf("fd %d: read the client's byte: %v", fd, err)
				}
				if n, err := sock.Recv(fd, b[:], 0); n != 0 || err != nil {
					return fmt.Errorf("fd %d: want the end of stream, got %d bytes, %v", fd, n, err)
				}
			}
			*fds = (*fds)[1:]
			if err := fd.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return waitFor(ctx, settleTimeout, "server ends freed", func() (bool, error) {
		n, _, err := s.count(allStates)
		return n == 0, err
	})
}

// epollRegistrations counts the descriptors an epoll instance watches, as
// the kernel lists them in its fdinfo (one "tfd:" line each).
func epollRegistrations(ep *sock.Epoll) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/thread-self/fdinfo/%d", ep.FD()))
	if err != nil {
		return 0, err
	}
	return strings.Count(string(b), "\ntfd:"), nil
}

// Figures: the connections' kernel memory over their number with the
// fitted line (its slope is the cost of one pair), the cost per
// connection of each end, and the slab caches it is made of.
func (Cost) Figures() []experiments.Figure {
	return []experiments.Figure{
		{Kind: experiments.Fit, Title: "Kernel memory of the connection caches over open connections",
			Metrics: []string{"client.established.conn_caches_bytes"}, Variants: `^(?P<series>\S+) n=(?P<x>[0-9]+)$`, X: "client.conns",
			XLabel: "open connections", YLabel: "bytes (both ends)"},
		{Kind: experiments.Bars, Title: "Bytes per connection",
			Metrics: []string{"client.pair_per_conn_bytes", "client.client_end_per_conn_bytes", "client.server_end_per_conn_bytes"}, YLabel: "bytes"},
		{Kind: experiments.Bars, Title: "Slab caches of the established connections (totals at each count)",
			Metrics: []string{"client.established.TCP_bytes", "client.established.sock_inode_cache_bytes", "client.established.dentry_bytes",
				"client.established.filp_bytes", "client.established.eventpoll_epi_bytes"}, YLabel: "bytes"},
	}
}
