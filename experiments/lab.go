package experiments

import (
	"fmt"
	"net/netip"

	"github.com/labctl/labctl/topologies"
)

// Lab is what an experiment sees of the lab when it plans its steps: the
// plan, and the node each role was placed on.
type Lab struct {
	Plan  *topologies.Plan
	Roles map[string]string // role -> node
}

// Node returns the node of a role.
func (l Lab) Node(role string) string { return l.Roles[role] }

// Path is one way to reach a node from another: an address of the target on
// one of its interfaces, and what kind of device carries it.
type Path struct {
	Iface string     // the target's interface
	Addr  netip.Addr // the target's address on it
	Kind  string     // veth, bridge, macvlan, move (from the plan)
	// Direct is true when the source node has an address on the same
	// subnet, so no router sits between them.
	Direct bool
}

// Paths lists the IPv4 addresses at which node to can be reached from node
// from, directly connected ones first, in plan order.
func (l Lab) Paths(from, to string) []Path {
	var direct, routed []Path
	src := l.Plan.IfacesOf(from)
	for _, link := range l.Plan.Links {
		for _, e := range link.Ends {
			if e.Node != to {
				continue
			}
			kind := link.Kind
			if link.Kind == topologies.KindVeth && len(link.Ends) == 2 && link.Ends[1].Master != "" {
				kind = "bridge"
			}
			for _, a := range e.Addresses {
				if !a.Addr().Is4() {
					continue
				}
				p := Path{Iface: e.Name, Addr: a.Addr(), Kind: kind, Direct: onSubnet(src, a)}
				if p.Direct {
					direct = append(direct, p)
				} else {
					routed = append(routed, p)
				}
			}
		}
	}
	return append(direct, routed...)
}

func onSubnet(ifaces []topologies.Iface, target netip.Prefix) bool {
	for _, i := range ifaces {
		for _, a := range i.Addresses {
			if a.Masked() == target.Masked() {
				return true
			}
		}
	}
	return false
}

// Address returns the address of node to that node from should use: a
// directly connected one if there is one.
func (l Lab) Address(from, to string) (netip.Addr, error) {
	paths := l.Paths(from, to)
	if len(paths) == 0 {
		return netip.Addr{}, fmt.Errorf("node %s has no IPv4 address that node %s can reach", to, from)
	}
	return paths[0].Addr, nil
}
