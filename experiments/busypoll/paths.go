package busypoll

import (
	"net/netip"
	"slices"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/topologies"
)

// route is where a device condition runs: the node and address of the
// server, the node of the client, and the devices whose NAPI polls are
// counted (both ends of the path).
type route struct {
	serverNode, clientNode string
	serverAddr             netip.Addr
	napiDevices            []string
}

// findRoute picks the path of the lab that gives device condition d between
// the client's and the server's nodes; ok is false when the lab has none.
func findRoute(lab experiments.Lab, d device) (route, bool) {
	client, server := lab.Node(experiments.Client), lab.Node(experiments.Server)
	switch d {
	case loopback:
		return route{serverNode: server, clientNode: server, serverAddr: netip.MustParseAddr("127.0.0.1"), napiDevices: []string{"lo"}}, true
	case veth, vethGRO, vethGROTSO, vethXDP:
		links := directVeths(lab.Plan, client, server)
		// veth-xdp wants a link without GRO too, so that its NAPI instance
		// is the XDP program's doing.
		var pick *vethLink
		for i := range links {
			if links[i].gro == (d == vethGRO || d == vethGROTSO) {
				pick = &links[i]
				break
			}
		}
		if pick == nil {
			return route{}, false
		}
		return route{serverNode: server, clientNode: client, serverAddr: pick.serverAddr, napiDevices: names(pick.clientIface, pick.serverIface)}, true
	case nic:
		for _, p := range lab.Paths(client, server) {
			if !p.Direct || (p.Kind != topologies.KindMacvlan && p.Kind != topologies.KindMove) {
				continue
			}
			devs := []string{p.Iface}
			if host := hostOf(lab.Plan, server, p.Iface); host != "" {
				devs = append(devs, host)
			}
			if ci, ok := clientIfaceOn(lab.Plan, client, p.Addr); ok {
				devs = append(devs, ci.Name)
				if host := hostOf(lab.Plan, client, ci.Name); host != "" {
					devs = append(devs, host)
				}
			}
			return route{serverNode: server, clientNode: client, serverAddr: p.Addr, napiDevices: names(devs...)}, true
		}
	}
	return route{}, false
}

// vethLink is a veth pair with one end in each role's node.
type vethLink struct {
	clientIface, serverIface string
	serverAddr               netip.Addr
	gro                      bool // the topology turns GRO on on either end
}

func directVeths(plan *topologies.Plan, client, server string) []vethLink {
	var out []vethLink
	for _, l := range plan.Links {
		if l.Kind != topologies.KindVeth || len(l.Ends) != 2 || l.Ends[0].Master != "" || l.Ends[1].Master != "" {
			continue
		}
		c, s := l.Ends[0], l.Ends[1]
		if c.Node != client {
			c, s = s, c
		}
		if c.Node != client || s.Node != server {
			continue
		}
		addr, ok := firstIPv4(s.Addresses)
		if !ok {
			continue
		}
		out = append(out, vethLink{clientIface: c.Name, serverIface: s.Name, serverAddr: addr, gro: groOn(c) || groOn(s)})
	}
	return out
}

func groOn(i topologies.Iface) bool {
	return slices.Contains(i.Offloads, topologies.Offload{Name: "gro", On: true})
}

func firstIPv4(ps []netip.Prefix) (netip.Addr, bool) {
	for _, p := range ps {
		if p.Addr().Is4() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// hostOf is the host interface under a macvlan of node, or "".
func hostOf(plan *topologies.Plan, node, iface string) string {
	for _, l := range plan.Links {
		if l.Kind == topologies.KindMacvlan && len(l.Ends) == 1 && l.Ends[0].Node == node && l.Ends[0].Name == iface {
			return l.Host
		}
	}
	return ""
}

// clientIfaceOn is the client's interface on the subnet of addr.
func clientIfaceOn(plan *topologies.Plan, client string, addr netip.Addr) (topologies.Iface, bool) {
	for _, i := range plan.IfacesOf(client) {
		for _, p := range i.Addresses {
			if p.Masked().Contains(addr) {
				return i, true
			}
		}
	}
	return topologies.Iface{}, false
}

// names drops duplicates (both ends of a veth are often called alike).
func names(ns ...string) []string {
	var out []string
	for _, n := range ns {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
