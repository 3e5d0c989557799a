package measure

import (
	"fmt"
	"math"
	"slices"
)

// Spread describes the repeats of one scalar (one p99, one throughput per run).
type Spread struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// Stddev is the sample standard deviation (n-1), 0 for fewer than 2 values.
	Stddev float64 `json:"stddev"`
	// RelSpread is (Max-Min)/|Median|, 0 when the median is 0.
	RelSpread float64 `json:"rel_spread"`
}

// SpreadOf computes the Spread of xs; an empty xs gives the zero Spread.
func SpreadOf(xs []float64) Spread {
	n := len(xs)
	if n == 0 {
		return Spread{}
	}
	s := slices.Sorted(slices.Values(xs))
	sp := Spread{N: n, Min: s[0], Max: s[n-1]}
	if n%2 == 1 {
		sp.Median = s[n/2]
	} else {
		sp.Median = (s[n/2-1] + s[n/2]) / 2
	}
	var sum float64
	for _, x := range s {
		sum += x
	}
	sp.Mean = sum / float64(n)
	if n > 1 {
		var ss float64
		for _, x := range s {
			ss += (x - sp.Mean) * (x - sp.Mean)
		}
		sp.Stddev = math.Sqrt(ss / float64(n-1))
	}
	if sp.Median != 0 {
		sp.RelSpread = (sp.Max - sp.Min) / math.Abs(sp.Median)
	}
	return sp
}

// MaxChance is the largest probability of a chance result Compare accepts.
const MaxChance = 0.05

// Comparison says whether variant B differs from variant A by more than the
// run-to-run spread.
type Comparison struct {
	A Spread `json:"a"`
	B Spread `json:"b"`
	// Diff is B.Median - A.Median.
	Diff float64 `json:"diff"`
	// Ratio is B.Median / A.Median, 0 when A.Median is 0.
	Ratio float64 `json:"ratio"`
	// Chance is the probability that the two ranges would fail to overlap if
	// both variants were the same: 2 / C(A.N+B.N, A.N).
	Chance      float64 `json:"chance"`
	Significant bool    `json:"significant"`
	// Reason explains the verdict in one line.
	Reason string `json:"reason"`
}

// Compare compares the repeats a and b of two variants.
//
// The rule: B differs from A when the ranges [min, max] of their repeats do
// not overlap (touching counts as overlapping) and that is unlikely to be
// luck. It needs no assumption about the distribution of run results, which
// in a lab are rarely normal (one noisy run is common), and it has an exact
// chance level: if both variants drew their runs from one distribution, every
// ordering of the A.N+B.N runs would be equally likely and the ranges would
// be disjoint only when all of A's runs sort below or above all of B's, with
// probability 2/C(A.N+B.N, A.N). Compare requires that to be at most
// MaxChance (5%), which takes at least 4 repeats of each variant (3+3 repeats
// separate by luck 10% of the time).
//
// The rule assumes repeats are exchangeable: interleave the variants
// (A B A B ...) so that drift over time (thermal, page cache, background
// work) does not pass for a difference.
func Compare(a, b []float64) Comparison {
	c := Comparison{A: SpreadOf(a), B: SpreadOf(b)}
	if c.A.N == 0 || c.B.N == 0 {
		c.Reason = fmt.Sprintf("nothing to compare: %d repeats of a, %d of b", c.A.N, c.B.N)
		return c
	}
	c.Diff = c.B.Median - c.A.Median
	if c.A.Median != 0 {
		c.Ratio = c.B.Median / c.A.Median
	}
	c.Chance = 2 / binomial(c.A.N+c.B.N, c.A.N)
	ranges := fmt.Sprintf("a [%.4g, %.4g] and b [%.4g, %.4g]", c.A.Min, c.A.Max, c.B.Min, c.B.Max)
	disjoint := c.A.Max < c.B.Min || c.B.Max < c.A.Min
	switch {
	case !disjoint:
		c.Reason = fmt.Sprintf("difference %.4g is within the spread: ranges %s overlap", c.Diff, ranges)
	case c.Chance > MaxChance:
		c.Reason = fmt.Sprintf("ranges %s do not overlap, but with %d and %d repeats that happens by chance %.1f%% of the time; repeat more",
			ranges, c.A.N, c.B.N, 100*c.Chance)
	default:
		c.Significant = true
		dir := "higher"
		if c.Diff < 0 {
			dir = "lower"
		}
		c.Reason = fmt.Sprintf("b is %s by %.4g (ratio %.3g): ranges %s do not overlap (chance %.2g%% with %d and %d repeats)",
			dir, math.Abs(c.Diff), c.Ratio, ranges, 100*c.Chance, c.A.N, c.B.N)
	}
	return c
}

// binomial returns C(n, k) as a float64 (+Inf beyond its range, which makes
// the chance 0 as it should be).
func binomial(n, k int) float64 {
	k = min(k, n-k)
	r := 1.0
	for i := 1; i <= k; i++ {
		r = r * float64(n-k+i) / float64(i)
	}
	return r
}
