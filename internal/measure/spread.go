package measure

import (
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
