// Package all lists every experiment labctl ships; agents and the lab
// service use the same registry. Each experiment's package is named after
// it: tcp-low-latency in tcplowlatency, io-models in iomodels; conn-cost and
// conn-limits share package conns (and its connection pool and sock_diag
// reader).
package all

import (
	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/busypoll"
	"github.com/labctl/labctl/experiments/captureorder"
	"github.com/labctl/labctl/experiments/conns"
	"github.com/labctl/labctl/experiments/iomodels"
	"github.com/labctl/labctl/experiments/paths"
	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/experiments/sndbuf"
	"github.com/labctl/labctl/experiments/softirq"
	"github.com/labctl/labctl/experiments/tcplowlatency"
	"github.com/labctl/labctl/experiments/zerocopy"
)

// Experiments lists every experiment labctl ships.
func Experiments() []experiments.Experiment {
	return []experiments.Experiment{
		rr.Experiment{},
		busypoll.Experiment{},
		zerocopy.Experiment{},
		iomodels.Experiment{}, tcplowlatency.Experiment{}, sndbuf.Experiment{},
		conns.Cost{}, conns.Limits{},
		paths.Experiment{}, captureorder.Experiment{}, softirq.Experiment{},
	}
}

// Registry returns a checked registry of every experiment (NewRegistry).
// Its checks fail only for a build whose experiments disagree with their
// specs, which TestRegistry finds before any such build ships; such a
// binary stops at start-up.
func Registry() *experiments.Registry {
	r, err := experiments.NewRegistry(Experiments()...)
	if err != nil {
		panic(err)
	}
	return r
}

// Agent returns the registry an agent runs roles from: unchecked, since
// the lab service that sends the roles checked it (experiments.Unchecked).
func Agent() *experiments.Registry {
	r, err := experiments.Unchecked(Experiments()...)
	if err != nil {
		panic(err)
	}
	return r
}
