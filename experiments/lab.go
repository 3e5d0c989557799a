package experiments

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"

	"github.com/labctl/labctl/internal/fault"
	"github.com/labctl/labctl/topologies"
)

// Lab is what an experiment sees of the lab when it plans its steps: the
// plan, and the node each role was placed on.
type Lab struct {
	Plan  *topologies.Plan
	Roles map[string]string // role -> node
}

// Node returns the node of a role.
func (l Lab) Node(role Role) string { return l.Roles[string(role)] }

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
	src := l.Plan.AddressesOf(from)
	add := func(iface, kind string, a netip.Prefix) {
		if !a.Addr().Is4() {
			return
		}
		p := Path{Iface: iface, Addr: a.Addr(), Kind: kind, Direct: onSubnet(src, a)}
		if p.Direct {
			direct = append(direct, p)
		} else {
			routed = append(routed, p)
		}
	}
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
				add(e.Name, kind, a)
			}
		}
	}
	for _, c := range l.Plan.CNI {
		if c.Node == to {
			for _, a := range c.Addresses() {
				add(c.Interface, "cni", a)
			}
		}
	}
	return append(direct, routed...)
}

func onSubnet(src []netip.Prefix, target netip.Prefix) bool {
	for _, a := range src {
		if a.Masked() == target.Masked() {
			return true
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

// Place assigns nodes to an experiment's roles: the ones asked for, then
// the lab's agent nodes in plan order, the client role first (so in a
// two-node lab the client is the first node and the server the second).
func Place(plan *topologies.Plan, roles []string, asked map[string]string) (Lab, error) {
	var agentNodes []string
	for _, n := range plan.Nodes {
		if n.Agent {
			agentNodes = append(agentNodes, n.Name)
		}
	}
	out := map[string]string{}
	for _, role := range slices.Sorted(maps.Keys(asked)) {
		node := asked[role]
		if !slices.Contains(roles, role) {
			return Lab{}, fault.New(fault.Invalid, "this experiment has no role %q (roles: %v)", role, roles)
		}
		n, ok := plan.Node(node)
		switch {
		case !ok:
			return Lab{}, fault.New(fault.Invalid, "role %s: lab %s has no node %q", role, plan.Lab, node)
		case !n.Agent:
			return Lab{}, fault.New(fault.Precondition, "role %s: node %s runs no agent (agent: false in the topology)", role, node)
		}
		out[role] = node
	}
	if len(agentNodes) == 0 {
		return Lab{}, fault.New(fault.Precondition, "lab %s has no node with an agent", plan.Lab)
	}
	order := slices.Clone(roles)
	sort.SliceStable(order, func(i, j int) bool { return order[i] == string(Client) && order[j] != string(Client) })
	next := 0
	for _, role := range order {
		if _, ok := out[role]; ok {
			continue
		}
		for next < len(agentNodes)-1 && slices.Contains(slices.Collect(maps.Values(out)), agentNodes[next]) {
			next++
		}
		out[role] = agentNodes[next%len(agentNodes)]
		next++
	}
	return Lab{Plan: plan, Roles: out}, nil
}
