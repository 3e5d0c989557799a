package topologies

import (
	"fmt"
	"sort"
	"strings"
)

// at is where the value at field path is in the file, or that of the
// nearest enclosing field that has a place.
func (t *Topology) at(path string) Pos {
	for {
		if p, ok := t.pos[path]; ok {
			return p
		}
		if path == "" {
			return Pos{File: t.file}
		}
		path = path[:max(strings.LastIndexAny(path, ".["), 0)]
	}
}

// Kinds of reach outside a lab.
const (
	ReachExec    = "exec"     // a command run as root on the host's filesystem
	ReachHostNIC = "host-nic" // a host interface given to a node
	ReachCNI     = "cni"      // CNI plugins run as root from the server's plugin path
)

// Reach is a part of a topology that reaches outside its lab: locally root
// may do anything a topology says, but a server that builds topologies for
// others (labctl serve) allows these only when its operator said so.
type Reach struct {
	Kind  string // ReachExec, ReachHostNIC
	What  string // the command, the host interface
	Field string // path such as nodes.n1.exec[0]
	Pos   Pos
}

func (r Reach) String() string {
	return fmt.Sprintf("%s: %s %s", r.Field, r.Kind, r.What)
}

// Reaches lists what the topology reaches outside its lab, in file order.
func (t *Topology) Reaches() []Reach {
	var out []Reach
	add := func(kind, what, field string) {
		out = append(out, Reach{Kind: kind, What: what, Field: field, Pos: t.at(field)})
	}
	for i, c := range t.Defaults.Exec {
		add(ReachExec, c, fmt.Sprintf("defaults.exec[%d]", i))
	}
	for _, n := range t.Nodes {
		for i, c := range n.Value.Exec {
			add(ReachExec, c, fmt.Sprintf("%s.exec[%d]", joinPath("nodes", n.Key), i))
		}
	}
	for i, l := range t.Links {
		switch l.Type {
		case "host-nic":
			add(ReachHostNIC, l.Interface, fmt.Sprintf("links[%d].interface", i))
		case "cni":
			add(ReachCNI, "plugins", fmt.Sprintf("links[%d].type", i))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		return a.Line < b.Line || (a.Line == b.Line && a.Column < b.Column)
	})
	return out
}
