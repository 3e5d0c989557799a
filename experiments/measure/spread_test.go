package measure

import (
	"encoding/json"
	"math"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		name string
		xs   []float64
		want Spread
	}{
		{"empty", nil, Spread{}},
		{"one", []float64{4}, Spread{N: 1, Median: 4, Mean: 4, Min: 4, Max: 4}},
		{"odd, unsorted", []float64{9, 1, 5}, Spread{N: 3, Median: 5, Mean: 5, Min: 1, Max: 9, Stddev: 4, RelSpread: 1.6}},
		{"even", []float64{1, 2, 3, 4}, Spread{N: 4, Median: 2.5, Mean: 2.5, Min: 1, Max: 4, Stddev: math.Sqrt(5.0 / 3), RelSpread: 1.2}},
		{"zero median", []float64{-1, 0, 1}, Spread{N: 3, Median: 0, Mean: 0, Min: -1, Max: 1, Stddev: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SpreadOf(tt.xs); !closeSpread(got, tt.want) {
				t.Errorf("SpreadOf(%v)\n got %+v\nwant %+v", tt.xs, got, tt.want)
			}
		})
	}
}

func TestSpreadOfLeavesInputAlone(t *testing.T) {
	xs := []float64{3, 1, 2}
	SpreadOf(xs)
	if xs[0] != 3 || xs[1] != 1 || xs[2] != 2 {
		t.Errorf("SpreadOf reordered its input: %v", xs)
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name        string
		a, b        []float64
		significant bool
		diff, ratio float64
		reason      string
	}{
		{
			name: "overlapping ranges",
			a:    []float64{10, 12, 14, 11, 13}, b: []float64{12.5, 15, 14.5, 13.5, 16},
			diff: 2.5, ratio: 14.5 / 12,
			reason: "difference 2.5 is within the spread: ranges a [10, 14] and b [12.5, 16] overlap",
		},
		{
			name: "b clearly higher",
			a:    []float64{10, 12, 14, 11, 13}, b: []float64{20, 21, 19, 22, 20.5},
			significant: true, diff: 8.5, ratio: 1.7083333333333333,
			reason: "b is higher by 8.5 (ratio 1.71): ranges a [10, 14] and b [19, 22] do not overlap (chance 0.79% with 5 and 5 repeats)",
		},
		{
			name: "b clearly lower",
			a:    []float64{50, 52, 51, 53}, b: []float64{30, 31, 29, 30},
			significant: true, diff: -21.5, ratio: 30.0 / 51.5,
			reason: "b is lower by 21.5 (ratio 0.583): ranges a [50, 53] and b [29, 31] do not overlap (chance 2.9% with 4 and 4 repeats)",
		},
		{
			name: "too few repeats to tell",
			a:    []float64{10, 11, 12}, b: []float64{20, 21, 22},
			diff: 10, ratio: 21.0 / 11,
			reason: "ranges a [10, 12] and b [20, 22] do not overlap, but with 3 and 3 repeats that happens by chance 10.0% of the time; repeat more",
		},
		{
			name: "touching ranges overlap",
			a:    []float64{1, 2, 3, 4, 5}, b: []float64{5, 6, 7, 8, 9},
			diff: 4, ratio: 7.0 / 3,
			reason: "difference 4 is within the spread: ranges a [1, 5] and b [5, 9] overlap",
		},
		{
			name: "no repeats",
			a:    nil, b: []float64{1},
			reason: "nothing to compare: 0 repeats of a, 1 of b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Compare(tt.a, tt.b)
			if c.Significant != tt.significant || !close(c.Diff, tt.diff) || !close(c.Ratio, tt.ratio) || c.Reason != tt.reason {
				t.Errorf("Compare = significant %v diff %v ratio %v\n  reason %q\nwant significant %v diff %v ratio %v\n  reason %q",
					c.Significant, c.Diff, c.Ratio, c.Reason, tt.significant, tt.diff, tt.ratio, tt.reason)
			}
			if _, err := json.Marshal(c); err != nil {
				t.Errorf("comparison does not marshal: %v", err)
			}
		})
	}
}

func TestBinomial(t *testing.T) {
	for _, tt := range []struct {
		n, k int
		want float64
	}{{2, 1, 2}, {6, 3, 20}, {8, 4, 70}, {10, 5, 252}, {10, 3, 120}, {7, 0, 1}} {
		if got := binomial(tt.n, tt.k); got != tt.want {
			t.Errorf("binomial(%d, %d) = %v, want %v", tt.n, tt.k, got, tt.want)
		}
	}
}

func close(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func closeSpread(a, b Spread) bool {
	return a.N == b.N && close(a.Median, b.Median) && close(a.Mean, b.Mean) && close(a.Min, b.Min) &&
		close(a.Max, b.Max) && close(a.Stddev, b.Stddev) && close(a.RelSpread, b.RelSpread)
}
