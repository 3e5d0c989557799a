package netns

import (
	"reflect"
	"testing"

	"github.com/labctl/labctl/topologies"
)

func TestComputeDelta(t *testing.T) {
	const lab = "x"
	chain := func() *topologies.Plan { // n1 - n2 - n3
		p := newPlan(lab, "n1", "n2", "n3")
		p.Links = []topologies.Link{
			veth(end(p, "n1", "eth0"), end(p, "n2", "eth0")),
			veth(end(p, "n2", "eth1"), end(p, "n3", "eth0")),
		}
		return p
	}
	const l12, l23 = "link veth:n1:eth0=n2:eth0", "link veth:n2:eth1=n3:eth0"
	cases := []struct {
		name       string
		live, next *topologies.Plan
		want       Change
	}{
		{
			name: "new lab",
			live: newPlan(lab),
			next: chain(),
			want: Change{Created: []string{"node n1", "node n2", "node n3", l12, l23}},
		},
		{
			name: "same plan",
			live: chain(),
			next: chain(),
			want: Change{Unchanged: []string{"node n1", "node n2", "node n3", l12, l23}},
		},
		{
			name: "add a node and a link, remove a link, change a sysctl",
			live: chain(),
			next: func() *topologies.Plan {
				p := chain()
				p.Nodes = append(p.Nodes, topologies.Node{Name: "n4", Namespace: topologies.Namespace(lab, "n4")})
				p.Links = append(p.Links[1:], veth(end(p, "n3", "eth1"), end(p, "n4", "eth0")))
				p.Nodes[1].Sysctls = []topologies.Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}}
				return p
			}(),
			want: Change{
				Created:      []string{"node n4", "link veth:n3:eth1=n4:eth0"},
				Recreated:    []string{"node n2", l23},
				Removed:      []string{l12},
				Reconfigured: []string{"node n1", "node n3"},
				Unchanged:    []string{"node n1", "node n3"},
			},
		},
		{
			name: "change a link's mtu",
			live: chain(),
			next: func() *topologies.Plan {
				p := chain()
				p.Links[0].Ends[1].MTU = 9000
				return p
			}(),
			want: Change{
				Recreated:    []string{l12},
				Reconfigured: []string{"node n1", "node n2"},
				Unchanged:    []string{"node n1", "node n2", "node n3", l23},
			},
		},
		{
			name: "remove a node with its link",
			live: chain(),
			next: func() *topologies.Plan {
				p := chain()
				p.Nodes = p.Nodes[:2]
				p.Links = p.Links[:1]
				return p
			}(),
			want: Change{
				Removed:      []string{"node n3", l23},
				Reconfigured: []string{"node n2"},
				Unchanged:    []string{"node n1", "node n2", l12},
			},
		},
		{
			name: "link position in the file does not matter",
			live: chain(),
			next: func() *topologies.Plan {
				p := chain()
				p.Links[0].Pos = topologies.Pos{File: "t.yaml", Line: 7, Column: 3}
				return p
			}(),
			want: Change{Unchanged: []string{"node n1", "node n2", "node n3", l12, l23}},
		},
		{
			name: "change a bridge's mtu",
			live: bridgePlan(lab),
			next: func() *topologies.Plan {
				p := bridgePlan(lab)
				p.Bridges[1].MTU = 9000
				return p
			}(),
			want: Change{
				Recreated:    []string{"bridge br1", "link bridge:br1:n4:eth0", "link wire:br1=br0"},
				Reconfigured: []string{"node n4"},
				Unchanged: []string{"node n1", "node n2", "node n3", "node n4", "fabric", "bridge br0",
					"link bridge:br0:n1:eth0", "link bridge:br0:n2:eth0", "link bridge:br0:n3:eth0"},
			},
		},
		{
			name: "remove every bridge",
			live: bridgePlan(lab),
			next: newPlan(lab, "n1", "n2", "n3", "n4"),
			want: Change{
				Removed: []string{"fabric", "bridge br0", "bridge br1", "link bridge:br0:n1:eth0", "link bridge:br0:n2:eth0",
					"link bridge:br0:n3:eth0", "link bridge:br1:n4:eth0", "link wire:br1=br0"},
				Reconfigured: []string{"node n1", "node n2", "node n3", "node n4"},
				Unchanged:    []string{"node n1", "node n2", "node n3", "node n4"},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := computeDelta(c.live, c.next)
			if got := d.change(); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("change:\n got %#v\nwant %#v", got, c.want)
			}
			// Removed objects come before recreated ones, so their names
			// are free before anything is created.
			seenRecreated := false
			for _, o := range d.remove {
				recreated := false
				for _, n := range d.create {
					if n.key() == o.key() {
						recreated = true
					}
				}
				if seenRecreated && !recreated {
					t.Fatalf("removed %s comes after a recreated object", o)
				}
				seenRecreated = seenRecreated || recreated
			}
		})
	}
}

func TestChangeString(t *testing.T) {
	cases := []struct {
		c    Change
		want string
	}{
		{Change{}, "no changes (0 unchanged)"},
		{Change{Unchanged: []string{"node n1", "node n2"}}, "no changes (2 unchanged)"},
		{Change{Created: []string{"node n3", "link l"}, Removed: []string{"link k"}, Unchanged: []string{"node n1"}},
			"created 2 (node n3, link l); removed 1 (link k); unchanged 1"},
		{Change{Recreated: []string{"node n2"}, Reconfigured: []string{"node n1"}},
			"recreated 1 (node n2); reconfigured 1 (node n1)"},
	}
	for _, c := range cases {
		if got := c.c.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
		if c.c.Changed() != (c.want[:2] != "no") {
			t.Errorf("Changed() = %v for %q", c.c.Changed(), c.want)
		}
	}
}
