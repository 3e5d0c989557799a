package measure

import (
	"encoding/json"
	"math"
	"strings"
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

// TestDecideCases: the cases the range-overlap rule decided before, at
// one look with no margin (only the direction asked).
func TestDecideCases(t *testing.T) {
	test := Test{Alpha: 0.05, Looks: 1}
	for _, tt := range []struct {
		name string
		a, b []float64
		want Verdict
		text string
	}{
		{"overlapping ranges", []float64{10, 12, 14, 11, 13}, []float64{12.5, 15, 14.5, 13.5, 16}, Undecided, "holds no change"},
		{"b clearly higher", []float64{10, 12, 14, 11, 13}, []float64{20, 21, 19, 22, 20.5}, Higher, "higher ["},
		{"b clearly lower", []float64{50, 52, 51, 53}, []float64{30, 31, 29, 30}, Lower, "lower ["},
		{"too few repeats to tell", []float64{10, 11, 12}, []float64{20, 21, 22}, Undecided, "too few"},
		{"touching ranges", []float64{1, 2, 3, 4, 5}, []float64{5, 6, 7, 8, 9}, Higher, "higher ["},
		{"no repeats", nil, []float64{1}, Undecided, "nothing to compare"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := test.Decide(tt.a, tt.b)
			if d.Verdict != tt.want || !strings.Contains(d.Reason, tt.text) {
				t.Errorf("%v %q; want %v containing %q", d.Verdict, d.Reason, tt.want, tt.text)
			}
			if _, err := json.Marshal(d); err != nil && d.High < 1e300 {
				t.Errorf("decision does not marshal: %v", err)
			}
		})
	}
}

func close(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func closeSpread(a, b Spread) bool {
	return a.N == b.N && close(a.Median, b.Median) && close(a.Mean, b.Mean) && close(a.Min, b.Min) &&
		close(a.Max, b.Max) && close(a.Stddev, b.Stddev) && close(a.RelSpread, b.RelSpread)
}
