package netns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/netns/cni"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/traces"
)

var tracer = otel.Tracer("github.com/labctl/labctl/netns")

// Span attributes.
const (
	attrLab  = attribute.Key("labctl.lab")
	attrNode = attribute.Key("labctl.node")
	attrLink = attribute.Key("labctl.link")
)

// Options tune Apply, Destroy and Observe.
type Options struct {
	// Journal records every change; Apply requires it, Destroy uses it
	// when it is set.
	Journal *Journal
	// Progress, when set, is told about every finished object. It is
	// called from one goroutine at a time.
	Progress func(Progress)
	// Workers bounds how many objects are worked on at once; 0 means
	// DefaultWorkers.
	Workers int
	// CNI runs the plugins of the lab's cni links. Apply needs it for a
	// plan that has any; Destroy without it leaves what the plugins made
	// to die with the lab's namespaces (their state files are the
	// caller's to remove).
	CNI *cni.Runner
}

// DefaultWorkers is the concurrency used when Options.Workers is 0. Most of
// the kernel's work on links runs under the RTNL mutex, so up hardly
// depends on it (linear,1000 on 2 CPUs: 3.4 to 4.2 s for 1 to 16 workers,
// within the noise), while down overlaps the RCU grace periods that each
// unmount waits for (0.61 s with 1 worker, 0.38 s with 8, 0.35 s with 16).
const DefaultWorkers = 8

// Progress reports one finished object.
type Progress struct {
	// Phase is one of recover, remove, namespaces, bridges, links, wires
	// (links between bridges), carrier (waiting for links to come up),
	// nodes, rollback, destroy.
	Phase  string
	Done   int
	Total  int
	Object string
}

// applier carries what one Apply or Destroy shares between its workers.
type applier struct {
	lab     string
	j       *Journal // nil for a Destroy without journal
	ns      *nsCache
	workers int
	cni     *cni.Runner

	progressMu sync.Mutex
	progressFn func(Progress)

	rootOnce sync.Once
	root     *netlink.Handle
	rootFd   int
	rootErr  error

	mu      sync.Mutex
	created []Object       // begun by this Apply, in order: what a rollback undoes
	gone    []string       // what Destroy removed, for its Change
	bridges map[string]int // bridge name -> ifindex in the fabric
}

func newApplier(lab string, opt Options) *applier {
	w := opt.Workers
	if w <= 0 {
		w = DefaultWorkers
	}
	return &applier{
		lab:        lab,
		j:          opt.Journal,
		ns:         newNSCache(),
		workers:    w,
		cni:        opt.CNI,
		progressFn: opt.Progress,
		bridges:    map[string]int{},
	}
}

func (a *applier) close() {
	a.ns.close()
	if a.root != nil {
		a.root.Close()
		unix.Close(a.rootFd)
	}
}

// rootNS returns a netlink handle in, and a descriptor of, labctl's own
// namespace, where host interfaces live. Both are made on a thread that is
// not locked, and every such thread is in the process's namespace.
func (a *applier) rootNS() (*netlink.Handle, int, error) {
	a.rootOnce.Do(func() {
		fd, err := unix.Open(threadNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			a.rootErr = fmt.Errorf("host namespace: %w", err)
			return
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			unix.Close(fd)
			a.rootErr = fmt.Errorf("host namespace: netlink: %w", err)
			return
		}
		a.root, a.rootFd = h, fd
	})
	return a.root, a.rootFd, a.rootErr
}

// removed notes something Destroy took away.
func (a *applier) removed(what string) {
	a.mu.Lock()
	a.gone = append(a.gone, what)
	a.mu.Unlock()
}

// record appends to the journal, if there is one.
func (a *applier) record(op string, o Object) error {
	if a.j == nil {
		return nil
	}
	return a.j.Append(Record{Op: op, Object: o})
}

// begin records that o is about to be created, and remembers it for a
// rollback.
func (a *applier) begin(o Object) error {
	if err := a.record(OpBegin, o); err != nil {
		return err
	}
	a.mu.Lock()
	a.created = append(a.created, o)
	a.mu.Unlock()
	return nil
}

// notMade wraps an error after which the kernel holds nothing of the object
// being made: the create request itself failed, or was never sent.
type notMade struct{ error }

func (e notMade) Unwrap() error { return e.error }

// failed handles err from making o: if nothing was made, o is forgotten,
// so that a rollback does not delete what was in the way (an interface or
// namespace with the same name that is not this Apply's).
func (a *applier) failed(o Object, err error) error {
	var nm notMade
	if !errors.As(err, &nm) {
		return err
	}
	a.mu.Lock()
	a.created = slices.DeleteFunc(a.created, func(c Object) bool { return c.key() == o.key() })
	a.mu.Unlock()
	return errors.Join(err, a.record(OpGone, o))
}

// phase runs fn for every object with at most a.workers at once, and stops
// starting new ones after the first error, which it returns. Progress is
// reported under name, unless name is empty.
func (a *applier) phase(ctx context.Context, name string, objs []Object, fn func(context.Context, Object) error) error {
	if len(objs) == 0 {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.workers)
	done := 0
	for _, o := range objs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			if err := fn(gctx, o); err != nil {
				return err
			}
			if a.progressFn != nil && name != "" {
				a.progressMu.Lock()
				done++
				a.progressFn(Progress{Phase: name, Done: done, Total: len(objs), Object: o.String()})
				a.progressMu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// The caller's own cancellation, if it stopped the loop early.
	return ctx.Err()
}

// Apply makes next real; prev is the plan that is live now (nil for a new
// lab). The journal is the authority on what exists: first, objects that an
// interrupted run left half made are deleted; then next is compared with
// what the journal says is finished, so that a second Apply of the same
// plan changes nothing, and one after a failure or a kill picks up from
// where the kernel really is. prev is only used when the journal knows
// nothing (its state directory was lost).
//
// Removed and changed objects are deleted first, then namespaces, bridges,
// links and the nodes' settings are made, each phase concurrently. If
// anything fails, everything this Apply created is deleted again, in
// reverse, and the error says what failed.
func Apply(ctx context.Context, prev, next *topologies.Plan, opt Options) (_ Change, err error) {
	if next == nil {
		return Change{}, errors.New("apply: no plan")
	}
	if opt.Journal == nil {
		return Change{}, fmt.Errorf("lab %s: apply needs a journal", next.Lab)
	}
	if prev != nil && prev.Lab != next.Lab {
		return Change{}, fmt.Errorf("lab %s: the live plan is of lab %s", next.Lab, prev.Lab)
	}
	ctx, span := tracer.Start(ctx, "netns.apply", trace.WithAttributes(attrLab.String(next.Lab)))
	defer func() { endSpan(span, err) }()

	a := newApplier(next.Lab, opt)
	defer a.close()

	if dirty := opt.Journal.objects(OpBegin); len(dirty) > 0 {
		if err := a.undo(ctx, "recover", dirty); err != nil {
			return Change{}, fmt.Errorf("lab %s: clean up after an interrupted run: %w", next.Lab, err)
		}
	}
	live := opt.Journal.livePlan(next.Lab)
	if opt.Journal.empty() && prev != nil {
		live = prev
	}
	d := computeDelta(live, next)
	ch := d.change()
	if !ch.Changed() {
		return ch, nil
	}
	if err := checkHost(a.ns, next, d.create); err != nil {
		return Change{}, err
	}
	if err := a.checkCNI(ctx, d.create); err != nil {
		return Change{}, err
	}
	if err := a.undo(ctx, "remove", d.remove); err != nil {
		return Change{}, fmt.Errorf("lab %s: remove: %w", next.Lab, err)
	}
	if err := a.build(ctx, next, d); err != nil {
		err = fmt.Errorf("lab %s: %w", next.Lab, err)
		a.mu.Lock()
		made := slices.Clone(a.created)
		a.mu.Unlock()
		// Roll back even if ctx was cancelled: stopping halfway is what
		// the rollback exists to repair.
		if rerr := a.undo(context.WithoutCancel(ctx), "rollback", made); rerr != nil {
			return Change{}, errors.Join(err, fmt.Errorf("lab %s: rollback: %w", next.Lab, rerr))
		}
		return Change{}, fmt.Errorf("%w (rolled back)", err)
	}
	return ch, nil
}

// build creates d.create and reconfigures d.reconfigure.
func (a *applier) build(ctx context.Context, plan *topologies.Plan, d delta) error {
	var spaces, bridges, links, wires, nodes, attachments []Object
	for _, o := range d.create {
		switch o.Kind {
		case KindNode:
			spaces = append(spaces, o)
			nodes = append(nodes, o)
		case KindFabric:
			spaces = append(spaces, o)
		case KindBridge:
			bridges = append(bridges, o)
		case KindLink:
			if isWire(o.Link, plan.Fabric) {
				wires = append(wires, o)
			} else {
				links = append(links, o)
			}
		case KindCNI:
			attachments = append(attachments, o)
		}
	}
	fresh := len(nodes)
	for _, name := range d.reconfigure {
		n, _ := plan.Node(name)
		nodes = append(nodes, Object{Kind: KindNode, Name: n.Name, Namespace: n.Namespace, Node: n})
	}
	if err := a.phase(ctx, "namespaces", spaces, a.createSpace); err != nil {
		return err
	}
	if err := a.phase(ctx, "bridges", bridges, a.createBridge); err != nil {
		return err
	}
	if err := a.phase(ctx, "links", links, a.createLink); err != nil {
		return err
	}
	// Wires between bridges come last. Until then each bridge is a small
	// broadcast domain, and the multicast a node sends when its interface
	// comes up (MLD reports for its addresses' solicited-node groups)
	// floods only its own bridge; in a chain of N bridges wired first,
	// every node's reports would cross all N bridges into all N nodes, and
	// up would take time quadratic in N.
	if err := a.phase(ctx, "wires", wires, a.createLink); err != nil {
		return err
	}
	// Before the nodes' commands run, and before up returns, the new
	// links carry traffic (see carrierTimeout).
	if err := a.waitUp(ctx, plan, slices.Concat(bridges, links, wires)); err != nil {
		return err
	}
	// Attachments after the links (a list's plugins may use them: a
	// macvlan's master, the host node's uplink) and before the nodes'
	// routes, which may go through them.
	if err := a.phase(ctx, "cni", attachments, a.attach); err != nil {
		return err
	}
	freshNodes := map[string]bool{}
	for _, o := range nodes[:fresh] {
		freshNodes[o.Name] = true
	}
	return a.phase(ctx, "nodes", nodes, func(ctx context.Context, o Object) error {
		return a.configureNode(ctx, o, freshNodes[o.Name])
	})
}

// isWire reports whether l joins two bridges: every end is in the fabric.
func isWire(l *topologies.Link, fabric string) bool {
	for _, e := range l.Ends {
		if e.Namespace != fabric {
			return false
		}
	}
	return fabric != ""
}

// createSpace creates the namespace of a node or the fabric.
func (a *applier) createSpace(ctx context.Context, o Object) (err error) {
	_, span := tracer.Start(ctx, "netns.namespace", trace.WithAttributes(attrLab.String(a.lab), attrNode.String(o.Name)))
	defer func() { endSpan(span, err) }()
	if err := a.begin(o); err != nil {
		return err
	}
	what := "node " + o.Name
	if o.Kind == KindFabric {
		what = "fabric"
	}
	e, err := createNamespace(o.Namespace, spaceMarker(a.lab, o), o.Kind == KindFabric)
	if err != nil {
		// createNamespace leaves nothing behind when it fails.
		return a.failed(o, notMade{fmt.Errorf("%s: create namespace %s: %w", what, o.Namespace, err)})
	}
	a.ns.put(e)
	if o.Kind == KindFabric {
		return a.record(OpDone, o)
	}
	return nil // a node is done once its settings are in (configureNode)
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	traces.Fail(span, err)
	span.End()
}
