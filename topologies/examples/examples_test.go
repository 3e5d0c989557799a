package examples

import (
	"testing"

	"github.com/labctl/labctl/topologies"
)

func TestLinearPlans(t *testing.T) {
	top, err := topologies.Decode("linear.yaml", Linear("lin", 50, false))
	if err != nil {
		t.Fatal(err)
	}
	p, err := top.Plan()
	if err != nil {
		t.Fatal(err)
	}
	// Mininet's linear,50: 50 hosts, 50 switches, 99 links.
	if len(p.Nodes) != 50 || len(p.Bridges) != 50 || len(p.Links) != 99 {
		t.Errorf("%d nodes, %d bridges, %d links", len(p.Nodes), len(p.Bridges), len(p.Links))
	}
	if p.Nodes[0].Agent {
		t.Error("agents were not asked for")
	}
}

func TestEveryExampleIsEmbedded(t *testing.T) {
	for _, name := range []string{"quickstart", "paths", "capture-order", "busy-poll", "routed"} {
		if _, _, err := Read(name); err != nil {
			t.Errorf("example %s: %v", name, err)
		}
	}
}
