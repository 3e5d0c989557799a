package netns

import (
	"context"
	"strings"
	"testing"

	"github.com/labctl/labctl/topologies"
)

// TestApplyFailureRollsBack makes Apply fail midway in several ways and
// checks that the rollback leaves nothing: no namespace, no interface
// carrying the lab's marker in the host, the moved stand-in back in the
// host as it was, and a journal that knows of no object.
func TestApplyFailureRollsBack(t *testing.T) {
	cases := []struct {
		name string
		// plan returns the failing plan; base is a working plan with a
		// moved host interface, which the rollback must give back.
		plan func(base *topologies.Plan) *topologies.Plan
		want []string // substrings of the error
	}{
		{
			name: "two interfaces with one name",
			plan: func(p *topologies.Plan) *topologies.Plan {
				p.Nodes = append(p.Nodes, topologies.Node{Name: "m3", Namespace: topologies.Namespace(p.Lab, "m3")})
				p.Links = append(p.Links,
					veth(end(p, "m1", "eth0", "198.18.30.1/24"), end(p, "m3", "eth0", "198.18.30.3/24")),
					veth(end(p, "m2", "eth0", "198.18.31.2/24"), end(p, "m3", "eth0", "198.18.31.3/24")),
				)
				return p
			},
			want: []string{"end m3:eth0: create veth: an interface eth0 already exists in labctl-", "file exists", "(rolled back)"},
		},
		{
			name: "netem",
			plan: func(p *topologies.Plan) *topologies.Plan {
				a, b := end(p, "m1", "eth0", "198.18.30.1/24"), end(p, "m2", "eth0", "198.18.30.2/24")
				a.Qdisc = &topologies.Qdisc{Kind: "netem", Delay: 10_000_000, LossPct: 1}
				p.Links = append(p.Links, veth(a, b))
				return p
			},
			want: []string{"link veth:m1:eth0=m2:eth0: end m1:eth0: qdisc netem: this kernel has no netem support (sch_netem is not built in"},
		},
		{
			name: "a sysctl a node does not have",
			plan: func(p *topologies.Plan) *topologies.Plan {
				p.Nodes[0].Sysctls = []topologies.Sysctl{{Key: "net.core.busy_read", Value: "50"}}
				return p
			},
			want: []string{"node m1: sysctl net.core.busy_read: does not exist in this namespace"},
		},
		{
			name: "a failing command",
			plan: func(p *topologies.Plan) *topologies.Plan {
				p.Nodes[1].Exec = []string{"true", "echo no such thing >&2; exit 3"}
				return p
			},
			want: []string{"node m2: exec[1]: sh -c echo no such thing >&2; exit 3: exit status 3: no such thing"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lab := uniqueLab(t)
			j := newLab(t, lab)
			base, _, moved := hostNICs(t, lab)
			p := c.plan(base)
			_, err := Apply(context.Background(), nil, p, Options{Journal: j})
			if err == nil && c.name == "netem" {
				// A kernel with sch_netem: then the qdisc must be there.
				if q := ipQdisc(t, topologiesNS(lab, "m1"), "eth0"); q["kind"] != "netem" {
					t.Fatalf("netem accepted, but the root qdisc is %v", q)
				}
				return
			}
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoLab(t, lab)
			assertRestored(t, moved)
			if objs := j.objects(OpBegin, OpDone); len(objs) > 0 {
				t.Errorf("the journal still knows of %q", names(objs))
			}
		})
	}
}

// TestApplyFailureKeepsLive: a reconcile whose new link collides with a
// live interface fails, and its rollback deletes only what it made: the
// interface in the way, the live lab's, stays.
func TestApplyFailureKeepsLive(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	ctx := context.Background()
	p1 := twoNodePlanPlain(lab)
	if _, err := Apply(ctx, nil, p1, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	p2 := twoNodePlanPlain(lab)
	p2.Nodes = append(p2.Nodes, topologies.Node{Name: "n3", Namespace: topologies.Namespace(lab, "n3")})
	p2.Links = append(p2.Links, veth(end(p2, "n3", "eth0", "198.18.1.3/24"), end(p2, "n1", "eth0", "198.18.1.1/24")))
	_, err := Apply(ctx, p1, p2, Options{Journal: j})
	if err == nil || !strings.Contains(err.Error(), "an interface eth0 already exists in "+p1.Nodes[0].Namespace) {
		t.Fatalf("apply with a colliding interface: %v", err)
	}
	if Exists(topologies.Namespace(lab, "n3")) {
		t.Error("the rollback left n3")
	}
	ping(t, p1.Nodes[0].Namespace, "198.18.0.2")
	ch, err := Apply(ctx, p1, p1, Options{Journal: j})
	if err != nil || ch.Changed() {
		t.Errorf("the live lab changed: %s, %v", ch, err)
	}
}
