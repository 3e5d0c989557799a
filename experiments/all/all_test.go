package all

import (
	"testing"

	"github.com/labctl/labctl/experiments"
)

// TestRegistry: every shipped experiment passes the registry's checks.
func TestRegistry(t *testing.T) {
	for _, e := range Experiments() {
		if _, err := experiments.NewRegistry(e); err != nil {
			t.Errorf("%v", err)
		}
	}
	if got := len(Agent().Specs()); got != len(Registry().Specs()) {
		t.Errorf("%d experiments registered", got)
	}
}

func BenchmarkRegistry(b *testing.B) {
	for b.Loop() {
		Registry()
	}
}
