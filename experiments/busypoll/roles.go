package busypoll

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// options are the parameters a role reads.
type options struct {
	size, conns, cpu  int
	budget, deferIRQs int
	duration, warmup  time.Duration
	flushTimeout      time.Duration
	napiDevices       []string
	countPolls        bool
}

func optionsOf(p params, role experiments.Role) options {
	cpu := p.ClientCPU
	if role == experiments.Server {
		cpu = p.ServerCPU
	}
	return options{
		size: int(p.Size), conns: p.Connections, cpu: cpu,
		budget: p.Budget, deferIRQs: p.DeferHardIRQs,
		duration: p.Duration, warmup: p.Warmup, flushTimeout: p.GROFlushTimeout,
		napiDevices: splitNames(p.NAPIDevices), countPolls: p.CountNAPIPolls,
	}
}

func splitNames(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// roleRun is one role of one step and what it set up for its variant.
type roleRun struct {
	env   *experiments.Env
	v     variant
	o     options
	iface string
	// macvlan: iface is a macvlan, whose NAPI instance is its lower
	// device's, in the host's namespace.
	macvlan bool
	xdp     *xdpPass
	// socks are duplicates of the role's connected sockets, taken by the
	// socket hook: rr closes its socket before returning, and the
	// evidence (NAPI id, segments received) is read after the last
	// message.
	socks []sock.FD
	// epoll is the epoll instance's busy-poll setting, for EpollParams,
	// and epollSet what the kernel reported back once it was set.
	epoll, epollSet *sock.BusyPollParams
}

// run runs one role: set the variant up, run the data path, collect the
// evidence, take the variant down (the journal restores the settings after
// Run returns; the XDP link is closed here).
func run(ctx context.Context, env *experiments.Env, v variant) (*experimentv1.RoleReport, error) {
	if env.Settings == nil {
		return nil, fmt.Errorf("busy-poll %s: no settings journal: every setting a role changes must be restorable", env.Role)
	}
	r := &roleRun{env: env, v: v, o: optionsOf(experiments.As[params](env.Params), env.Role)}
	defer r.closeSocks()
	var peer netip.AddrPort
	if env.Role == experiments.Client {
		var err error
		if peer, err = env.Peer(experiments.Server); err != nil {
			return nil, err
		}
	}
	err := r.setUp(ctx, peer)
	if r.xdp != nil {
		defer r.xdp.Close()
	}
	// A setup step this kernel or device cannot do: the role reports a
	// note instead of numbers.
	if errors.Is(err, kernel.ErrNotSupported) {
		return r.refuse(ctx, peer, err)
	}
	if err != nil {
		return nil, err
	}
	w, err := r.open()
	if err != nil {
		return nil, err
	}
	defer w.close()
	var rep *experimentv1.RoleReport
	if env.Role == experiments.Server {
		rep, err = r.serve(ctx)
	} else {
		rep, err = r.client(ctx, peer)
	}
	if err != nil {
		return nil, err
	}
	if err := r.evidence(rep, w); err != nil {
		return nil, err
	}
	return rep, nil
}

// setUp finds the role's interface and makes the variant's settings:
// the XDP program, the device's NAPI settings, the host-wide sysctl (the
// server's job: it starts first and ends last, so every socket of the
// step is created while the sysctl is set), and checks that the socket
// options and the epoll ioctl exist.
func (r *roleRun) setUp(ctx context.Context, peer netip.AddrPort) error {
	var err error
	if r.env.Role == experiments.Server {
		r.iface, err = ifaceWithAddr(r.env.Address())
	} else {
		r.iface, err = ifaceTowards(peer.Addr())
	}
	if err != nil {
		return err
	}
	l, err := netlink.LinkByName(r.iface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", r.iface, err)
	}
	r.macvlan = l.Type() == "macvlan"
	if err := r.probe(); err != nil {
		return err
	}
	if want := r.v.Device.TSO(); want != "" {
		if err := r.setOffload(ctx, "tso", want); err != nil {
			return err
		}
	}
	if r.v.Device == vethXDP {
		r.xdp, err = attachXDP(r.iface, l.Attrs().Index)
		if err != nil && xdpUnsupported(err) {
			return kernel.NotSupported(kernel.Feature{Name: "XDP on " + r.iface, Since: kernel.V(4, 19)}, err)
		}
		if err != nil {
			return err
		}
	}
	if r.v.Mechanism == preferBusyPoll {
		for _, s := range r.deviceSettings() {
			if err := r.env.Settings.WriteFile(s.file, s.value); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return kernel.NotSupported(kernel.Feature{Name: "napi_defer_hard_irqs", Since: kernel.V(5, 11)}, err)
				}
				return fmt.Errorf("interface %s: %w", r.iface, err)
			}
		}
	}
	if key := r.v.Mechanism.HostSysctl(); key != "" && r.env.Role == experiments.Server {
		if err := r.env.Settings.HostSysctl(ctx, key, us(r.v.Timeout)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return kernel.NotSupported(kernel.Feature{Name: key + " (CONFIG_NET_RX_BUSY_POLL)"}, err)
			}
			return err
		}
	}
	return nil
}

type deviceSetting struct{ file, value string }

// deviceSettings are the sysfs attributes PreferBusyPoll sets on the
// role's interface (in the agent's own sysfs, which shows its node's
// devices). With both non-zero, a busy poll that ends leaves the NAPI
// instance scheduled with a gro_flush_timeout timer instead of handing it
// back to the device, for napi_defer_hard_irqs rounds; the device raises
// no interrupt (on veth: no NET_RX softirq) meanwhile.
func (r *roleRun) deviceSettings() []deviceSetting {
	dir := "/sys/class/net/" + r.iface + "/"
	return []deviceSetting{
		{dir + "napi_defer_hard_irqs", strconv.Itoa(r.o.deferIRQs)},
		{dir + "gro_flush_timeout", strconv.FormatInt(int64(r.o.flushTimeout), 10)},
	}
}

func us(d time.Duration) string { return strconv.FormatInt(int64(d/time.Microsecond), 10) }

// probe checks, on a socket and an epoll instance of its own, that the
// kernel has what the variant sets, so that a missing option is reported
// as unsupported before any connection exists.
func (r *roleRun) probe() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	defer unix.Close(fd)
	if err := r.setOptions(sock.FD(fd)); err != nil {
		if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) {
			return kernel.NotSupported(kernel.Feature{Name: "the socket options of " + string(r.v.Mechanism) + " (CONFIG_NET_RX_BUSY_POLL)"}, err)
		}
		return err
	}
	if r.v.Mechanism != epollParams {
		return nil
	}
	r.epoll = &sock.BusyPollParams{Timeout: r.v.Timeout}
	ep, err := sock.NewEpoll()
	if err != nil {
		return err
	}
	defer ep.Close()
	if err := ep.SetBusyPollParams(*r.epoll); err != nil {
		return err
	}
	return nil
}

// setOptions sets the variant's socket options on fd.
func (r *roleRun) setOptions(fd sock.FD) error {
	switch r.v.Mechanism {
	case soBusyPoll:
		return sock.SetBusyPoll(fd, r.v.Timeout)
	case soBusyPollBudget:
		if err := sock.SetBusyPoll(fd, r.v.Timeout); err != nil {
			return err
		}
		return sock.SetBusyPollBudget(fd, r.v.Budget)
	case preferBusyPoll:
		if err := sock.SetBusyPoll(fd, r.v.Timeout); err != nil {
			return err
		}
		return sock.SetPreferBusyPoll(fd, true)
	}
	return nil
}

// hook is the rr.SocketHook of the role: the variant's options, and a
// duplicate of the socket kept for the evidence.
func (r *roleRun) hook(fd sock.FD) error {
	if err := r.setOptions(fd); err != nil {
		return err
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("duplicate socket fd %d: %w", fd, err)
	}
	r.socks = append(r.socks, sock.FD(dup))
	return nil
}

func (r *roleRun) closeSocks() {
	for _, fd := range r.socks {
		fd.Close()
	}
	r.socks = nil
}

// ifaceWithAddr is the interface that holds addr in this namespace.
func ifaceWithAddr(addr netip.Addr) (string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return "", fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr.Unmap() {
				return l.Attrs().Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface of this node has address %v", addr)
}

// ifaceTowards is the interface the routing table sends packets to addr
// through.
func ifaceTowards(addr netip.Addr) (string, error) {
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("route to %v: %v", addr, err)
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("interface %d of the route to %v: %w", routes[0].LinkIndex, addr, err)
	}
	return l.Attrs().Name, nil
}
