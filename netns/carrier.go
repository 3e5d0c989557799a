package netns

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// carrierTimeout bounds how long up waits for the links it made to carry
// traffic. The kernel brings a link up in two steps: setting a veth up
// turns its carrier on at once, but the rest (operstate UP, the device's
// queueing discipline replacing noop_qdisc, which drops every packet, and
// a bridge port's move to forwarding) waits for the linkwatch work item,
// which a busy machine may run many milliseconds later. A packet sent in
// between is lost, so up waits. Seconds are far beyond what linkwatch
// takes even under load; a link that is not up by then never will be (a
// host NIC without a cable, a macvlan on a parent that is down).
const carrierTimeout = 15 * time.Second

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
	deadline := time.Now().Add(carrierTimeout)
	return a.phase(ctx, "carrier", spaces, func(ctx context.Context, o Object) error {
		ent, err := a.ns.get(o.Namespace)
		if err != nil {
			return err
		}
		return waitNamespaceUp(ctx, ent, byNS[o.Namespace], deadline)
	})
}

// waitNamespaceUp polls one namespace, one link dump and one address dump
// a round, until every end in ends is up or the deadline passes. Most are
// up at the first look; the rounds start a millisecond apart and back off
// to 50 ms.
func waitNamespaceUp(ctx context.Context, ent *nsEntry, ends []upEnd, deadline time.Time) error {
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
			return fmt.Errorf("%s: interface %s in %s is not up after %v: %s", e.what, e.name, ent.name, carrierTimeout, why[e.name])
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

// notUp returns the ends that are not up yet, and for each why.
func notUp(ent *nsEntry, ends []upEnd) ([]upEnd, map[string]string, error) {
	links, err := dump(ent.h.LinkList)
	if err != nil {
		return nil, nil, fmt.Errorf("links: %w", err)
	}
	byName := map[string]*netlink.LinkAttrs{}
	for _, lk := range links {
		byName[lk.Attrs().Name] = lk.Attrs()
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
		at, ok := byName[e.name]
		var reason string
		switch {
		case !ok:
			reason = "it does not exist"
		case at.RawFlags&unix.IFF_UP == 0:
			reason = "it is administratively down"
		case at.RawFlags&unix.IFF_LOWER_UP == 0:
			reason = "no carrier (operstate " + at.OperState.String() + ")"
		case at.OperState != netlink.OperUp && !(e.unknownOK && at.OperState == netlink.OperUnknown):
			reason = "operstate " + at.OperState.String() + " with the carrier on"
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
