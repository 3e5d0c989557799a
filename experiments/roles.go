package experiments

import experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"

// Role names one part an experiment's steps give a node (server, client,
// sender...). Experiments declare their roles as constants of this type and
// list them in their spec, in start order; NewRegistry checks that every
// step and summary metric names one of them.
type Role string

// The roles of most experiments.
const (
	Server Role = "server"
	Client Role = "client"
)

// RoleNames lists roles as a spec does.
func RoleNames(roles ...Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = string(r)
	}
	return out
}

// Placement is where a step's roles run; each step gets its own copy
// (Roles).
type Placement []*experimentv1.RoleAssignment

// ServerClient places the server on its node, at the address the client's
// node reaches it by (a directly connected one if there is one), and the
// client on its node: the placement of most two-role experiments.
func (l Lab) ServerClient() (Placement, error) {
	addr, err := l.Address(l.Node(Client), l.Node(Server))
	if err != nil {
		return nil, err
	}
	return Placement{
		{Role: string(Server), Node: l.Node(Server), Address: addr.String()},
		{Role: string(Client), Node: l.Node(Client)},
	}, nil
}

// Roles is a copy of the placement for one step.
func (p Placement) Roles() []*experimentv1.RoleAssignment {
	out := make([]*experimentv1.RoleAssignment, len(p))
	for i, a := range p {
		out[i] = &experimentv1.RoleAssignment{Role: a.GetRole(), Node: a.GetNode(), Address: a.GetAddress()}
	}
	return out
}
