package netns

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestObserveDrift(t *testing.T) {
	lab := uniqueLab(t)
	j := newLab(t, lab)
	ctx := context.Background()
	p := routedPlan(lab)
	if _, err := Apply(ctx, nil, p, Options{Journal: j}); err != nil {
		t.Fatal(err)
	}
	st, err := Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Drift(); len(d) > 0 {
		t.Fatalf("drift right after apply: %+v", d)
	}
	// One item per namespace, interface, route and sysctl of the plan.
	if len(st.Items) != 3+4+4+2 {
		t.Errorf("%d items: %+v", len(st.Items), st.Items)
	}

	h1, r, h2 := topologiesNS(lab, "h1"), topologiesNS(lab, "r"), topologiesNS(lab, "h2")
	for _, c := range [][]string{
		{h1, "ip", "route", "del", "default"},
		{h1, "ip", "route", "add", "198.18.99.0/24", "via", "198.18.1.1", "proto", "static"},
		{r, "sysctl", "-qw", "net.ipv4.ip_forward=0"},
		{r, "ip", "link", "set", "eth1", "down"},
		{r, "ip", "link", "add", "x0", "type", "veth", "peer", "name", "x1"},
		{h2, "ip", "addr", "del", "198.18.2.2/24", "dev", "eth0"},
	} {
		inNS(t, c[0], c[1], c[2:]...)
	}
	st, err = Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range st.Drift() {
		got = append(got, strings.Join([]string{it.Namespace, it.Kind, it.Name, it.State, it.Want, it.Got}, "|"))
	}
	want := []string{
		h1 + "|route|0.0.0.0/0|missing|via 198.18.1.1|",
		h1 + "|route|198.18.99.0/24|extra||via 198.18.1.1 dev eth0",
		// Down also flushes the IPv6 address (keep_addr_on_down is 0).
		r + "|interface|eth1|different|up=true addresses=198.18.2.1/24,2001:db8:2::1/64|up=false addresses=198.18.2.1/24",
		r + "|interface|x0|extra||veth",
		r + "|interface|x1|extra||veth",
		r + "|sysctl|net.ipv4.ip_forward|different|1|0",
		h2 + "|interface|eth0|different|addresses=198.18.2.2/24,2001:db8:2::2/64|addresses=2001:db8:2::2/64",
		// The kernel drops a route whose gateway is no longer reachable.
		h2 + "|route|198.18.1.0/24 metric 10|missing|via 198.18.2.1|",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("drift:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}

	// A namespace that is gone is one missing item.
	if out, err := exec.Command("ip", "netns", "del", h2).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	st, err = Observe(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range st.Items {
		if it.Namespace == h2 {
			n++
			if it.Kind != "namespace" || it.State != StateMissing {
				t.Errorf("deleted namespace: %+v", it)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d items for the deleted namespace", n)
	}
}
