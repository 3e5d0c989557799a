package experiments

import (
	"strconv"
	"time"

	"github.com/labctl/labctl/internal/measure"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Constructors for parameter specs, so that experiments declare their
// parameters in one line each.

// IntParam is an integer parameter with inclusive bounds.
func IntParam(name, help string, def, lo, hi int) *experimentv1.ParamSpec {
	return &experimentv1.ParamSpec{Name: name, Help: help, Kind: experimentv1.ParamKind_PARAM_KIND_INT,
		Default: strconv.Itoa(def), Min: strconv.Itoa(lo), Max: strconv.Itoa(hi)}
}

// DurationParam is a duration parameter with inclusive bounds.
func DurationParam(name, help string, def, lo, hi time.Duration) *experimentv1.ParamSpec {
	return &experimentv1.ParamSpec{Name: name, Help: help, Kind: experimentv1.ParamKind_PARAM_KIND_DURATION,
		Default: def.String(), Min: lo.String(), Max: hi.String()}
}

// SizeParam is a byte-size parameter with inclusive bounds.
func SizeParam(name, help string, def, lo, hi int64) *experimentv1.ParamSpec {
	return &experimentv1.ParamSpec{Name: name, Help: help, Kind: experimentv1.ParamKind_PARAM_KIND_SIZE,
		Default: FormatSize(def), Min: FormatSize(lo), Max: FormatSize(hi)}
}

// BoolParam is a true/false parameter.
func BoolParam(name, help string, def bool) *experimentv1.ParamSpec {
	return &experimentv1.ParamSpec{Name: name, Help: help, Kind: experimentv1.ParamKind_PARAM_KIND_BOOL, Default: strconv.FormatBool(def)}
}

// EnumParam is one of a fixed set of values.
func EnumParam(name, help, def string, choices ...string) *experimentv1.ParamSpec {
	return &experimentv1.ParamSpec{Name: name, Help: help, Kind: experimentv1.ParamKind_PARAM_KIND_ENUM, Default: def, Choices: choices}
}

// ListParam is a comma-separated list; each element is checked like a
// parameter of kind elem with the given bounds or choices.
func ListParam(name, help string, elem experimentv1.ParamKind, def, lo, hi string, choices ...string) *experimentv1.ParamSpec {
	return &experimentv1.ParamSpec{Name: name, Help: help, Kind: experimentv1.ParamKind_PARAM_KIND_LIST, Element: elem,
		Default: def, Min: lo, Max: hi, Choices: choices}
}

// Parameters most experiments share, with the same names and meanings
// everywhere.

// Repeats is how many times each variant runs; the spread across repeats
// is what a difference between variants is judged against.
func Repeats(def int) *experimentv1.ParamSpec {
	return IntParam("repeats", "times each variant runs; results report the spread across repeats", def, 1, 100)
}

// Duration is how long each measured step runs.
func Duration(def time.Duration) *experimentv1.ParamSpec {
	return DurationParam("duration", "measured time of each step (after warm-up)", def, 100*time.Millisecond, 10*time.Minute)
}

// Warmup runs before measuring, to fault pages in and settle caches.
func Warmup(def time.Duration) *experimentv1.ParamSpec {
	return DurationParam("warmup", "time each step runs before measuring", def, 0, time.Minute)
}

// CPUParam pins a role's thread to a CPU; -1 leaves it to the scheduler.
func CPUParam(role string) *experimentv1.ParamSpec {
	return IntParam(role+"_cpu", "pin the "+role+"'s measuring thread to this CPU (-1: not pinned)", -1, -1, 4095)
}

// A run that compares variants repeats them until its comparisons are
// decided or its budget is spent (docs/statistics.md): it looks at the
// data after the first repeats, then after each round that adds
// RoundRepeats more of the variants still undecided, up to max_repeats of
// each and within the time budget. The most looks a run can take is fixed
// by these parameters before any data is seen, so that each look can be
// made at alpha/looks.

// RoundRepeats is how many repeats of each undecided variant a round adds.
const RoundRepeats = 3

// MaxRepeats is the most repeats of a variant a run may reach by adding
// rounds; equal to repeats, it never adds any.
func MaxRepeats(def int) *experimentv1.ParamSpec {
	return IntParam("max_repeats", "most repeats of a variant, rounds of "+strconv.Itoa(RoundRepeats)+" added while a comparison is undecided (= repeats: none added)", def, 1, 100)
}

// Budget is the most time a run may take measuring, its added rounds
// included.
func Budget(def time.Duration) *experimentv1.ParamSpec {
	return DurationParam("time_budget", "most time the run measures, added rounds included (warm-up and duration of each step); the run stops adding rounds before it would pass it", def, time.Second, 24*time.Hour)
}

// Looks is the most times a run of p looks at its data: the first repeats,
// and each round that max_repeats leaves room for.
func Looks(p Params) int {
	if !p.Has("max_repeats") || !p.Has("repeats") {
		return 1
	}
	extra := p.Int("max_repeats") - p.Int("repeats")
	if extra <= 0 {
		return 1
	}
	return 1 + (extra+RoundRepeats-1)/RoundRepeats
}

// TestOf is the test a judge decides p's comparisons with: the error rate
// of every verdict, split over the run's looks, and the claim's margin.
func TestOf(p Params, margin float64) measure.Test {
	return measure.Test{Alpha: measure.DefaultAlpha, Looks: Looks(p), Margin: margin}
}
