package netns

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// carrierTimeout, plus carrierPerEnd for each interface waited for, bounds
// how long up waits for the links it made to carry traffic. The kernel brings a link up in two steps: setting a veth up
// turns its carrier on at once, but the rest (operstate UP, the device's
// queueing discipline replacing noop_qdisc, which drops every packet, and
// a bridge port's move to forwarding) waits for the linkwatch work item,
// which a busy machine may run many milliseconds later. A packet sent in
// between is lost, so up waits. Seconds are far beyond what linkwatch
// takes even under load; a link that is not up by then never will be (a
// host NIC without a cable, a macvlan on a parent that is down).
const carrierTimeout = 15 * time.Second

// carrierPerEnd is the allowance per interface: linkwatch handles devices
// one at a time, each in a few milliseconds (a fabric of 6,000 bridge
// ports and bridges came up over 15 s on the reference machine).
const carrierPerEnd = 10 * time.Millisecond

// upEnd is one interface up waits for.
type upEnd struct {
	name string // interface
	what string // for errors and progress: the link or bridge it belongs to
	// unknownOK accepts operstate UNKNOWN with the carrier on: drivers of
	// real NICs that never report an operational state leave it there.
	// labctl's own devices (veth, bridge, macvlan) always report it, and
	// for them UNKNOWN means linkwatch has not run yet.
	unknownOK bool
}

// upEnds lists, per namespace, the interfaces of the links and bridges in
// objs. A bridge is waited for only if the plan gives it ports: without
// ports it has no carrier, and nothing can reach it anyway.
func upEnds(plan *topologies.Plan, objs []Object) map[string][]upEnd {
	ported := map[string]bool{}
	for _, l := range plan.Links {
		for _, e := range l.Ends {
			if e.Master != "" {
				ported[e.Namespace+"/"+e.Master] = true
			}
		}
	}
	out := map[string][]upEnd{}
	for _, o := range objs {
		switch o.Kind {
		case KindBridge:
			if ported[o.Namespace+"/"+o.Name] {
				out[o.Namespace] = append(out[o.Namespace], upEnd{name: o.Name, what: o.String()})
			}
		case KindLink:
			for _, e := range o.Link.Ends {
				out[e.Namespace] = append(out[e.Namespace], upEnd{name: e.Name, what: o.String(), unknownOK: o.Link.Kind == topologies.KindMove})
			}
		}
	}
	return out
}

// waitUp waits until every interface of the links and bridges in objs has
// its carrier on, operstate UP and no address still tentative (IPv6
// duplicate address detection, which labctl turns off for its own
// addresses, would hold one back), or fails naming the first that is not
// up after carrierTimeout.
func (a *applier) waitUp(ctx context.Context, plan *topologies.Plan, objs []Object) error {
	byNS := upEnds(plan, objs)
	if len(byNS) == 0 {
		return nil
	}
	spaces := make([]Object, 0, len(byNS))
	for ns := range byNS {
		spaces = append(spaces, Object{Kind: KindNode, Name: ns, Namespace: ns})
	}
	sort.Slice(spaces, func(i, j int) bool { return spaces[i].Namespace < spaces[j].Namespace })
	n := 0
	for _, ends := range byNS {
		n += len(ends)
	}
	limit := carrierTimeout + time.Duration(n)*carrierPerEnd
	deadline := time.Now().Add(limit)
	return a.phase(ctx, "carrier", spaces, func(ctx context.Context, o Object) error {
		ent, err := a.ns.get(o.Namespace)
		if err != nil {
			return err
		}
		return waitNamespaceUp(ctx, ent, byNS[o.Namespace], deadline, limit)
	})
}

// waitNamespaceUp waits until every end in ends is up in one namespace.
// It listens to the namespace's link notifications (after the dump that
// subscribing starts with) rather than polling: a fabric of thousands of
// bridge ports comes up as the kernel's linkwatch work gets round to each,
// over seconds, and a dump of them all every few milliseconds would take
// the CPU and the RTNL that work needs. Addresses are checked once the
// links are up (labctl adds its own without duplicate address detection,
// so none is tentative unless something else added it).
func waitNamespaceUp(ctx context.Context, ent *nsEntry, ends []upEnd, deadline time.Time, limit time.Duration) error {
	pending := map[string]upEnd{}
	for _, e := range ends {
		pending[e.name] = e
	}
	why := map[string]string{}
	updates := make(chan netlink.LinkUpdate, 4096)
	done := make(chan struct{})
	defer close(done)
	lost := make(chan error, 1)
	h := netns.NsHandle(ent.fd)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &h, ListExisting: true, ReceiveBufferSize: 4 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			select {
			case lost <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("namespace %s: link notifications: %w", ent.name, err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for len(pending) > 0 {
		select {
		case u, ok := <-updates:
			if !ok {
				updates = nil // the subscription ended: the dumps below decide
				continue
			}
			if e, ok := pending[u.Attrs().Name]; ok {
				if reason := linkNotUp(u.Attrs(), e); reason != "" {
					why[e.name] = reason
				} else {
					delete(pending, e.name)
				}
			}
		case <-lost:
			// Notifications were lost (a full socket buffer) or the first
			// dump was interrupted: see where the kernel is now.
			left, w, err := notUp(ent, values(pending))
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ent.name, err)
			}
			pending, why = byName(left), w
		case <-timer.C:
			left, w, err := notUp(ent, values(pending))
			if err != nil {
				return fmt.Errorf("namespace %s: %w", ent.name, err)
			}
			if len(left) == 0 {
				return nil
			}
			e := left[0]
			return fmt.Errorf("%s: interface %s in %s is not up after %v: %s", e.what, e.name, ent.name, limit.Round(time.Second), w[e.name])
		case <-ctx.Done():
			return ctx.Err()
		}
		if updates == nil && len(pending) > 0 {
			// No more notifications: poll what is left until the deadline.
			return pollUp(ctx, ent, values(pending), deadline, limit)
		}
	}
	return pollUp(ctx, ent, ends, deadline, limit) // links up: one look at the addresses
}

// pollUp looks at one namespace, one link dump and one address dump a
// round, until every end is up or the deadline passes; the rounds start a
// millisecond apart and back off to 50 ms.
func pollUp(ctx context.Context, ent *nsEntry, ends []upEnd, deadline time.Time, limit time.Duration) error {
	pending := slices.Clone(ends)
	var why map[string]string
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		var err error
		pending, why, err = notUp(ent, pending)
		if err != nil {
			return fmt.Errorf("namespace %s: %w", ent.name, err)
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			e := pending[0]
			return fmt.Errorf("%s: interface %s in %s is not up after %v: %s", e.what, e.name, ent.name, limit.Round(time.Second), why[e.name])
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func values(m map[string]upEnd) []upEnd {
	out := make([]upEnd, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func byName(ends []upEnd) map[string]upEnd {
	m := make(map[string]upEnd, len(ends))
	for _, e := range ends {
		m[e.name] = e
	}
	return m
}

// linkNotUp says why the link with attributes at is not up for end e, or
// "" when it is.
func linkNotUp(at *netlink.LinkAttrs, e upEnd) string {
	switch {
	case at.RawFlags&unix.IFF_UP == 0:
		return "it is administratively down"
	case at.RawFlags&unix.IFF_LOWER_UP == 0:
		return "no carrier (operstate " + at.OperState.String() + ")"
	case at.OperState != netlink.OperUp && !(e.unknownOK && at.OperState == netlink.OperUnknown):
		return "operstate " + at.OperState.String() + " with the carrier on"
	}
	return ""
}

// notUp returns the ends that are not up yet, and for each why.
func notUp(ent *nsEntry, ends []upEnd) ([]upEnd, map[string]string, error) {
	list, err := dump(ent.h.LinkList)
	if err != nil {
		return nil, nil, fmt.Errorf("links: %w", err)
	}
	links := map[string]*netlink.LinkAttrs{}
	for _, lk := range list {
		links[lk.Attrs().Name] = lk.Attrs()
	}
	tentative := map[int][]string{} // ifindex -> addresses not yet usable
	addrs, err := dump(func() ([]netlink.Addr, error) { return ent.h.AddrList(nil, netlink.FAMILY_V6) })
	if err != nil {
		return nil, nil, fmt.Errorf("addresses: %w", err)
	}
	for _, ad := range addrs {
		if ad.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			tentative[ad.LinkIndex] = append(tentative[ad.LinkIndex], ad.IPNet.String())
		}
	}
	var left []upEnd
	why := map[string]string{}
	for _, e := range ends {
		at, ok := links[e.name]
		var reason string
		switch {
		case !ok:
			reason = "it does not exist"
		case linkNotUp(at, e) != "":
			reason = linkNotUp(at, e)
		case len(tentative[at.Index]) > 0:
			reason = "addresses still tentative (duplicate address detection): " + strings.Join(tentative[at.Index], ", ")
		default:
			continue
		}
		why[e.name] = reason
		left = append(left, e)
	}
	return left, why, nil
}
