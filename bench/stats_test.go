package main

import "testing"

// The 95% interval of a median from n values is between the order
// statistics k and n+1-k of binomial tables: n=20 gives the 6th and the
// 15th, n=9 the 2nd and the 8th, n=5 nothing narrower than the range.
func TestMedianCI(t *testing.T) {
	for _, c := range []struct{ n, lo, hi int }{{20, 6, 15}, {9, 2, 8}, {5, 1, 5}} {
		var f figure
		for i := 1; i <= c.n; i++ {
			f = append(f, float64(i))
		}
		lo, hi := f.medianCI()
		if lo != float64(c.lo) || hi != float64(c.hi) {
			t.Errorf("n=%d: [%v .. %v], want [%d .. %d]", c.n, lo, hi, c.lo, c.hi)
		}
	}
}
