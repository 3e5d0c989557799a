package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// dump runs a netlink dump again while the kernel reports that the objects
// changed during it (NLM_F_DUMP_INTR, which vishvananda/netlink v1.3.1
// returns as ErrDumpInterrupted together with partial results).
func dump[T any](f func() (T, error)) (T, error) {
	const tries = 5
	for i := 1; ; i++ {
		v, err := f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == tries {
			return v, err
		}
	}
}

// endName names a link end for errors: node:interface, or fabric:interface.
func endName(e *topologies.Iface) string {
	if e.Node == "" {
		return "fabric:" + e.Name
	}
	return e.Node + ":" + e.Name
}

// createBridge creates a bridge in the fabric.
func (a *applier) createBridge(ctx context.Context, o Object) error {
	b := o.Bridge
	if err := a.begin(o); err != nil {
		return err
	}
	ent, err := a.ns.get(o.Namespace)
	if err != nil {
		return a.failed(o, notMade{fmt.Errorf("bridge %s: %w", b.Name, err)})
	}
	if err := ent.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Name, TxQLen: -1}}); err != nil {
		return a.failed(o, notMade{fmt.Errorf("bridge %s: create: %w", b.Name, err)})
	}
	// The MTU is set after creation: an MTU given at creation is taken as
	// a default that the bridge lowers to its smallest port's, while one
	// set on an existing bridge sticks (BROPT_MTU_SET_BY_USER, Linux 4.17).
	if err := ent.h.LinkModify(&netlink.GenericLink{
		LinkAttrs: netlink.LinkAttrs{Name: b.Name, MTU: b.MTU, Alias: ifaceMarker(a.lab), Flags: net.FlagUp, TxQLen: -1},
		LinkType:  "bridge",
	}); err != nil {
		return fmt.Errorf("bridge %s: set alias, mtu and up: %w", b.Name, err)
	}
	lk, err := ent.h.LinkByName(b.Name)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	a.mu.Lock()
	a.bridges[b.Name] = lk.Attrs().Index
	a.mu.Unlock()
	return a.record(OpDone, o)
}

// bridgeIndex returns the ifindex of bridge name in the fabric.
func (a *applier) bridgeIndex(fabric *nsEntry, name string) (int, error) {
	a.mu.Lock()
	idx, ok := a.bridges[name]
	a.mu.Unlock()
	if ok {
		return idx, nil
	}
	lk, err := fabric.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("bridge %s: %w", name, err)
	}
	a.mu.Lock()
	a.bridges[name] = lk.Attrs().Index
	a.mu.Unlock()
	return lk.Attrs().Index, nil
}

// createLink creates a link and sets up its ends.
func (a *applier) createLink(ctx context.Context, o Object) (err error) {
	l := o.Link
	ctx, span := tracer.Start(ctx, "netns.link", trace.WithAttributes(attrLab.String(a.lab), attrLink.String(l.ID)))
	defer func() { endSpan(span, err) }()
	if err := a.begin(o); err != nil {
		return err
	}
	if err := a.makeLink(ctx, l); err != nil {
		return a.failed(o, fmt.Errorf("link %s: %w", l.ID, err))
	}
	return a.record(OpDone, o)
}

func (a *applier) makeLink(ctx context.Context, l *topologies.Link) error {
	want := map[string]int{topologies.KindVeth: 2, topologies.KindMacvlan: 1, topologies.KindMove: 1}[l.Kind]
	if want == 0 {
		return notMade{fmt.Errorf("unknown kind %q", l.Kind)}
	}
	if len(l.Ends) != want {
		return notMade{fmt.Errorf("a %s link has %d ends, not %d", l.Kind, len(l.Ends), want)}
	}
	ents := make([]*nsEntry, len(l.Ends))
	for i := range l.Ends {
		e, err := a.ns.get(l.Ends[i].Namespace)
		if err != nil {
			return notMade{fmt.Errorf("end %s: %w", endName(&l.Ends[i]), err)}
		}
		ents[i] = e
	}
	if err := checkMACs(l); err != nil {
		return notMade{err}
	}
	switch l.Kind {
	case topologies.KindVeth:
		x, y := &l.Ends[0], &l.Ends[1]
		veth := &netlink.Veth{
			LinkAttrs:        linkAttrs(x),
			PeerName:         y.Name,
			PeerTxQLen:       -1,
			PeerMTU:          uint32(y.MTU),
			PeerNumTxQueues:  uint32(y.TxQueues),
			PeerNumRxQueues:  uint32(y.RxQueues),
			PeerHardwareAddr: mustMAC(y.MAC),
		}
		if ents[1] != ents[0] {
			veth.PeerNamespace = netlink.NsFd(ents[1].fd)
		}
		if err := ents[0].h.LinkAdd(veth); err != nil {
			if errors.Is(err, unix.EEXIST) {
				for i := range l.Ends {
					if _, lerr := ents[i].h.LinkByName(l.Ends[i].Name); lerr == nil {
						return notMade{fmt.Errorf("end %s: create veth: an interface %s already exists in %s: %w", endName(&l.Ends[i]), l.Ends[i].Name, ents[i].name, err)}
					}
				}
			}
			return notMade{fmt.Errorf("create veth %s=%s: %w", endName(x), endName(y), err)}
		}
	case topologies.KindMacvlan:
		root, _, err := a.rootNS()
		if err != nil {
			return notMade{err}
		}
		parent, err := root.LinkByName(l.Host)
		if err != nil {
			return notMade{fmt.Errorf("host interface %s: %w", l.Host, err)}
		}
		mode, ok := macvlanModes[l.MacvlanMode]
		if !ok {
			return notMade{fmt.Errorf("macvlan mode %q: want bridge, private, vepa or passthru", l.MacvlanMode)}
		}
		mv := &netlink.Macvlan{LinkAttrs: linkAttrs(&l.Ends[0]), Mode: mode}
		mv.ParentIndex = parent.Attrs().Index
		// Made in the host's namespace, where the parent is, and placed
		// in the node in the same request: it is never visible in the host.
		mv.Namespace = netlink.NsFd(ents[0].fd)
		if err := root.LinkAdd(mv); err != nil {
			return notMade{fmt.Errorf("end %s: create macvlan on %s: %w", endName(&l.Ends[0]), l.Host, err)}
		}
	case topologies.KindMove:
		if e := &l.Ends[0]; e.TxQueues != 0 || e.RxQueues != 0 {
			return notMade{fmt.Errorf("end %s: the queues of a moved host interface cannot be set (they are fixed when a device is made)", endName(e))}
		}
		if err := a.moveIn(l, ents[0]); err != nil {
			return err
		}
	}
	for i := range l.Ends {
		if err := a.configureEnd(ctx, l, &l.Ends[i], ents[i]); err != nil {
			return fmt.Errorf("end %s: %w", endName(&l.Ends[i]), err)
		}
	}
	return nil
}

var macvlanModes = map[string]netlink.MacvlanMode{
	"":         netlink.MACVLAN_MODE_BRIDGE,
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

// linkAttrs are the attributes of a device made for end e.
func linkAttrs(e *topologies.Iface) netlink.LinkAttrs {
	return netlink.LinkAttrs{
		Name:         e.Name,
		MTU:          e.MTU,
		HardwareAddr: mustMAC(e.MAC),
		NumTxQueues:  e.TxQueues,
		NumRxQueues:  e.RxQueues,
		TxQLen:       -1, // the kernel's default; 0 would be sent as a length
	}
}

// checkMACs refuses a MAC that does not parse, naming the end.
func checkMACs(l *topologies.Link) error {
	for i := range l.Ends {
		if m := l.Ends[i].MAC; m != "" {
			if _, err := net.ParseMAC(m); err != nil {
				return fmt.Errorf("end %s: mac: %w", endName(&l.Ends[i]), err)
			}
		}
	}
	return nil
}

// mustMAC parses a MAC that checkMACs accepted; "" is nil.
func mustMAC(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}

// configureEnd sets up one end of a link that now exists: marker (unless it
// is a moved host interface, which keeps its host marker), MTU and MAC of a
// moved interface, IPv6 link-local address, master, addresses, up, root
// qdisc and offloads.
func (a *applier) configureEnd(ctx context.Context, l *topologies.Link, e *topologies.Iface, ent *nsEntry) error {
	h := ent.h
	lk, err := h.LinkByName(e.Name)
	if err != nil {
		return err
	}
	mac := lk.Attrs().HardwareAddr
	if e.Node != "" {
		// labctl adds the link-local address itself, the same EUI-64
		// address the kernel would make, but without duplicate address
		// detection, so that it is usable when up returns. The kernel's
		// own address would be tentative at first, made by asynchronous
		// work that waits for the RTNL (which freeing a namespace can hold
		// for long), and until it is usable a router sends no neighbour
		// solicitation for a packet it forwards: its first packets stall
		// for a second or more. Set before the interface is up.
		if err := h.LinkSetIP6AddrGenMode(lk, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
			return fmt.Errorf("set IPv6 address generation mode none: %w", err)
		}
	}
	moved := l.Kind == topologies.KindMove
	if moved {
		// A generic RTM_NEWLINK would need the device's kind, which a
		// physical NIC does not have; set each attribute on its own.
		if e.MTU != 0 {
			if err := h.LinkSetMTU(lk, e.MTU); err != nil {
				return fmt.Errorf("set mtu %d: %w", e.MTU, err)
			}
		}
		if e.MAC != "" {
			mac = mustMAC(e.MAC)
			if err := h.LinkSetHardwareAddr(lk, mac); err != nil {
				return fmt.Errorf("set mac %s: %w", e.MAC, err)
			}
		}
	} else if err := h.LinkModify(&netlink.GenericLink{
		// One request for marker and up (IFLA_IFALIAS is ignored when a
		// device is created, so it cannot go with the creation).
		LinkAttrs: netlink.LinkAttrs{Index: lk.Attrs().Index, Name: e.Name, Alias: ifaceMarker(a.lab), Flags: net.FlagUp, TxQLen: -1},
		LinkType:  lk.Type(),
	}); err != nil {
		return fmt.Errorf("set alias and up: %w", err)
	}
	if e.Node != "" {
		if ll, ok := linkLocal(mac); ok {
			if err := h.AddrAdd(lk, addrOf(ll)); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add link-local address %s: %w", ll, err)
			}
		}
	}
	if e.Master != "" {
		idx, err := a.bridgeIndex(ent, e.Master)
		if err != nil {
			return err
		}
		if err := h.LinkSetMasterByIndex(lk, idx); err != nil {
			return fmt.Errorf("set master %s: %w", e.Master, err)
		}
	}
	for _, p := range e.Addresses {
		if err := h.AddrAdd(lk, addrOf(p)); err != nil {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	if moved {
		if err := h.LinkSetUp(lk); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	if e.Qdisc != nil {
		if err := setQdisc(h, lk.Attrs().Index, e.Qdisc); err != nil {
			return fmt.Errorf("qdisc %s: %w", e.Qdisc.Kind, err)
		}
	}
	if len(e.Offloads) > 0 {
		// ethtool -K itself, so that feature names, dependencies between
		// features and refusals are exactly ethtool's. Only the features
		// the plan names are touched: the others keep the driver's
		// defaults.
		args := []string{"-K", e.Name}
		for _, o := range e.Offloads {
			state := "off"
			if o.On {
				state = "on"
			}
			args = append(args, o.Name, state)
		}
		if err := run(ctx, ent.name, "", "ethtool", args...); err != nil {
			return fmt.Errorf("offloads: %w", err)
		}
	}
	return nil
}

// removeLink deletes a link (or gives a host interface back).
func (a *applier) removeLink(ctx context.Context, o Object) (err error) {
	l := o.Link
	_, span := tracer.Start(ctx, "netns.link.remove", trace.WithAttributes(attrLab.String(a.lab), attrLink.String(l.ID)))
	defer func() { endSpan(span, err) }()
	if err := a.record(OpBegin, o); err != nil {
		return err
	}
	if l.Kind == topologies.KindMove {
		err = a.moveOut(l)
	} else {
		err = a.deleteLink(o)
	}
	if err != nil {
		return fmt.Errorf("link %s: %w", l.ID, err)
	}
	return a.record(OpGone, o)
}

// deleteLink deletes the devices of a veth or macvlan link. Deleting one end
// of a veth pair deletes the other.
func (a *applier) deleteLink(o Object) error {
	for i := range o.Link.Ends {
		e := &o.Link.Ends[i]
		ent, err := a.ns.get(e.Namespace)
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		ok, err := a.deleteIface(ent, e.Name)
		if err != nil {
			return fmt.Errorf("end %s: %w", endName(e), err)
		}
		if ok {
			a.removed(o.String())
			return nil
		}
	}
	return nil
}

// deleteIface deletes interface name, which the journal or the plan says
// labctl made, from ent, one of the lab's namespaces. An interface that
// carries another marker than the lab's is left alone: a host interface is
// only ever sent home, and another lab's is not this lab's to delete. One
// without a marker is this lab's: it was made but labctl was stopped
// before it set the marker (a creation that fails makes nothing, and its
// object is forgotten then, so an interface that was in the way is never
// taken for one labctl made).
func (a *applier) deleteIface(ent *nsEntry, name string) (bool, error) {
	lk, err := ent.h.LinkByName(name)
	if isNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if alias := lk.Attrs().Alias; alias != ifaceMarker(a.lab) && strings.HasPrefix(alias, markerPrefix) {
		return false, nil
	}
	if err := ent.h.LinkDel(lk); err != nil && !isNotExist(err) {
		return false, fmt.Errorf("delete: %w", err)
	}
	return true, nil
}

// removeBridge deletes a bridge from the fabric.
func (a *applier) removeBridge(ctx context.Context, o Object) error {
	if err := a.record(OpBegin, o); err != nil {
		return err
	}
	ent, err := a.ns.get(o.Namespace)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("bridge %s: %w", o.Name, err)
	}
	if err == nil {
		ok, err := a.deleteIface(ent, o.Name)
		if err != nil {
			return fmt.Errorf("bridge %s: %w", o.Name, err)
		}
		if ok {
			a.removed(o.String())
		}
	}
	a.mu.Lock()
	delete(a.bridges, o.Name)
	a.mu.Unlock()
	return a.record(OpGone, o)
}
