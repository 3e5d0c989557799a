package topologies

import (
	"fmt"
	"net/netip"
)

// routes resolves each node's routes: endpoint references in via become
// addresses, and the gateway must sit on a subnet the node is connected to,
// or the kernel would refuse the route ("Nexthop has invalid gateway").
func (b *builder) routes() {
	for ni := range b.plan.Nodes {
		n := &b.plan.Nodes[ni]
		seen := map[string]string{}
		for _, pr := range b.specs[ni].routes {
			r, ok := b.route(n, pr.path, pr.v)
			if !ok {
				continue
			}
			key := fmt.Sprintf("%s metric %d", r.Dst, r.Metric)
			if prev, dup := seen[key]; dup {
				b.errorf(pr.path, "node %s already has a route to %s at %s", n.Name, key, prev)
				continue
			}
			seen[key] = pr.path
			n.Routes = append(n.Routes, r)
		}
	}
}

func (b *builder) route(n *Node, path string, s RouteSpec) (Route, bool) {
	r := Route{Dev: s.Dev, Metric: s.Metric}
	if s.Metric < 0 {
		b.errorf(path+".metric", "metric must be zero or positive")
		return r, false
	}
	switch {
	case s.Default && s.Dst != "":
		b.errorf(path+".dst", "set either dst or default: true, not both")
		return r, false
	case !s.Default && s.Dst == "":
		b.errorf(path, "a route needs dst (a prefix) or default: true")
		return r, false
	case s.Via == "" && s.Dev == "":
		b.errorf(path, "a route needs via (a gateway), dev (an interface), or both")
		return r, false
	}
	if s.Dev != "" && s.Dev != "lo" {
		if _, ok := b.ifaces[n.Name+":"+s.Dev]; !ok {
			b.errorf(path+".dev", "node %s has no interface %q", n.Name, s.Dev)
			return r, false
		}
	}
	if s.Dst != "" {
		dst, err := netip.ParsePrefix(s.Dst)
		switch {
		case err != nil:
			b.errorf(path+".dst", "expected a prefix such as 10.0.0.0/8, got %q", s.Dst)
			return r, false
		case dst != dst.Masked():
			b.errorf(path+".dst", "prefix %s has host bits set; did you mean %s?", dst, dst.Masked())
			return r, false
		}
		r.Dst = dst
	}
	if s.Via != "" {
		via, ok := b.gateway(n, path+".via", s.Via, r.Dst)
		if !ok {
			return r, false
		}
		r.Via = via
	}
	if s.Default {
		r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Via.Is6() {
			r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	}
	if r.Via.IsValid() && r.Via.Is4() != r.Dst.Addr().Is4() {
		b.errorf(path+".via", "gateway %s and destination %s are of different IP families", r.Via, r.Dst)
		return r, false
	}
	if r.Via.IsValid() && !r.Via.IsLinkLocalUnicast() && !b.connected(n.Name, s.Dev, r.Via) {
		where := "any interface of node " + n.Name
		if s.Dev != "" {
			where = "interface " + s.Dev + " of node " + n.Name
		}
		b.errorf(path+".via", "gateway %s is not reachable: it is on no subnet of %s", r.Via, where)
		return r, false
	}
	if r.Via.IsLinkLocalUnicast() && s.Dev == "" {
		b.errorf(path+".dev", "a link-local gateway %s needs dev", r.Via)
		return r, false
	}
	return r, true
}

// gateway reads via: an address, or node:interface meaning that interface's
// first address of the destination's family (IPv4 for a default route).
func (b *builder) gateway(n *Node, path, via string, dst netip.Prefix) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(via); err == nil {
		return a, true
	}
	ref, ok := b.endpointRef(via)
	if !ok {
		b.errorf(path, "expected an address or node:interface, got %q (no such interface)", via)
		return netip.Addr{}, false
	}
	if ref.spec.Node == n.Name {
		b.errorf(path, "gateway %s is an interface of node %s itself", via, n.Name)
		return netip.Addr{}, false
	}
	if ref.link < 0 {
		b.errorf(path, "interface %s is made by a cni link (%s): its address is chosen by the IPAM plugin at ADD time, so no route can name it; route via an address of the IPAM subnet, use static IPAM, or route through the cni host node", via, b.cniEnds[via].path)
		return netip.Addr{}, false
	}
	want4 := !dst.IsValid() || dst.Addr().Is4()
	for _, a := range b.iface(ref).Addresses {
		if a.Addr().Is4() == want4 {
			return a.Addr(), true
		}
	}
	family := "IPv4"
	if !want4 {
		family = "IPv6"
	}
	b.errorf(path, "interface %s has no %s address to use as a gateway", via, family)
	return netip.Addr{}, false
}

// connected reports whether addr is on a subnet of one of the node's
// interfaces (only dev's when dev is set).
func (b *builder) connected(node, dev string, addr netip.Addr) bool {
	for key, ref := range b.ifaces {
		if ref.spec.Node != node || (dev != "" && key != node+":"+dev) {
			continue
		}
		if ref.link < 0 {
			// A cni endpoint: on the subnets its IPAM assigns from.
			for _, p := range b.cniEnds[key].subnets {
				if p.prefix.Contains(addr) {
					return true
				}
			}
			continue
		}
		for _, p := range b.iface(ref).Addresses {
			if p.Masked().Contains(addr) {
				return true
			}
		}
	}
	return false
}
