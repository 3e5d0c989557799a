package paths

import (
	"net/netip"
	"slices"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/topologies"
)

// Kinds of path, in the order a run measures them.
const (
	kindLoopback = "loopback" // 127.0.0.1 inside the client's node
	kindOwnIP    = "own-ip"   // the client node's own lab address, inside the node
	kindVeth     = "veth"     // a veth pair to another node
	kindBridge   = "bridge"   // veth pairs through a Linux bridge
	kindMacvlan  = "macvlan"  // a macvlan child of a NIC at either end
	kindNIC      = "nic"      // a NIC moved into a node at either end, no macvlan
)

// allKinds lists every kind of path.
var allKinds = []string{kindLoopback, kindOwnIP, kindVeth, kindBridge, kindMacvlan, kindNIC}

// target is where the server of one kind of path runs.
type target struct {
	Kind string
	Node string
	Addr netip.Addr
	// Iface is the server's interface the path arrives on ("lo" for the
	// two loopback kinds).
	Iface string
}

// targets finds, for each wanted kind, the first path of that kind from
// the client's node: loopback and own-ip inside the node, then the direct
// paths to every other node with an agent, in plan order. Kinds the lab
// has no path for are returned as missing.
func targets(lab experiments.Lab, client string, kinds []string) (found []target, missing []string) {
	byKind := map[string]target{kindLoopback: {Kind: kindLoopback, Node: client, Addr: netip.MustParseAddr("127.0.0.1"), Iface: "lo"}}
	if a, ok := ownAddress(lab.Plan, client); ok {
		byKind[kindOwnIP] = target{Kind: kindOwnIP, Node: client, Addr: a, Iface: "lo"}
	}
	for _, n := range lab.Plan.Nodes {
		if n.Name == client || !n.Agent {
			continue
		}
		for _, p := range lab.Paths(client, n.Name) {
			if !p.Direct {
				continue
			}
			kind := pathKind(lab.Plan, client, p)
			if _, seen := byKind[kind]; !seen {
				byKind[kind] = target{Kind: kind, Node: n.Name, Addr: p.Addr, Iface: p.Iface}
			}
		}
	}
	for _, k := range allKinds {
		if !slices.Contains(kinds, k) {
			continue
		}
		if t, ok := byKind[k]; ok {
			found = append(found, t)
		} else {
			missing = append(missing, k)
		}
	}
	return found, missing
}

// ownAddress is the first IPv4 lab address of node.
func ownAddress(plan *topologies.Plan, node string) (netip.Addr, bool) {
	for _, i := range plan.IfacesOf(node) {
		for _, a := range i.Addresses {
			if a.Addr().Is4() {
				return a.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// pathKind names a direct path by the devices at both ends: a macvlan at
// either end makes it a macvlan path (its packets leave through the parent
// NIC), else a moved NIC at either end a nic path; else the target's side
// says veth or bridge.
func pathKind(plan *topologies.Plan, client string, p experiments.Path) string {
	kinds := map[string]bool{p.Kind: true}
	for _, l := range plan.Links {
		for _, e := range l.Ends {
			if e.Node != client {
				continue
			}
			for _, a := range e.Addresses {
				if a.Masked().Contains(p.Addr) {
					kinds[l.Kind] = true
				}
			}
		}
	}
	switch {
	case kinds[topologies.KindMacvlan]:
		return kindMacvlan
	case kinds[topologies.KindMove]:
		return kindNIC
	case kinds["bridge"]:
		return kindBridge
	}
	return kindVeth
}
