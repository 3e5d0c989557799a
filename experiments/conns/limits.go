package conns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
)

// Limits is the conn-limits experiment; the zero value is ready to use.
type Limits struct{}

// Scenarios of conn-limits: which limit is brought within reach.
const (
	scenarioNofile   = "nofile"   // the client's RLIMIT_NOFILE lowered
	scenarioPorts    = "ports"    // the client's ephemeral port range narrowed
	scenarioSources  = "sources"  // the same range, more client addresses
	scenarioBacklog  = "backlog"  // the server's somaxconn lowered, nothing accepted
	scenarioDefaults = "defaults" // the nodes' own limits, descriptors out of the way
)

var scenarios = []string{scenarioNofile, scenarioPorts, scenarioSources, scenarioBacklog, scenarioDefaults}

// Limits that refuse a connection, as the result names them.
const (
	limitNofile   = "RLIMIT_NOFILE"
	limitFileMax  = "fs.file-max"
	limitPorts    = "net.ipv4.ip_local_port_range"
	limitBacklog  = "accept backlog (net.core.somaxconn)"
	limitMemory   = "memory"
	limitNone     = "none"
	portRangeBase = 40000 // the narrowed range starts here
)

// classify names the limit behind the error that refused a connection.
func classify(err error) (limit string, errno unix.Errno) {
	var e unix.Errno
	errors.As(err, &e)
	switch {
	case err == nil:
		return limitNone, 0
	case errors.Is(err, errPending):
		return limitBacklog, 0
	case e == unix.EMFILE:
		return limitNofile, e
	case e == unix.ENFILE:
		return limitFileMax, e
	case e == unix.EADDRNOTAVAIL:
		return limitPorts, e
	case e == unix.ENOBUFS || e == unix.ENOMEM:
		return limitMemory, e
	}
	return "unexpected: " + err.Error(), e
}

// expectedLimit is the limit each scenario is built to reach.
var expectedLimit = map[string]string{
	scenarioNofile:  limitNofile,
	scenarioPorts:   limitPorts,
	scenarioSources: limitPorts,
	scenarioBacklog: limitBacklog,
}

// Spec describes conn-limits.
func (Limits) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "conn-limits",
		Summary: "which limit refuses the next TCP connection first, with its errno and the value in force",
		Description: `The client opens connections to one server address and port, one at a time,
until the kernel refuses one or max_conns are open; each scenario brings one
limit within reach, changing it through the role's settings journal (restored
afterwards, also when the run is cancelled):

  nofile    the client's soft RLIMIT_NOFILE lowered to nofile: socket() fails
            with EMFILE. It also shows the ceiling of that limit: setrlimit
            above fs.nr_open fails with EPERM even for root (probed, nothing
            changed).
  ports     the client's net.ipv4.ip_local_port_range narrowed to port_range
            ports (from 40000): connect() fails with EADDRNOTAVAIL once every
            port carries a connection to that server address and port (a
            4-tuple must be unique). connect() walks the even ports, then the
            odd ones, over a count rounded down to even: an odd range may
            leave a port unused.
  sources   the same range plus "sources" more addresses on the client (from
            source_prefix, with a route back on the server), each connection
            bound to one of them with IP_BIND_ADDRESS_NO_PORT: every source
            address has its own ports, so the limit becomes
            (1+sources) x port_range.
  backlog   the server node's net.core.somaxconn lowered to somaxconn; the
            server listens with backlog 4096 (capped to somaxconn) and never
            accepts. The kernel queues somaxconn+1 connections, then drops
            every SYN (TcpExt.ListenOverflows): the next connect gets no
            error, just no answer; after syn_wait it counts as refused.
  defaults  nothing narrowed, and descriptors out of the way: both roles
            spread their connections over threads with descriptor tables
            of their own (RLIMIT_NOFILE bounds each table, not the process),
            so the first limit is the node's: with the default port range,
            EADDRNOTAVAIL after 28,232 connections.

Reported per step: connections open when the limit hit, the limit named and its
errno, the value in force, and the server's evidence (accept queue length and
its limit from sock_diag, TcpExt.ListenOverflows). Connections are closed with
a reset afterwards (SO_LINGER 0), so no TIME_WAIT is left behind.

The client and the server must be on different nodes: RLIMIT_NOFILE belongs to
the agent process, which would starve the server too.`,
		Claims:         []string{"C14"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.conns", "client.limit_value", "client.errno", "server.listen_overflows", "server.accept_queue"},
		Params:         experiments.Declare(limitsDefaults),
	}
}

type limitsParams struct {
	Scenarios    []string      `param:"scenarios" choices:"nofile,ports,sources,backlog,defaults" help:"limits to reach"`
	MaxConns     int           `param:"max_conns" min:"1" max:"100000" help:"stop after this many connections if nothing refuses"`
	Nofile       int           `param:"nofile" min:"64" max:"65536" help:"soft RLIMIT_NOFILE of the client in scenario nofile"`
	PortRange    int           `param:"port_range" min:"2" max:"25000" help:"ephemeral ports of the client in scenarios ports and sources"`
	Sources      int           `param:"sources" min:"1" max:"16" help:"client addresses added in scenario sources"`
	SourcePrefix string        `param:"source_prefix" help:"IPv4 prefix the added client addresses come from (scenario sources); must not overlap the lab's addresses"`
	Somaxconn    int           `param:"somaxconn" min:"1" max:"4096" help:"net.core.somaxconn of the server in scenario backlog"`
	SynWait      time.Duration `param:"syn_wait" min:"10ms" max:"5s" help:"a handshake not complete after this long counts as refused (the first SYN retransmission comes after 1 s)"`
	experiments.Repeats
}

var limitsDefaults = limitsParams{
	Scenarios: scenarios, MaxConns: 30_000, Nofile: 1024, PortRange: 1000, Sources: 3, SourcePrefix: "198.19.248.0/24",
	Somaxconn: 64, SynWait: 250 * time.Millisecond, Repeats: experiments.Repeats{Repeats: 3},
}

// Steps runs every scenario once per repeat, scenarios interleaved.
func (Limits) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	if lab.Node(experiments.Client) == lab.Node(experiments.Server) {
		return nil, fmt.Errorf("conn-limits needs the client and the server on different nodes (both are on %s): RLIMIT_NOFILE belongs to the agent process, whose other role it would starve", lab.Node(experiments.Client))
	}
	c := experiments.As[limitsParams](p)
	roles, err := placeRoles(lab)
	if err != nil {
		return nil, err
	}
	if slices.Contains(c.Scenarios, scenarioSources) {
		pfx, _, err := sourceAddrs(c.SourcePrefix, c.Sources)
		if err != nil {
			return nil, err
		}
		if err := checkOverlap(lab.Plan, pfx); err != nil {
			return nil, err
		}
	}
	var steps []*experimentv1.Step
	for r := range c.Repeats.Repeats {
		for _, sc := range c.Scenarios {
			one := c
			one.Scenarios = []string{sc}
			sp, err := experiments.Set(p, one)
			if err != nil {
				return nil, err
			}
			steps = append(steps, &experimentv1.Step{Variant: sc, Repeat: int32(r), Params: sp.Map(), Roles: roles})
		}
	}
	return steps, nil
}

// sourceAddrs returns the first n host addresses of an IPv4 prefix.
func sourceAddrs(prefix string, n int) (netip.Prefix, []netip.Addr, error) {
	pfx, err := netip.ParsePrefix(prefix)
	if err != nil || !pfx.Addr().Is4() {
		return netip.Prefix{}, nil, fmt.Errorf("parameter source_prefix: want an IPv4 prefix such as 198.19.248.0/24, got %q", prefix)
	}
	pfx = pfx.Masked()
	var out []netip.Addr
	for a := pfx.Addr().Next(); len(out) < n; a = a.Next() {
		if !pfx.Contains(a) {
			return netip.Prefix{}, nil, fmt.Errorf("parameter source_prefix: %s holds fewer than %d host addresses", pfx, n)
		}
		out = append(out, a)
	}
	return pfx, out, nil
}

// checkOverlap refuses a source prefix that overlaps an address or a route
// of the lab: the added addresses would shadow it.
func checkOverlap(plan *topologies.Plan, pfx netip.Prefix) error {
	for _, l := range plan.Links {
		for _, e := range l.Ends {
			for _, a := range e.Addresses {
				if a.Masked().Overlaps(pfx) {
					return fmt.Errorf("parameter source_prefix %s overlaps %s of %s:%s; choose another", pfx, a, e.Node, e.Name)
				}
			}
		}
	}
	for _, n := range plan.Nodes {
		for _, r := range n.Routes {
			if r.Dst.Bits() > 0 && r.Dst.Overlaps(pfx) {
				return fmt.Errorf("parameter source_prefix %s overlaps the route to %s of node %s; choose another", pfx, r.Dst, n.Name)
			}
		}
	}
	return nil
}

// Run runs the server or the client.
func (Limits) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var r *experimentv1.RoleReport
	var err error
	switch env.Role {
	case experiments.Server:
		r, err = limitsServer(ctx, env)
	case experiments.Client:
		r, err = limitsClient(ctx, env)
	default:
		err = fmt.Errorf("conn-limits has no role %q", env.Role)
	}
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	r.Environment = report.Node(ctx, env.Node, []string{"net.ipv4.ip_local_port_range", "net.core.somaxconn"})
	return r, nil
}

// roleAddress is the address a step placed a role at.
func roleAddress(step *experimentv1.Step, role experiments.Role) (netip.Addr, error) {
	for _, r := range step.GetRoles() {
		if r.GetRole() == string(role) {
			return netip.ParseAddr(r.GetAddress())
		}
	}
	return netip.Addr{}, fmt.Errorf("step %s places no %s", step.GetVariant(), role)
}

func limitsServer(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[limitsParams](env.Params)
	sc := p.Scenarios[0]
	switch sc {
	case scenarioBacklog:
		if err := env.Settings.Sysctl("net.core.somaxconn", fmt.Sprint(p.Somaxconn)); err != nil {
			return nil, err
		}
	case scenarioSources:
		// The added client addresses are reached through the client.
		client, err := roleAddress(env.Step, experiments.Client)
		if err != nil {
			return nil, err
		}
		pfx, _, err := sourceAddrs(p.SourcePrefix, p.Sources)
		if err != nil {
			return nil, err
		}
		route := []string{"route", "add", pfx.String(), "via", client.String()}
		undo := []string{"ip", "route", "del", pfx.String(), "via", client.String()}
		if err := runSetting(ctx, env, undo, append([]string{"ip"}, route...)...); err != nil {
			return nil, err
		}
	}
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(env.Address(), 0), 4096, sock.NonBlock)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	local, err := sock.LocalAddr(ln)
	if err != nil {
		return nil, err
	}
	before, err := kstat.ReadNetStat()
	if err != nil {
		return nil, err
	}
	cfd, err := listenControl(ctx, env)
	if err != nil {
		return nil, err
	}
	defer abort(cfd) // see control.go
	if err := send(cfd, message{Op: opHello, Ports: []uint16{local.Port()}}); err != nil {
		return nil, err
	}
	r := env.Report()
	if err := serveLimits(ctx, env, r, cfd, ln, local, before, sc == scenarioBacklog); err != nil {
		_ = send(cfd, message{Op: opFailed, Err: "server: " + err.Error()})
		return nil, err
	}
	return r, nil
}

// serveLimits accepts connections (none with noAccept: scenario backlog)
// until the client stops, then records the server's evidence.
func serveLimits(ctx context.Context, env *experiments.Env, r *experimentv1.RoleReport, cfd, ln sock.FD, local netip.AddrPort, before kstat.NetStat, noAccept bool) error {
	ep, err := sock.NewEpoll()
	if err != nil {
		return err
	}
	defer ep.Close()
	if err := ep.Add(cfd, unix.EPOLLIN); err != nil {
		return err
	}
	if !noAccept {
		if err := ep.Add(ln, unix.EPOLLIN); err != nil {
			return err
		}
	}
	accepted, err := newPool(experiments.As[limitsParams](env.Params).MaxConns, 0, ln)
	if err != nil {
		return err
	}
	defer accepted.close()
	events := make([]unix.EpollEvent, 2)
	for {
		n, err := ep.Wait(events, 100*time.Millisecond)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, ev := range events[:n] {
			if sock.FD(ev.Fd) == ln {
				err := accepted.fill(func() (sock.FD, error) {
					fd, err := sock.Accept(ln, sock.NonBlock)
					if err == unix.EAGAIN {
						return -1, errEnough
					}
					return fd, err
				})
				switch {
				case errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE):
					// The server's own descriptor limit (one process
					// running both roles shares the client's lowered
					// one): the rest stays in the accept queue.
					r.Notes = append(r.Notes, fmt.Sprintf("the server stopped accepting after %d connections: %v", accepted.count(), err))
					err = ep.Del(ln)
				case errors.Is(err, errFull):
					err = ep.Del(ln) // the rest stays in the accept queue
				}
				if err != nil {
					return err
				}
				continue
			}
			m, err := receive(ctx, cfd)
			if err != nil {
				return err
			}
			switch m.Op {
			case opStop:
				if err := serverEvidence(r, local, before, accepted.count()); err != nil {
					return err
				}
				if err := send(cfd, message{Op: opOK}); err != nil {
					return err
				}
			case opDone:
				return nil
			case opFailed:
				return errors.New(m.Err)
			default:
				return fmt.Errorf("control: unexpected %q", m.Op)
			}
		}
	}
}

// serverEvidence records what the server saw once the client stopped: the
// connections it accepted, the listener's accept queue and its limit as
// the kernel reports them, and the SYNs dropped on a full queue.
func serverEvidence(r *experimentv1.RoleReport, local netip.AddrPort, before kstat.NetStat, accepted int) error {
	r.Metrics["accepted"] = float64(accepted)
	after, err := kstat.ReadNetStat()
	if err != nil {
		return err
	}
	d := after.Sub(before)
	r.Metrics["listen_overflows"] = float64(d["TcpExt.ListenOverflows"])
	report.AddEvidence(r, "listen_overflows", float64(d["TcpExt.ListenOverflows"]), "SYNs", "/proc/net/netstat TcpExt.ListenOverflows delta, server's namespace",
		"handshakes dropped because the accept queue was full")
	dg, err := openDiag()
	if err != nil {
		return err
	}
	defer dg.close()
	return dg.dump(stateMask(tcpListen), func(s diagSocket) {
		if s.ID.Local == local {
			r.Metrics["accept_queue"] = float64(s.RQueue)
			report.AddEvidence(r, "accept_queue", float64(s.RQueue), "connections", "sock_diag: the listener's accept queue (sk_ack_backlog)", "")
			report.AddEvidence(r, "accept_backlog_limit", float64(s.WQueue), "connections", "sock_diag: the listener's backlog limit (sk_max_ack_backlog: listen's backlog capped by net.core.somaxconn)", "")
		}
	})
}

func limitsClient(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[limitsParams](env.Params)
	sc := p.Scenarios[0]
	peer, cfd, err := dialControl(env)
	if err != nil {
		return nil, err
	}
	defer abort(cfd) // see control.go
	hello, err := expect(ctx, cfd, opHello)
	if err != nil {
		return nil, err
	}
	if len(hello.Ports) != 1 {
		return nil, fmt.Errorf("control: the server listens on %d ports, want 1", len(hello.Ports))
	}
	r := env.Report()
	fail := func(err error) (*experimentv1.RoleReport, error) {
		_ = send(cfd, message{Op: opFailed, Err: "client: " + err.Error()})
		return nil, err
	}
	// Scenario nofile keeps every connection in one descriptor table,
	// the one the lowered limit bounds; the others spread them over as
	// many tables as max_conns needs, so that descriptors are not the
	// limit they hit.
	per := 0
	if sc == scenarioNofile {
		per = p.MaxConns
	}
	conns, err := newPool(p.MaxConns, per)
	if err != nil {
		return fail(err)
	}
	defer conns.close()
	setup, err := setupClient(ctx, env, sc)
	if err != nil {
		return fail(err)
	}
	if setup.fdsBefore, err = conns.tableFDs(); err != nil {
		return fail(err)
	}
	defer setup.restore()
	dst := netip.AddrPortFrom(peer.Addr(), hello.Ports[0])
	start := time.Now()
	env.Progressf("%s: opening up to %d connections to %v", sc, p.MaxConns, dst)
	opened := 0
	refused := conns.fill(func() (sock.FD, error) {
		if opened == p.MaxConns {
			return -1, errEnough
		}
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		var src netip.Addr
		if len(setup.sources) > 0 {
			src = setup.sources[opened%len(setup.sources)]
		}
		fd, err := dial(ctx, src, dst, p.SynWait)
		if err != nil {
			return -1, err
		}
		opened++
		return fd, nil
	})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if errors.Is(refused, errFull) {
		refused = nil
	}
	if err := setup.restore(); err != nil {
		return fail(err)
	}
	elapsed := time.Since(start)
	env.Progressf("%s: %d connections in %.1f s", sc, opened, elapsed.Seconds())
	setup.report(r, sc, opened, refused, elapsed)
	if _, err := call(ctx, cfd, message{Op: opStop}); err != nil {
		return nil, err
	}
	conns.abort()
	if err := finish(ctx, cfd); err != nil {
		return nil, err
	}
	return r, nil
}

// clientSetup is what a scenario changed on the client and the values in
// force.
type clientSetup struct {
	sources     []netip.Addr // bind each connection to one of these (scenario sources)
	portRange   int          // ephemeral ports of the client's namespace
	nofile      uint64       // soft RLIMIT_NOFILE while connecting
	fdsBefore   int          // descriptors in the connections' table before connecting
	nrOpen      uint64
	nrOpenErrno unix.Errno
	backlog     int            // the server's somaxconn (scenario backlog)
	undo        []func() error // process limits to put back (the journal restores the rest)
}

// restore puts back the process limits; calling it again does nothing.
func (s *clientSetup) restore() error {
	var errs []error
	for i := len(s.undo) - 1; i >= 0; i-- {
		errs = append(errs, s.undo[i]())
	}
	s.undo = nil
	return errors.Join(errs...)
}

// report records what refused the next connection, the limit in force and
// the evidence for it.
func (s *clientSetup) report(r *experimentv1.RoleReport, sc string, opened int, refused error, elapsed time.Duration) {
	// connect() walks the port range for a free port from a hashed
	// offset: to one destination it slows as the range fills.
	r.Metrics["open_per_s"] = float64(opened) / elapsed.Seconds()
	limit, errno := classify(refused)
	value := s.value(limit)
	r.Metrics["conns"] = float64(opened)
	r.Metrics["source_addrs"] = float64(max(1, len(s.sources)))
	r.Metrics["limit_value"] = value
	r.Metrics["errno"] = float64(errno)
	refusal := "nothing refused before max_conns"
	if refused != nil {
		refusal = refused.Error()
	}
	// The limit's name is the evidence's detail: the judge reads it.
	report.AddEvidence(r, "limit", value, limitUnit(limit), "the limit in force for what refused the next connection", limit)
	report.AddEvidence(r, "refusal", float64(errno), errnoName(errno), "errno of the refused call (0: none, the handshake went unanswered)", refusal)
	if sc == scenarioNofile {
		// At EMFILE every descriptor number below the soft limit is
		// taken: the connections plus what their table held before.
		report.AddEvidence(r, "descriptors_before", float64(s.fdsBefore), "descriptors",
			"descriptors in the connections' table before the first (/proc/thread-self/fd of its thread)", fmt.Sprintf("soft RLIMIT_NOFILE %d", s.nofile))
		report.AddEvidence(r, "nr_open_probe", float64(s.nrOpenErrno), errnoName(s.nrOpenErrno),
			"setrlimit(RLIMIT_NOFILE) with the hard limit at fs.nr_open+1 (nothing changed)", fmt.Sprintf("fs.nr_open %d: the ceiling of RLIMIT_NOFILE, even for root", s.nrOpen))
	}
}

// value is the limit in force for what refused.
func (s *clientSetup) value(limit string) float64 {
	switch limit {
	case limitNofile:
		return float64(s.nofile)
	case limitPorts:
		return float64(s.portRange * max(1, len(s.sources)))
	case limitBacklog:
		return float64(s.backlog)
	}
	return 0
}

func limitUnit(limit string) string {
	switch limit {
	case limitNofile:
		return "descriptors"
	case limitPorts:
		return "ports x source addresses"
	case limitBacklog:
		return "connections"
	}
	return ""
}

func errnoName(e unix.Errno) string {
	if e == 0 {
		return ""
	}
	return unix.ErrnoName(e)
}

// setupClient changes what the scenario needs on the client.
func setupClient(ctx context.Context, env *experiments.Env, sc string) (*clientSetup, error) {
	p := experiments.As[limitsParams](env.Params)
	s := &clientSetup{backlog: p.Somaxconn}
	switch sc {
	case scenarioPorts, scenarioSources:
		n := p.PortRange
		if err := env.Settings.Sysctl("net.ipv4.ip_local_port_range", fmt.Sprintf("%d %d", portRangeBase, portRangeBase+n-1)); err != nil {
			return nil, err
		}
		if sc == scenarioSources {
			_, addrs, err := sourceAddrs(p.SourcePrefix, p.Sources)
			if err != nil {
				return nil, err
			}
			dev, err := ifaceOf(env.Address())
			if err != nil {
				return nil, err
			}
			for _, a := range addrs {
				cidr := netip.PrefixFrom(a, 32).String()
				if err := runSetting(ctx, env, []string{"ip", "addr", "del", cidr, "dev", dev}, "ip", "addr", "add", cidr, "dev", dev); err != nil {
					return nil, err
				}
			}
			s.sources = append([]netip.Addr{env.Address()}, addrs...)
		}
	}
	lo, hi, err := localPortRange()
	if err != nil {
		return nil, err
	}
	s.portRange = hi - lo + 1
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		return nil, err
	}
	s.nofile = cur.Cur
	if sc == scenarioNofile {
		if s.nrOpen, err = nrOpen(); err != nil {
			return nil, err
		}
		s.nrOpenErrno = probeNrOpen(cur, s.nrOpen)
		restore, err := lowerNofile(uint64(p.Nofile))
		if err != nil {
			return nil, err
		}
		s.undo = append(s.undo, restore)
		s.nofile = uint64(p.Nofile)
	}
	return s, nil
}

// probeNrOpen asks for a hard RLIMIT_NOFILE one above fs.nr_open, which
// the kernel refuses with EPERM whatever the caller's privileges; should
// it be granted, the limits are put back at once.
func probeNrOpen(cur unix.Rlimit, nrOpen uint64) unix.Errno {
	err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: cur.Cur, Max: nrOpen + 1})
	if err == nil {
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &cur)
		return 0
	}
	var e unix.Errno
	errors.As(err, &e)
	return e
}

// runSetting makes a change through the settings journal. The command
// runs to its end even when the run is cancelled meanwhile: the journal
// records the undo before the command runs, and a command killed halfway
// would leave an undo for a change never made. A cancelled run stops
// right after it.
func runSetting(ctx context.Context, env *experiments.Env, undo []string, argv ...string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := env.Settings.Run(cctx, undo, argv...); err != nil {
		return err
	}
	return ctx.Err()
}

// ifaceOf names the interface that holds addr in this namespace.
func ifaceOf(addr netip.Addr) (string, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("interface of %v: %w", addr, err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no interface holds %v", addr)
}

// Figures: how many connections each limit let through, against the
// limit's value.
func (Limits) Figures() []experiments.Figure {
	return []experiments.Figure{{Kind: experiments.Bars, Title: "Connections before the limit, and the limit",
		Metrics: []string{"client.conns", "client.limit_value"}, YLabel: "connections"}}
}
