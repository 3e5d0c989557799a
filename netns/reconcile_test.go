package netns

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/labctl/labctl/topologies"
)

// chainPlan is n1 - n2 - n3 with addresses on every link.
func chainPlan(lab string) *topologies.Plan {
	p := newPlan(lab, "n1", "n2", "n3")
	p.Links = []topologies.Link{
		veth(end(p, "n1", "eth0", "198.18.12.1/24"), end(p, "n2", "eth0", "198.18.12.2/24")),
		veth(end(p, "n2", "eth1", "198.18.23.2/24"), end(p, "n3", "eth0", "198.18.23.3/24")),
	}
	n3, _ := p.Node("n3")
	n3.Routes = []topologies.Route{{Dst: pfx("198.18.12.0/24"), Via: mustAddr("198.18.23.2")}}
	return p
}

func TestApplyIdempotentAndReconcile(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	ctx := context.Background()
	p1 := chainPlan(lab)
	if _, err := Apply(ctx, nil, p1, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}

	// A second up of the same plan changes nothing, and writes nothing.
	records := len(j.Records())
	ch, err := Apply(ctx, p1, p1, Options{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Changed() || len(ch.Unchanged) != 5 || !strings.HasPrefix(ch.String(), "no changes") {
		t.Errorf("second apply: %s", ch)
	}
	if n := len(j.Records()); n != records {
		t.Errorf("second apply wrote %d records", n-records)
	}

	// Add n4 and a link n3-n4, remove the link n1-n2, change n2's sysctl.
	n2Before := netnsInode(t, RunDir+"/"+topologiesNS(lab, "n2"))
	p2 := chainPlan(lab)
	p2.Nodes = append(p2.Nodes, topologies.Node{Name: "n4", Namespace: topologies.Namespace(lab, "n4")})
	p2.Links = append(p2.Links[1:], veth(end(p2, "n3", "eth1", "198.18.34.3/24"), end(p2, "n4", "eth0", "198.18.34.4/24")))
	p2.Nodes[1].Sysctls = []topologies.Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}}
	ch, err = Apply(ctx, p1, p2, Options{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	want := Change{
		Created:      []string{"node n4", "link veth:n3:eth1=n4:eth0"},
		Recreated:    []string{"node n2", "link veth:n2:eth1=n3:eth0"},
		Removed:      []string{"link veth:n1:eth0=n2:eth0"},
		Reconfigured: []string{"node n1", "node n3"},
		Unchanged:    []string{"node n1", "node n3"},
	}
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("reconcile:\n got %s\nwant %s", ch, want)
	}

	// The kernel agrees.
	n1, n2, n3 := topologiesNS(lab, "n1"), topologiesNS(lab, "n2"), topologiesNS(lab, "n3")
	if links := ipJSON(t, n1, "link", "show"); len(links) != 1 {
		t.Errorf("n1 still has interfaces besides lo: %v", links)
	}
	if netnsInode(t, RunDir+"/"+n2) == n2Before {
		t.Error("n2 was not recreated")
	}
	if v := strings.TrimSpace(inNS(t, n2, "sysctl", "-n", "net.ipv4.ip_forward")); v != "1" {
		t.Errorf("n2: ip_forward = %s", v)
	}
	// n3 lost its route with the old n2-n3 link, and got it back.
	if rt := ipJSON(t, n3, "route", "show", "198.18.12.0/24"); len(rt) != 1 || rt[0]["gateway"] != "198.18.23.2" {
		t.Errorf("n3: route to 198.18.12.0/24: %v", rt)
	}
	ping(t, n3, "198.18.34.4")
	ping(t, n2, "198.18.23.3")
	st, err := Observe(ctx, p2)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Drift(); len(d) > 0 {
		t.Errorf("drift after reconcile: %+v", d)
	}
	if ch, err := Apply(ctx, p2, p2, Options{Journal: j}); err != nil || ch.Changed() {
		t.Errorf("apply after reconcile: %s, %v", ch, err)
	}

	// Back to p1: everything p2 added goes, n1's link comes back.
	if _, err := Apply(ctx, p2, p1, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	if Exists(topologiesNS(lab, "n4")) {
		t.Error("n4 is still there")
	}
	ping(t, n1, "198.18.12.2")
}
