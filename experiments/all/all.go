// Package all lists every experiment labctl ships; agents and the lab
// service use the same registry.
package all

import (
	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/busypoll"
	"github.com/labctl/labctl/experiments/captureorder"
	"github.com/labctl/labctl/experiments/conncost"
	"github.com/labctl/labctl/experiments/iomodels"
	"github.com/labctl/labctl/experiments/lowlatency"
	"github.com/labctl/labctl/experiments/paths"
	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/experiments/sndbuf"
	"github.com/labctl/labctl/experiments/softirq"
	"github.com/labctl/labctl/experiments/zerocopy"
)

// Registry returns a registry of every experiment.
func Registry() *experiments.Registry {
	return experiments.NewRegistry(
		rr.Experiment{},
		busypoll.Experiment{},
		zerocopy.Experiment{},
		iomodels.Experiment{}, lowlatency.Experiment{}, sndbuf.Experiment{},
		conncost.Cost{}, conncost.Limits{},
		paths.Experiment{}, captureorder.Experiment{}, softirq.Experiment{},
	)
}
