package labtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/settings"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/topologies/examples"
)

// Netns makes a throw-away network namespace with lo up; it goes away with
// its handle, closed at cleanup, and the threads in it. It is made on a
// goroutine of its own whose thread never returns to the scheduler
// (netns.New moves the calling thread into the new namespace), so no
// failure can hand a switched thread to other goroutines, as a helper that
// switches the test's own thread and back can.
func Netns(t testing.TB) netns.NsHandle {
	t.Helper()
	privtest.Root(t)
	type made struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan made, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		ns, err := netns.New()
		c <- made{ns, err}
	}()
	m := <-c
	if m.err != nil {
		t.Fatalf("new network namespace: %v", m.err)
	}
	t.Cleanup(func() { m.ns.Close() })
	h, err := netlink.NewHandleAt(m.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up in a new namespace: %v", err)
	}
	return m.ns
}

// End is one end of a veth pair: its namespace, name and address (none
// when invalid).
type End struct {
	NS   netns.NsHandle
	Name string
	Addr netip.Prefix
}

// VethPair joins two ends (in one namespace or two) with a veth pair, up,
// with their addresses.
func VethPair(t testing.TB, a, b End) {
	t.Helper()
	h, err := netlink.NewHandleAt(a.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.Name}, PeerName: b.Name, PeerNamespace: netlink.NsFd(b.NS)}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s-%s: %v", a.Name, b.Name, err)
	}
	for _, e := range []End{a, b} {
		h, err := netlink.NewHandleAt(e.NS)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if e.Addr.IsValid() {
			ipnet := &net.IPNet{IP: e.Addr.Addr().AsSlice(), Mask: net.CIDRMask(e.Addr.Bits(), e.Addr.Addr().BitLen())}
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipnet}); err != nil {
				t.Fatalf("%s: add %v: %v", e.Name, e.Addr, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// In runs fn on a thread of its own inside ns (the test's own namespace
// when ns is not open). The thread stays locked when fn returns, so the
// runtime ends it instead of reusing a thread in another namespace.
func In(ns netns.NsHandle, fn func() error) <-chan error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if ns.IsOpen() {
			if err := netns.Set(ns); err != nil {
				done <- err
				return
			}
		}
		done <- fn()
	}()
	return done
}

// RoleOptions say where and how Roles runs a step's roles.
type RoleOptions struct {
	// NS is the namespace of a node; nil runs every role in the test's own.
	NS func(node string) netns.NsHandle
	// Settings are the options of each role's journal (Host, for roles
	// that change host-wide sysctls).
	Settings settings.Options
	// Progress receives the roles' progress lines.
	Progress func(role, msg string)
	// Ready is told when a role is ready, with its port.
	Ready func(role string, port int)
}

// Roles runs the roles of one step of e as runs and the agent do: in the
// step's order, each in its node's namespace, each started once the ones
// before it are ready (their ports known to those after), each with a
// settings journal of its own that is restored when the role ends. It
// returns each role's report and error, by role; a role that ends before
// it is ready ends the step, and the roles after it are not started. Call
// it from the test's goroutine (it fails the test on step parameters that
// do not validate).
func Roles(t testing.TB, ctx context.Context, e experiments.Experiment, step *experimentv1.Step, p experiments.Params, o RoleOptions) (map[string]*experimentv1.RoleReport, map[string]error) {
	t.Helper()
	sp, err := p.With(step.GetParams())
	if err != nil {
		t.Fatalf("step %s: %v", step.GetVariant(), err)
	}
	reports := make(map[string]*experimentv1.RoleReport)
	errs := make(map[string]error)
	type ended struct {
		role   string
		report *experimentv1.RoleReport
		err    error
	}
	var running []<-chan ended
	peers := map[string]netip.AddrPort{}
	// The journals are restored when their roles end and go with Roles,
	// not at the test's end: a test may look for files its roles left.
	dir, err := os.MkdirTemp("", "labtest-journals")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for _, ra := range step.GetRoles() {
		role := ra.GetRole()
		ns := netns.None()
		if o.NS != nil {
			ns = o.NS(ra.GetNode())
		}
		ready := make(chan int, 1)
		env := experiments.NewEnv(t.Name(), ra.GetNode(), experiments.Role(role), step, sp, clonePeers(peers),
			func(port int) { ready <- port },
			func(msg string) {
				if o.Progress != nil {
					o.Progress(role, msg)
				}
			})
		c := make(chan ended, 1)
		done := In(ns, func() error {
			j, err := settings.Open(filepath.Join(dir, role), o.Settings)
			if err != nil {
				c <- ended{role, nil, err}
				return nil
			}
			env.Settings = j
			r, err := e.Run(ctx, env)
			if rerr := j.Restore(); rerr != nil && err == nil {
				err = rerr
			}
			c <- ended{role, r, err}
			return nil
		})
		readied := func(port int) {
			if o.Ready != nil {
				o.Ready(role, port)
			}
			if ra.GetAddress() != "" {
				peers[role] = netip.AddrPortFrom(netip.MustParseAddr(ra.GetAddress()), uint16(port))
			}
		}
		var end ended
		select {
		case port := <-ready:
			readied(port)
			running = append(running, c)
			continue
		case err := <-done:
			if err != nil {
				end = ended{role, nil, fmt.Errorf("into its namespace: %w", err)}
			} else {
				end = <-c
			}
		case end = <-c:
		}
		// It ended; if it was ready first, the roles after it still start.
		select {
		case port := <-ready:
			readied(port)
			fin := make(chan ended, 1)
			fin <- end
			running = append(running, fin)
			continue
		default:
		}
		{
			reports[end.role], errs[end.role] = end.report, end.err
			for _, r := range running {
				end := <-r
				reports[end.role], errs[end.role] = end.report, end.err
			}
			return reports, errs
		}
	}
	for _, r := range running {
		end := <-r
		reports[end.role], errs[end.role] = end.report, end.err
	}
	return reports, errs
}

func clonePeers(m map[string]netip.AddrPort) map[string]netip.AddrPort {
	out := make(map[string]netip.AddrPort, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Named opens the named network namespace (/run/netns/name) for the test,
// closed at cleanup; "" is the test's own namespace (a handle that is not
// open, which In and Roles read as "stay").
func Named(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	if name == "" {
		return netns.None()
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// Example plans the embedded example topology called name, with the roles
// on the nodes given (role -> node), as a run's Steps sees the lab.
func Example(t testing.TB, name string, roles map[string]string) experiments.Lab {
	t.Helper()
	path, data, err := examples.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	top, err := topologies.Decode(path, data)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := top.Plan()
	if err != nil {
		t.Fatal(err)
	}
	return experiments.Lab{Plan: plan, Roles: roles}
}
