package topologies

import (
	"fmt"
	"strings"
)

// Graph renderings of a plan: nodes as boxes, bridges as circles, host
// interfaces as parallelograms, and one edge per link labelled with the
// interface names and addresses at each end.

// graphEdge is one link drawn between two vertices.
type graphEdge struct {
	a, b       string // vertex ids
	aTip, bTip string // interface and addresses at each end
}

type graphVertex struct {
	id, label, kind string // kind: node, bridge, host
}

func (p *Plan) graph() ([]graphVertex, []graphEdge) {
	var vs []graphVertex
	for _, n := range p.Nodes {
		vs = append(vs, graphVertex{id: "node_" + n.Name, label: n.Name, kind: "node"})
	}
	for _, b := range p.Bridges {
		vs = append(vs, graphVertex{id: "bridge_" + b.Name, label: b.Name, kind: "bridge"})
	}
	hosts := map[string]bool{}
	var es []graphEdge
	vertex := func(e Iface) string {
		if e.Node != "" {
			return "node_" + e.Node
		}
		return "bridge_" + e.Master
	}
	for _, l := range p.Links {
		switch l.Kind {
		case KindVeth:
			a, b := l.Ends[0], l.Ends[1]
			e := graphEdge{a: vertex(a), b: vertex(b), aTip: tip(a), bTip: tip(b)}
			if a.Node == "" {
				e.aTip = ""
			}
			if b.Node == "" {
				e.bTip = ""
			}
			es = append(es, e)
		case KindMacvlan, KindMove:
			id := "host_" + l.Host
			if !hosts[id] {
				hosts[id] = true
				vs = append(vs, graphVertex{id: id, label: "host " + l.Host, kind: "host"})
			}
			es = append(es, graphEdge{a: vertex(l.Ends[0]), b: id, aTip: tip(l.Ends[0]), bTip: l.Kind})
		}
	}
	// A cni attachment joins its endpoint to the node its plugins ran in,
	// with the address the IPAM plugin gave (known once the lab is up).
	for _, c := range p.CNI {
		es = append(es, graphEdge{a: "node_" + c.Host, b: "node_" + c.Node, aTip: "cni " + c.Network,
			bTip: tip(Iface{Name: c.Interface, Addresses: c.Addresses()})})
	}
	return vs, es
}

func tip(e Iface) string {
	parts := []string{e.Name}
	for _, a := range e.Addresses {
		parts = append(parts, a.String())
	}
	return strings.Join(parts, " ")
}

func graphID(s string) string { return strings.NewReplacer("-", "_", ".", "_").Replace(s) }

// Mermaid renders the plan as a Mermaid flowchart.
func (p *Plan) Mermaid() string {
	var b strings.Builder
	vs, es := p.graph()
	fmt.Fprintf(&b, "%%%% lab %s\ngraph LR\n", p.Lab)
	for _, v := range vs {
		switch v.kind {
		case "node":
			fmt.Fprintf(&b, "  %s[\"%s\"]\n", graphID(v.id), v.label)
		case "bridge":
			fmt.Fprintf(&b, "  %s((\"%s\"))\n", graphID(v.id), v.label)
		case "host":
			fmt.Fprintf(&b, "  %s[/\"%s\"/]\n", graphID(v.id), v.label)
		}
	}
	for _, e := range es {
		label := strings.Trim(e.aTip+" — "+e.bTip, " —")
		if label == "" {
			fmt.Fprintf(&b, "  %s --- %s\n", graphID(e.a), graphID(e.b))
			continue
		}
		fmt.Fprintf(&b, "  %s ---|\"%s\"| %s\n", graphID(e.a), label, graphID(e.b))
	}
	return b.String()
}

// Dot renders the plan as a Graphviz graph.
func (p *Plan) Dot() string {
	var b strings.Builder
	vs, es := p.graph()
	fmt.Fprintf(&b, "graph %q {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n", p.Lab)
	shapes := map[string]string{"node": "box", "bridge": "circle", "host": "parallelogram"}
	for _, v := range vs {
		fmt.Fprintf(&b, "  %q [label=%q, shape=%s];\n", v.id, v.label, shapes[v.kind])
	}
	for _, e := range es {
		fmt.Fprintf(&b, "  %q -- %q [taillabel=%q, headlabel=%q];\n", e.a, e.b, e.aTip, e.bTip)
	}
	b.WriteString("}\n")
	return b.String()
}
