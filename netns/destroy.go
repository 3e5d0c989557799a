package netns

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// Destroy removes a lab: every process in its namespaces is stopped, host
// interfaces go back to the host as they were, and its namespaces are
// deleted (the kernel then frees the veths, bridges and macvlans in them).
// It works from the journal when opt.Journal is set, from plan when it is
// not nil, and always also sweeps RunDir for namespaces that carry the
// lab's marker, so it converges however up was interrupted. It deletes only
// namespaces whose lo alias names the lab. The journal is left in place,
// recording that everything is gone; remove it with Journal.Remove.
func Destroy(ctx context.Context, lab string, plan *topologies.Plan, opt Options) (_ Change, err error) {
	if plan != nil && plan.Lab != lab {
		return Change{}, fmt.Errorf("lab %s: destroy was given the plan of lab %s", lab, plan.Lab)
	}
	ctx, span := tracer.Start(ctx, "netns.destroy", trace.WithAttributes(attrLab.String(lab)))
	defer func() { endSpan(span, err) }()

	a := newApplier(lab, opt)
	defer a.close()

	var objs []Object
	seen := map[objKey]bool{}
	spaces := map[string]bool{}
	add := func(o Object) {
		if seen[o.key()] {
			return
		}
		seen[o.key()] = true
		if o.Kind == KindNode || o.Kind == KindFabric {
			if spaces[o.Namespace] {
				return
			}
			spaces[o.Namespace] = true
		}
		objs = append(objs, o)
	}
	if a.j != nil {
		for _, o := range a.j.objects(OpBegin, OpDone) {
			add(o)
		}
	}
	if plan != nil {
		for _, o := range objects(plan) {
			add(o)
		}
	}
	found, err := listLab(a.ns, lab)
	if err != nil {
		return Change{}, fmt.Errorf("lab %s: %w", lab, err)
	}
	names := make([]string, 0, len(found))
	for name := range found {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if node := found[name]; node == "" {
			add(Object{Kind: KindFabric, Name: name, Namespace: name})
		} else {
			add(Object{Kind: KindNode, Name: node, Namespace: name, Node: &topologies.Node{Name: node, Namespace: name}})
		}
	}

	// First, finish restores of host interfaces that were interrupted
	// once the interface was back in the host (netlink requests are best
	// made before namespaces are deleted: see removeSpaces).
	if err := a.restoreRootHosts(); err != nil {
		return Change{}, fmt.Errorf("lab %s: %w", lab, err)
	}
	if err := a.undo(ctx, "destroy", objs); err != nil {
		return Change{}, fmt.Errorf("lab %s: %w", lab, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return Change{Removed: slices.Clone(a.gone)}, nil
}

// undo deletes objs, each of which may exist completely, partly or not at
// all, in reverse order of creation. Host interfaces go back first (a
// moved veth would die with the namespace, a physical NIC would come back
// under a kernel-chosen name). Links and bridges inside a namespace that
// is itself deleted are left to the kernel, which frees a namespace's
// devices in one batch, far faster than one request per device.
func (a *applier) undo(ctx context.Context, phase string, objs []Object) error {
	if len(objs) == 0 {
		return nil
	}
	dying := map[string]bool{}
	listed := map[objKey]bool{}
	for _, o := range objs {
		listed[o.key()] = true
		if o.Kind == KindNode || o.Kind == KindFabric {
			dying[o.Namespace] = true
		}
	}
	objs = slices.Clone(objs)
	// What the journal has in a dying namespace dies too; it is undone
	// here so that the journal does not keep calling it live.
	if a.j != nil {
		for _, o := range a.j.objects(OpBegin, OpDone) {
			if !listed[o.key()] && touches(o, dying) {
				objs = append(objs, o)
			}
		}
	}
	slices.Reverse(objs)
	var spaces, moves, links, bridges, attachments []Object
	for _, o := range objs {
		switch o.Kind {
		case KindCNI:
			attachments = append(attachments, o)
		case KindNode, KindFabric:
			spaces = append(spaces, o)
		case KindBridge:
			bridges = append(bridges, o)
		case KindLink:
			if o.Link.Kind == topologies.KindMove {
				moves = append(moves, o)
			} else {
				links = append(links, o)
			}
		}
	}
	// Plugins' DEL first, while the namespaces they run in and act on
	// exist: host-local's reservations and libcni's cache are released
	// only by it.
	if err := a.phase(ctx, phase, attachments, func(ctx context.Context, o Object) error {
		return a.detach(ctx, o, dying[o.CNI.Namespace] && dying[o.CNI.HostNamespace])
	}); err != nil {
		return err
	}
	if err := a.phase(ctx, phase, moves, a.removeLink); err != nil {
		return err
	}
	links = slices.DeleteFunc(links, func(o Object) bool { return inside(o, dying) })
	if err := a.phase(ctx, phase, links, a.removeLink); err != nil {
		return err
	}
	bridges = slices.DeleteFunc(bridges, func(o Object) bool { return inside(o, dying) })
	if err := a.phase(ctx, phase, bridges, a.removeBridge); err != nil {
		return err
	}
	return a.removeSpaces(ctx, phase, spaces)
}

// touches reports whether o has a part in one of the namespaces dying.
func touches(o Object, dying map[string]bool) bool {
	switch o.Kind {
	case KindBridge:
		return dying[o.Namespace]
	case KindLink:
		for _, e := range o.Link.Ends {
			if dying[e.Namespace] {
				return true
			}
		}
	case KindCNI:
		return dying[o.CNI.Namespace] || dying[o.CNI.HostNamespace]
	}
	return false
}

// inside reports whether o dies with the namespaces dying: a bridge in a
// dying fabric, a link whose every end is in a dying namespace. A link with
// an end in a namespace that stays is deleted explicitly, since the kernel
// frees a deleted namespace's devices asynchronously (cleanup_net runs in a
// workqueue): until then the surviving end would keep its name, which a
// link made next may need.
func inside(o Object, dying map[string]bool) bool {
	switch o.Kind {
	case KindBridge:
		return dying[o.Namespace]
	case KindLink:
		for _, e := range o.Link.Ends {
			if !dying[e.Namespace] {
				return false
			}
		}
		return len(o.Link.Ends) > 0
	}
	return false
}

// removeSpaces deletes the namespaces of spaces that carry this lab's
// marker, after stopping the processes in them and sending home the host
// interfaces in them. Everything that needs netlink happens before the
// first namespace is deleted: the kernel frees deleted namespaces in the
// background holding the RTNL for long stretches, and a request queued
// behind it would make each deletion wait for the previous one's cleanup.
func (a *applier) removeSpaces(ctx context.Context, phase string, spaces []Object) error {
	if len(spaces) == 0 {
		return nil
	}
	type home struct {
		ent *nsEntry
		lk  netlink.Link
		st  hostState
	}
	var mu sync.Mutex
	var ours []Object
	var homes []home
	err := a.phase(ctx, "", spaces, func(ctx context.Context, o Object) error {
		ent, err := a.owned(o)
		if err != nil {
			return err
		}
		if ent == nil {
			return a.record(OpGone, o) // not there, or not ours: the journal forgets it
		}
		mu.Lock()
		ours = append(ours, o)
		mu.Unlock()
		if o.Kind != KindNode {
			return nil
		}
		// Host interfaces this lab moved in, found by their marker
		// (the journal that knew about them may be lost).
		links, err := dump(ent.h.LinkList)
		if err != nil {
			return fmt.Errorf("node %s: links: %w", o.Name, err)
		}
		for _, lk := range links {
			if lab, st, ok := parseHostMarker(lk.Attrs().Alias); ok && lab == a.lab {
				mu.Lock()
				homes = append(homes, home{ent, lk, st})
				mu.Unlock()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	names := make([]string, len(ours))
	for i, o := range ours {
		if err := a.record(OpBegin, o); err != nil {
			return err
		}
		names[i] = o.Namespace
	}
	if err := killProcesses(names); err != nil {
		return err
	}
	for _, h := range homes {
		if err := a.sendHome(h.ent, h.lk, h.st); err != nil {
			return err
		}
	}
	if err := a.phase(ctx, phase, ours, a.removeSpace); err != nil {
		return err
	}
	// What the journal still has in them (undo left it to the kernel)
	// dies with them.
	if a.j != nil {
		dying := map[string]bool{}
		for _, o := range spaces {
			dying[o.Namespace] = true
		}
		for _, o := range a.j.objects(OpBegin, OpDone) {
			if touches(o, dying) {
				if err := a.record(OpGone, o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// owned returns the namespace of o, open, if it exists and carries the
// marker of this lab's node o.Name (or fabric); nil otherwise. A file that
// an interrupted create left with that marker is removed here.
func (a *applier) owned(o Object) (*nsEntry, error) {
	want := spaceMarker(a.lab, o)
	if m, ok := leftoverMarker(o.Namespace); ok {
		if unfinished(m, want) {
			if err := removeNamespace(o.Namespace); err != nil {
				return nil, err
			}
			a.removed(o.String() + " (unfinished)")
		}
		return nil, nil
	}
	ent, err := a.ns.get(o.Namespace)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	alias, err := nsMarkerOf(ent)
	if err != nil || alias != want {
		return nil, err
	}
	return ent, nil
}

// removeSpace deletes one namespace of the lab.
func (a *applier) removeSpace(ctx context.Context, o Object) (err error) {
	_, span := tracer.Start(ctx, "netns.namespace.remove", trace.WithAttributes(attrLab.String(a.lab), attrNode.String(o.Name)))
	defer func() { endSpan(span, err) }()
	a.ns.drop(o.Namespace)
	if err := removeNamespace(o.Namespace); err != nil {
		return err
	}
	a.removed(o.String())
	return a.record(OpGone, o)
}

// killGrace is how long processes get to exit after SIGTERM before they are
// killed.
const killGrace = 2 * time.Second

// killProcesses stops every process whose network namespace is one of
// names (found by comparing /proc/<pid>/ns/net with the namespace's inode),
// SIGTERM first and SIGKILL after killGrace, and waits until they have
// exited, since a process keeps its namespace alive. Signals go through
// pidfds, so a recycled PID is never hit. labctl's own process is spared:
// its threads may visit a namespace, but it is not in one.
func killProcesses(names []string) error {
	if len(names) == 0 {
		return nil
	}
	type id struct{ dev, ino uint64 }
	ids := map[id]string{}
	for _, n := range names {
		p, err := nsPath(n)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue
		}
		ids[id{st.Dev, st.Ino}] = n
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("processes: %w", err)
	}
	inNS := func(pid int) (string, bool) {
		var st unix.Stat_t
		if unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st) != nil {
			return "", false // gone, a zombie, or a kernel thread
		}
		n, ok := ids[id{st.Dev, st.Ino}]
		return n, ok
	}
	type victim struct {
		pid, fd int
		ns      string
	}
	var victims []victim
	defer func() {
		for _, v := range victims {
			unix.Close(v.fd)
		}
	}()
	self := os.Getpid()
	for _, de := range procs {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == self {
			continue
		}
		if _, ok := inNS(pid); !ok {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // exited meanwhile
		}
		// The pidfd pins the process; check that it is still the one in
		// the namespace and not a new process with a recycled PID.
		ns, ok := inNS(pid)
		if !ok {
			unix.Close(fd)
			continue
		}
		victims = append(victims, victim{pid, fd, ns})
	}
	if len(victims) == 0 {
		return nil
	}
	signal := func(vs []victim, sig unix.Signal) {
		for _, v := range vs {
			unix.PidfdSendSignal(v.fd, sig, nil, 0)
		}
	}
	// wait returns the victims still alive after d.
	wait := func(vs []victim, d time.Duration) []victim {
		deadline := time.Now().Add(d)
		for len(vs) > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			fds := make([]unix.PollFd, len(vs))
			for i, v := range vs {
				fds[i] = unix.PollFd{Fd: int32(v.fd), Events: unix.POLLIN}
			}
			if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
				break
			}
			alive := vs[:0:0]
			for i, v := range vs {
				if fds[i].Revents == 0 {
					alive = append(alive, v)
				}
			}
			vs = alive
		}
		return vs
	}
	signal(victims, unix.SIGTERM)
	alive := wait(victims, killGrace)
	signal(alive, unix.SIGKILL)
	alive = wait(alive, 10*time.Second)
	if len(alive) > 0 {
		var s []string
		for _, v := range alive {
			s = append(s, fmt.Sprintf("pid %d in %s", v.pid, v.ns))
		}
		return fmt.Errorf("processes survive SIGKILL: %s", strings.Join(s, ", "))
	}
	return nil
}
