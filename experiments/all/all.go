// Package all lists every experiment labctl ships; agents and the lab
// service use the same registry.
package all

import (
	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/experiments/zerocopy"
)

// Registry returns a registry of every experiment.
func Registry() *experiments.Registry {
	return experiments.NewRegistry(
		rr.Experiment{},
		zerocopy.Experiment{},
	)
}
