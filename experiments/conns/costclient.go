package conns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// client is the client's side of a conn-cost step: it opens and closes the
// connections, drives the server through the control connection and
// takes the snapshots.
type client struct {
	n       int
	variant string
	epoll   bool
	byte    bool
	hold    time.Duration

	server netip.Addr
	ports  []uint16
	ends   *pool    // the client ends
	ids    []sockID // every connection's 4-tuple
	// closed is set once the ends are closed into TIME_WAIT, until the
	// TIME_WAIT sockets are destroyed.
	closed bool

	ep          *sock.Epoll
	diag        *diag
	memcg       *memcg
	serverMemcg string
	lines       []slabLine
	report      *experimentv1.RoleReport
}

func costClient(ctx context.Context, env *experiments.Env, n int, v string, hold time.Duration) (*experimentv1.RoleReport, error) {
	peer, cfd, err := dialControl(env)
	if err != nil {
		return nil, err
	}
	defer abort(cfd) // see control.go
	c := &client{n: n, variant: v, epoll: hasEpoll(v), byte: hasByte(v), hold: hold, server: peer.Addr(), report: env.Report()}
	defer c.cleanup()
	if err := c.run(ctx, env, cfd); err != nil {
		// The server waits on the control connection: tell it why, so
		// that whichever error the run shows names the cause.
		_ = send(cfd, message{Op: opFailed, Err: "client: " + err.Error()})
		return nil, err
	}
	return c.report, nil
}

// cleanup resets the ends still open and destroys TIME_WAIT sockets not
// yet destroyed, so that a failed or cancelled step leaves nothing.
func (c *client) cleanup() {
	c.ends.close()
	if c.closed && c.diag != nil {
		_, _ = c.diag.destroy(c.ids)
	}
	if c.ep != nil {
		c.ep.Close()
	}
	if c.diag != nil {
		c.diag.close()
	}
	c.memcg.Close()
}

func (c *client) run(ctx context.Context, env *experiments.Env, cfd sock.FD) error {
	lo, hi, err := localPortRange()
	if err != nil {
		return err
	}
	hello, err := call(ctx, cfd, message{Op: opHello, PortRange: hi - lo + 1})
	if err != nil {
		return err
	}
	c.ports, c.serverMemcg = hello.Ports, hello.Memcg
	if c.diag, err = openDiag(); err != nil {
		return err
	}
	if c.memcg, err = openMemcg(); err != nil {
		c.note("memory cgroup not read: %v", err)
	} else if !c.memcg.sample().SockValid {
		c.note("memory cgroup %s: socket buffers are not counted (cgroup v1 counts them only once memory.kmem.tcp.limit_in_bytes is set, which cannot be undone)", c.memcg.Path)
	}
	if err := c.resolveSlab(); err != nil {
		return err
	}
	base, err := c.snap(ctx, cfd, phaseBaseline)
	if err != nil {
		return err
	}
	before, _ := kstat.ReadNetStat()

	start := time.Now()
	progress := func(format string, args ...any) {
		env.Progressf("%s (%.1f s)", fmt.Sprintf(format, args...), time.Since(start).Seconds())
	}
	progress("opening %d connections over %d server ports (%s)", c.n, len(c.ports), c.variant)
	if err := send(cfd, message{Op: opOpen}); err != nil {
		return err
	}
	opened := time.Now()
	if err := c.open(ctx); err != nil {
		return err
	}
	c.report.Metrics["open_per_s"] = float64(c.n) / time.Since(opened).Seconds()
	if _, err := expect(ctx, cfd, opOK); err != nil {
		return err
	}
	progress("opened")
	if c.byte {
		// The byte stays in the send queue until the server's ACK.
		if err := waitFor(ctx, settleTimeout, "client bytes acknowledged", func() (bool, error) {
			_, unacked, err := c.count(stateMask(tcpEstablished))
			return unacked == 0, err
		}); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(c.hold):
	}
	c.evidenceEstablished()
	progress("established: snapshot")
	established, err := c.snap(ctx, cfd, phaseEstablished)
	if err != nil {
		return err
	}

	progress("closing the client ends")
	if err := send(cfd, message{Op: opFin}); err != nil {
		return err
	}
	if err := c.closeEnds(); err != nil {
		return err
	}
	// Each end becomes a TIME_WAIT socket (substate FIN_WAIT2) when the
	// server acknowledges its FIN, which may wait for a delayed ACK.
	if err := c.settle(ctx, "client ends in FIN_WAIT2", stateMask(tcpFinWait2, tcpTimeWait)); err != nil {
		return err
	}
	if _, err := expect(ctx, cfd, opOK); err != nil {
		return err
	}
	c.evidenceTimeWait("client_fin_wait2", tcpFinWait2, "sock_diag: client ends as TIME_WAIT sockets in substate FIN_WAIT2")
	closeWait, err := c.snap(ctx, cfd, phaseCloseWait)
	if err != nil {
		return err
	}

	progress("closing the server ends")
	if _, err := call(ctx, cfd, message{Op: opClose}); err != nil {
		return err
	}
	if err := c.settle(ctx, "client ends in TIME_WAIT", stateMask(tcpTimeWait)); err != nil {
		return err
	}
	c.evidenceTimeWait("client_time_wait", tcpTimeWait, "sock_diag: client ends as TIME_WAIT sockets in substate TIME_WAIT")
	timeWait, err := c.snap(ctx, cfd, phaseTimeWait)
	if err != nil {
		return err
	}
	if after, err := kstat.ReadNetStat(); err == nil {
		report.AddEvidence(c.report, "tcp_time_wait_overflow", float64(after.Sub(before)["TcpExt.TCPTimeWaitOverflow"]), "sockets",
			"/proc/net/netstat TcpExt.TCPTimeWaitOverflow, client's namespace", "connections closed without TIME_WAIT: net.ipv4.tcp_max_tw_buckets reached")
	}

	progress("destroying the TIME_WAIT sockets")
	gone, err := c.diag.destroy(c.ids)
	if err != nil {
		return err
	}
	progress("done")
	c.closed = false
	left, _, err := c.count(allStates)
	if err != nil {
		return err
	}
	report.AddEvidence(c.report, "time_wait_destroyed", float64(len(c.ids)-gone), "sockets", "sock_diag SOCK_DESTROY of the step's TIME_WAIT sockets", fmt.Sprintf("%d left", left))
	if err := finish(ctx, cfd); err != nil {
		return err
	}
	c.addMetrics(base, established, closeWait, timeWait)
	return nil
}

// closeEnds closes the client ends, each with a FIN: the active close
// that leaves the TIME_WAIT sockets on the client.
func (c *client) closeEnds() error {
	c.closed = true
	return c.ends.each(func(fds *[]sock.FD) error {
		for len(*fds) > 0 {
			fd := (*fds)[0]
			*fds = (*fds)[1:]
			if err := fd.Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *client) note(format string, args ...any) {
	c.report.Notes = append(c.report.Notes, fmt.Sprintf(format, args...))
}

// resolveSlab finds the slabinfo lines of the connection caches and notes
// what else each line counts.
func (c *client) resolveSlab() error {
	info, err := kstat.ReadSlabInfo()
	if err != nil {
		return fmt.Errorf("slab snapshot: %w", err)
	}
	targets, err := readSlabTargets("/sys/kernel/slab")
	if err != nil {
		c.note("slab merging unknown (/sys/kernel/slab: %v): each line is taken to count its own cache only", err)
	}
	c.lines = resolveLines(info, targets, connCaches)
	for _, l := range c.lines {
		if others := otherAliases(l); len(others) > 0 {
			c.note("slab line %s counts %v, and also %v (SLUB merged them)", l.Name, l.Caches, others)
		}
	}
	return nil
}

// snap takes a snapshot: the server's part first, then the host's slabs,
// the client's namespace and memory cgroup.
func (c *client) snap(ctx context.Context, cfd sock.FD, phase string) (snapshot, error) {
	reply, err := call(ctx, cfd, message{Op: opSnap, Phase: phase})
	if err != nil {
		return snapshot{}, err
	}
	cur := snapshot{Memcg: c.memcg.sample()}
	if cur.Slab, err = kstat.ReadSlabInfo(); err != nil {
		return snapshot{}, fmt.Errorf("slab snapshot: %w", err)
	}
	if cur.SockStat, err = kstat.ReadSockStat(); err != nil {
		return snapshot{}, fmt.Errorf("sockstat snapshot: %w", err)
	}
	// Roles in different cgroups: the server's charges are its own.
	if c.memcg != nil && c.serverMemcg != "" && c.serverMemcg != c.memcg.Path {
		cur.Memcg.Kmem += reply.Kmem
		cur.Memcg.OK = cur.Memcg.OK && reply.KmemOK
	}
	return cur, nil
}

// open connects the step's connections, spread over the server ports.
func (c *client) open(ctx context.Context) error {
	if c.epoll {
		ep, err := sock.NewEpoll()
		if err != nil {
			return err
		}
		c.ep = ep
	}
	// The shards' tables keep the epoll instance.
	var keep []sock.FD
	if c.ep != nil {
		keep = append(keep, c.ep.FD())
	}
	var err error
	if c.ends, err = newPool(c.n, 0, keep...); err != nil {
		return err
	}
	one := []byte{1}
	return c.ends.fill(func() (sock.FD, error) {
		i := len(c.ids)
		if i == c.n {
			return -1, errEnough
		}
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		dst := netip.AddrPortFrom(c.server, c.ports[i%len(c.ports)])
		fd, err := dial(ctx, netip.Addr{}, dst, settleTimeout)
		if err != nil {
			return -1, fmt.Errorf("connection %d of %d: %w", i+1, c.n, err)
		}
		local, err := sock.LocalAddr(fd)
		if err != nil {
			abort(fd)
			return -1, err
		}
		c.ids = append(c.ids, sockID{Local: local, Remote: dst})
		if c.ep != nil {
			if err := c.ep.Add(fd, unix.EPOLLIN); err != nil {
				abort(fd)
				return -1, err
			}
		}
		if c.byte {
			if _, err := sock.Send(fd, one, 0); err != nil {
				abort(fd)
				return -1, fmt.Errorf("connection %d: send the byte: %w", i+1, err)
			}
		}
		return fd, nil
	})
}

// mine reports whether a socket is a client end of this step.
func (c *client) mine(d diagSocket) bool {
	return d.ID.Remote.Addr() == c.server && slices.Contains(c.ports, d.ID.Remote.Port())
}

// count counts the client ends in the given states, and their
// unacknowledged bytes.
func (c *client) count(states uint32) (n int, unacked int64, err error) {
	err = c.diag.dump(states, func(d diagSocket) {
		if c.mine(d) {
			n++
			unacked += int64(d.WQueue)
		}
	})
	return n, unacked, err
}

// settle waits until no client end is in a state outside want.
func (c *client) settle(ctx context.Context, what string, want uint32) error {
	return waitFor(ctx, settleTimeout, what, func() (bool, error) {
		n, _, err := c.count(allStates &^ want)
		return n == 0, err
	})
}

func (c *client) evidenceEstablished() {
	if n, unacked, err := c.count(stateMask(tcpEstablished)); err == nil {
		report.AddEvidence(c.report, "client_established", float64(n), "sockets", "sock_diag: client ends ESTABLISHED", fmt.Sprintf("want %d", c.n))
		report.AddEvidence(c.report, "client_unacked_bytes", float64(unacked), "bytes", "sock_diag: bytes the client ends wait to have acknowledged", "want 0")
	}
	if c.ep != nil {
		if regs, err := epollRegistrations(c.ep); err == nil {
			report.AddEvidence(c.report, "client_epoll_registrations", float64(regs), "", "/proc/thread-self/fdinfo of the client's epoll: tfd lines", "")
		}
	}
}

// evidenceTimeWait counts the client ends that are TIME_WAIT sockets
// (no inode: no descriptor, no full socket) in the given substate.
func (c *client) evidenceTimeWait(name string, substate uint8, source string) {
	n := 0
	err := c.diag.dump(stateMask(substate), func(d diagSocket) {
		if c.mine(d) && d.Inode == 0 {
			n++
		}
	})
	if err == nil {
		report.AddEvidence(c.report, name, float64(n), "sockets", source, fmt.Sprintf("want %d", c.n))
	}
}

// addMetrics records the memory of each snapshot since the baseline, and
// the step's bytes per connection (without a fit: the baseline's drift is
// in them, which the fit across counts removes).
func (c *client) addMetrics(base, established, closeWait, timeWait snapshot) {
	m := c.report.Metrics
	m["conns"] = float64(c.n)
	deltas := map[string]map[string]float64{}
	for phase, s := range map[string]snapshot{phaseEstablished: established, phaseCloseWait: closeWait, phaseTimeWait: timeWait} {
		deltas[phase] = memoryDelta(c.lines, base, s)
		for series, b := range deltas[phase] {
			m[phase+"."+series+"_bytes"] = b
		}
	}
	ends := splitEnds(deltas[phaseEstablished][seriesConnCaches], deltas[phaseCloseWait][seriesConnCaches], deltas[phaseTimeWait][seriesConnCaches])
	n := float64(c.n)
	m["pair_per_conn_bytes"] = ends.Pair / n
	m["server_end_per_conn_bytes"] = ends.ServerEnd / n
	m["client_end_per_conn_bytes"] = ends.ClientEnd / n
	m["time_wait_per_conn_bytes"] = ends.TimeWait / n
	d := timeWait.SockStat.Sub(base.SockStat)
	report.AddEvidence(c.report, "time_wait.sockstat_tcp_tw", float64(d["TCP.tw"]), "sockets", "/proc/net/sockstat TCP tw, change since the baseline, client's namespace (per namespace since Linux 5.19)", "")
}

// ends is what the snapshots say about each side of a connection.
type ends struct {
	Pair      float64 // both ends ESTABLISHED: established - baseline
	ServerEnd float64 // a server end alone: close_wait - time_wait
	ClientEnd float64 // the rest of the pair
	TimeWait  float64 // a TIME_WAIT socket: time_wait - baseline
}

// splitEnds derives the ends from the changes since the baseline at the
// three snapshots. Between close_wait and time_wait only the server ends
// go (the client's TIME_WAIT sockets just change substate), so their
// difference is the server ends, with their descriptors, epoll
// registrations and queued bytes.
func splitEnds(established, closeWait, timeWait float64) ends {
	server := closeWait - timeWait
	return ends{Pair: established, ServerEnd: server, ClientEnd: established - server, TimeWait: timeWait}
}
