package experiments

import (
	"reflect"
	"time"

	"github.com/labctl/labctl/internal/measure"
)

// A run that compares variants repeats them until its comparisons are
// decided or its budget is spent (docs/statistics.md): it looks at the
// data after the first repeats, then after each round that adds
// RoundRepeats more of the variants still undecided, up to max_repeats of
// each and within the time budget. The most looks a run can take is fixed
// by these parameters before any data is seen, so that each look can be
// made at alpha/looks.

// RoundRepeats is how many repeats of each undecided variant a round adds
// (max_repeats' help says it: keep them alike).
const RoundRepeats = 3

// Rounds are the parameters of a run that compares variants.
type Rounds struct {
	Repeats
	MaxRepeats int           `param:"max_repeats" min:"1" max:"100" help:"most repeats of a variant, rounds of 3 added while a comparison is undecided (= repeats: none added)"`
	Budget     time.Duration `param:"time_budget" min:"1s" max:"24h" help:"most time the run measures, added rounds included (warm-up and duration of each step); the run stops adding rounds before it would pass it"`
}

// RoundsOf reads the rounds of any experiment's parameters: those of an
// experiment without them are the zero Rounds, one look and no budget.
func RoundsOf(p Params) Rounds {
	var r Rounds
	if p.decode(reflect.ValueOf(&r).Elem()) != nil {
		return Rounds{}
	}
	return r
}

// Looks is the most times a run looks at its data: the first repeats, and
// each round that max_repeats leaves room for.
func (r Rounds) Looks() int {
	extra := r.MaxRepeats - r.Repeats.Repeats
	if extra <= 0 {
		return 1
	}
	return 1 + (extra+RoundRepeats-1)/RoundRepeats
}

// Test is the test a judge decides the run's comparisons with: the error
// rate of every verdict, split over the run's looks, and the claim's
// margin (0: only the direction matters).
func (r Rounds) Test(margin float64) measure.Test {
	return measure.Test{Alpha: measure.DefaultAlpha, Looks: r.Looks(), Margin: margin}
}
