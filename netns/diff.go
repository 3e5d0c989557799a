package netns

import (
	"bytes"
	"encoding/json"

	"github.com/labctl/labctl/topologies"
)

// delta is what turns the live plan into the next one. Nodes, bridges and
// links are matched by name and ID; a matched object whose description
// differs is recreated, and so is every link that touches a recreated node
// or bridge (its ends die with the node's namespace or lose their bridge).
type delta struct {
	remove []Object // live objects to delete: removed, or about to be recreated
	create []Object // next objects to make: added, or recreated
	same   []Object // next objects left alone
	// reconfigure lists unchanged nodes that an added, removed or recreated
	// link touches: the kernel drops routes through a deleted device and
	// per-interface sysctls with it, so their routes and sysctls are set
	// again.
	reconfigure []string
}

// objects lists a plan's objects in creation order: nodes, the fabric,
// bridges, links, cni attachments.
func objects(p *topologies.Plan) []Object {
	var out []Object
	for i := range p.Nodes {
		n := &p.Nodes[i]
		out = append(out, Object{Kind: KindNode, Name: n.Name, Namespace: n.Namespace, Node: n})
	}
	if p.Fabric != "" {
		out = append(out, Object{Kind: KindFabric, Name: p.Fabric, Namespace: p.Fabric})
	}
	for i := range p.Bridges {
		b := &p.Bridges[i]
		out = append(out, Object{Kind: KindBridge, Name: b.Name, Namespace: p.Fabric, Bridge: b})
	}
	for i := range p.Links {
		l := &p.Links[i]
		out = append(out, Object{Kind: KindLink, Name: l.ID, Link: l})
	}
	for i := range p.CNI {
		c := &p.CNI[i]
		out = append(out, Object{Kind: KindCNI, Name: c.ID, CNI: c})
	}
	return out
}

// sameObject reports whether two objects with the same key describe the
// same kernel state. Comparing the JSON encodings compares exactly what the
// journal stores (Link.Pos, which only locates the link in a file, is not
// part of it).
func sameObject(a, b Object) bool {
	if a.Kind == KindCNI && a.CNI != nil && b.CNI != nil {
		// What the plugins reported is not part of what was asked for.
		ca, cb := *a.CNI, *b.CNI
		ca.Result, cb.Result = nil, nil
		a.CNI, b.CNI = &ca, &cb
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// computeDelta compares live (what exists) with next (what is wanted). An
// unchanged cni attachment of next takes the live one's Result, so that
// next, which up saves as the lab's plan, keeps what the plugins reported.
func computeDelta(live, next *topologies.Plan) delta {
	liveObjs := objects(live)
	byKey := make(map[objKey]Object, len(liveObjs))
	for _, o := range liveObjs {
		byKey[o.key()] = o
	}

	var d delta
	wanted := map[objKey]bool{}
	recreated := map[objKey]bool{} // node and bridge keys
	for _, o := range objects(next) {
		wanted[o.key()] = true
		old, exists := byKey[o.key()]
		switch {
		case !exists:
			d.create = append(d.create, o)
		case !sameObject(old, o) || o.Kind == KindLink && touchesRecreated(o.Link, recreated) ||
			o.Kind == KindCNI && cniTouchesRecreated(o.CNI, recreated):
			d.remove = append(d.remove, old)
			d.create = append(d.create, o)
			recreated[o.key()] = true
		default:
			if o.Kind == KindCNI {
				o.CNI.Result = old.CNI.Result // next's plan keeps what the plugins reported
			}
			d.same = append(d.same, o)
		}
	}
	var removed []Object
	for _, o := range liveObjs {
		if !wanted[o.key()] {
			removed = append(removed, o)
		}
	}
	// Removed objects come first so that their names are free before
	// anything is created.
	d.remove = append(removed, d.remove...)

	changedLinks := map[string]bool{} // node names with a link created or removed
	for _, list := range [][]Object{d.create, d.remove} {
		for _, o := range list {
			switch o.Kind {
			case KindLink:
				for _, e := range o.Link.Ends {
					changedLinks[e.Node] = true
				}
			case KindCNI:
				changedLinks[o.CNI.Node] = true
				changedLinks[o.CNI.Host] = true
			}
		}
	}
	for _, o := range d.same {
		if o.Kind == KindNode && changedLinks[o.Name] {
			d.reconfigure = append(d.reconfigure, o.Name)
		}
	}
	return d
}

// touchesRecreated reports whether a link has an end in a recreated node or on a
// recreated bridge.
func touchesRecreated(l *topologies.Link, recreated map[objKey]bool) bool {
	for _, e := range l.Ends {
		if e.Node != "" && recreated[objKey{KindNode, e.Node}] {
			return true
		}
		if e.Master != "" && recreated[objKey{KindBridge, e.Master}] {
			return true
		}
	}
	return false
}

// cniTouchesRecreated reports whether an attachment's endpoint or host
// node is recreated: its interfaces die with the namespace.
func cniTouchesRecreated(c *topologies.Attachment, recreated map[objKey]bool) bool {
	return recreated[objKey{KindNode, c.Node}] || recreated[objKey{KindNode, c.Host}]
}

// change summarises d for the caller.
func (d delta) change() Change {
	var c Change
	removing := map[objKey]bool{}
	for _, o := range d.remove {
		removing[o.key()] = true
	}
	creating := map[objKey]bool{}
	for _, o := range d.create {
		creating[o.key()] = true
		if removing[o.key()] {
			c.Recreated = append(c.Recreated, o.String())
		} else {
			c.Created = append(c.Created, o.String())
		}
	}
	for _, o := range d.remove {
		if !creating[o.key()] {
			c.Removed = append(c.Removed, o.String())
		}
	}
	for _, o := range d.same {
		c.Unchanged = append(c.Unchanged, o.String())
	}
	for _, n := range d.reconfigure {
		c.Reconfigured = append(c.Reconfigured, KindNode+" "+n)
	}
	return c
}
