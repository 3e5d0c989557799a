package measure

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestUCDF checks the exact null distribution against small cases counted
// by hand and against symmetry.
func TestUCDF(t *testing.T) {
	// n=m=2: the 6 arrangements have U = 0,1,2,2,3,4.
	want := []float64{1. / 6, 2. / 6, 4. / 6, 5. / 6, 1}
	got := uCDF(2, 2)
	for u := range want {
		if math.Abs(got[u]-want[u]) > 1e-12 {
			t.Errorf("P(U<=%d) = %v, want %v", u, got[u], want[u])
		}
	}
	// 5 and 5: complete separation has probability 1/252 each way.
	if c := uCDF(5, 5); math.Abs(c[0]-1./252) > 1e-12 {
		t.Errorf("P(U=0) for 5,5 = %v", c[0])
	}
	// Symmetric about nm/2, and n, m interchangeable.
	a, b := uCDF(4, 7), uCDF(7, 4)
	for u := 0; u < 28; u++ {
		if math.Abs(a[u]-b[u]) > 1e-12 || math.Abs(a[u]-(1-a[27-u])) > 1e-12 {
			t.Fatalf("u=%d: %v %v %v", u, a[u], b[u], 1-a[27-u])
		}
	}
}

func TestLehmannRank(t *testing.T) {
	for _, c := range []struct {
		n, m  int
		alpha float64
		k     int
	}{
		{5, 5, 0.05, 3},        // P(U<=2) = 4/252: 2*4/252 = 0.032 <= 0.05; P(U<=3) = 7/252 gives 0.056
		{5, 5, 0.0125, 1},      // only complete separation
		{4, 4, 0.0125, 0},      // 2/70 > 0.0125: no interval
		{100, 100, 0.05, 4197}, // normal approximation: 5000 - 1.96*409.3 - 0.5
	} {
		k, level := lehmannRank(c.n, c.m, c.alpha)
		if k != c.k || (k > 0 && level < 1-c.alpha) {
			t.Errorf("lehmannRank(%d, %d, %v) = %d (level %.4f), want %d", c.n, c.m, c.alpha, k, level, c.k)
		}
	}
}

func TestDecideWords(t *testing.T) {
	t1 := Test{Alpha: 0.05, Looks: 1, Margin: 0.05}
	a := []float64{100, 101, 99, 100.5, 99.5, 100.2}
	for _, c := range []struct {
		name string
		b    []float64
		v    Verdict
		text string
	}{
		{"clearly lower", []float64{80, 81, 79, 80.5, 79.5, 80.3}, Lower, "20.0% lower ["},
		{"the same", []float64{100.1, 100.9, 99.2, 100.4, 99.6, 100}, Same, "no difference larger than 5%"},
		{"wide and overlapping", []float64{60, 140, 100, 75, 130, 90}, Undecided, "undecided"},
	} {
		d := t1.Decide(a, c.b)
		if d.Verdict != c.v || !strings.Contains(d.Reason, c.text) {
			t.Errorf("%s: %v, %q", c.name, d.Verdict, d.Reason)
		}
	}
	// Counts that may be 0 are compared as a difference.
	if d := t1.Decide([]float64{1, 1.02, 0.98, 1, 1.01}, []float64{0, 0, 0.01, 0, 0}); d.Verdict != Lower || d.Ratio > 0.05 {
		t.Errorf("to zero: %v ratio %v %q", d.Verdict, d.Ratio, d.Reason)
	}
	if d := t1.Decide([]float64{0, 0, 0}, []float64{0, 0}); d.Verdict != Same {
		t.Errorf("zeros: %v %q", d.Verdict, d.Reason)
	}
	if d := (Test{Alpha: 0.05, Looks: 4, Margin: 0.05}).Decide(a[:3], a[:3]); d.Decided() || d.More <= 0 {
		t.Errorf("3 and 3 repeats at 98.75%%: %v, more %d: %q", d.Verdict, d.More, d.Reason)
	}
}

// sequential runs the procedure a run uses: look at n0 repeats of each,
// then add grow more of each per round, until a look decides or looks are
// spent.
func sequential(rng *rand.Rand, test Test, n0, grow int, a, b func(*rand.Rand) float64) Decision {
	var xa, xb []float64
	add := func(k int) {
		for range k {
			xa, xb = append(xa, a(rng)), append(xb, b(rng))
		}
	}
	add(n0)
	var d Decision
	for look := 1; look <= test.Looks; look++ {
		d = test.Decide(xa, xb)
		if d.Decided() {
			return d
		}
		add(grow)
	}
	return d
}

// noisy draws repeats of a variant whose true value is center: lognormal
// noise of relative size sd, and one repeat in outlier a disturbed one
// (a noisy neighbour on the VM) running 30% slow.
func noisy(center, sd float64, outlier int) func(*rand.Rand) float64 {
	return func(r *rand.Rand) float64 {
		x := center * math.Exp(sd*r.NormFloat64())
		if outlier > 0 && r.IntN(outlier) == 0 {
			x *= 1.3
		}
		return x
	}
}

// TestErrorRates is the Monte Carlo the docs cite: over many simulated
// sequential runs with known effects, a wrong verdict (a difference where
// there is none, sameness where the difference is at the margin or far
// beyond it) happens in at most Alpha of them, and true effects are found.
func TestErrorRates(t *testing.T) {
	const sims = 2000
	test := Test{Alpha: 0.05, Looks: 4, Margin: 0.05}
	rng := rand.New(rand.NewPCG(1, 2))
	rate := func(a, b func(*rand.Rand) float64, wrong func(Decision) bool) float64 {
		n := 0
		for range sims {
			if wrong(sequential(rng, test, 5, 3, a, b)) {
				n++
			}
		}
		return float64(n) / sims
	}
	differs := func(d Decision) bool { return d.Differs() }
	same := func(d Decision) bool { return d.Verdict == Same }
	for _, c := range []struct {
		name  string
		a, b  func(*rand.Rand) float64
		wrong func(Decision) bool
		max   float64
	}{
		{"no effect, quiet: no difference claimed", noisy(20, 0.03, 0), noisy(20, 0.03, 0), differs, test.Alpha},
		{"no effect, outliers: no difference claimed", noisy(20, 0.05, 6), noisy(20, 0.05, 6), differs, test.Alpha},
		{"an effect at the margin: not called the same", noisy(20, 0.03, 0), noisy(20*1.05, 0.03, 0), same, test.Alpha},
		{"+50% with wide ranges: never the same", noisy(20, 0.25, 4), noisy(30, 0.25, 4), same, 0},
		{"-8% with outliers: not called higher", noisy(20, 0.04, 6), noisy(18.4, 0.04, 6), func(d Decision) bool { return d.Verdict == Higher || d.Verdict == Same }, test.Alpha},
	} {
		if got := rate(c.a, c.b, c.wrong); got > c.max {
			t.Errorf("%s: wrong in %.2f%% of %d runs, more than %.0f%%", c.name, 100*got, sims, 100*c.max)
		} else {
			t.Logf("%s: wrong in %.2f%% of %d runs", c.name, 100*got, sims)
		}
	}
	// And it decides what it can: a 20% effect in 3% noise, and sameness
	// in 1% noise, almost always within the looks.
	for _, c := range []struct {
		name string
		a, b func(*rand.Rand) float64
		want Verdict
	}{
		{"+20% in 3% noise", noisy(20, 0.03, 0), noisy(24, 0.03, 0), Higher},
		{"the same in 1% noise", noisy(20, 0.01, 0), noisy(20, 0.01, 0), Same},
	} {
		hits := 0
		for range sims {
			if sequential(rng, test, 5, 3, c.a, c.b).Verdict == c.want {
				hits++
			}
		}
		if float64(hits)/sims < 0.9 {
			t.Errorf("%s: decided %v in only %.1f%% of runs", c.name, c.want, 100*float64(hits)/sims)
		} else {
			t.Logf("%s: decided %v in %.1f%% of runs", c.name, c.want, 100*float64(hits)/sims)
		}
	}
}

func TestLocate(t *testing.T) {
	test := Test{Alpha: 0.05, Looks: 1, Margin: 0.25}
	for _, c := range []struct {
		name string
		xs   []float64
		v    Verdict
		text string
	}{
		{"within", []float64{3500, 3520, 3480, 3510, 3490, 3505}, Same, "within ±25% of 3300"},
		{"above", []float64{5000, 5100, 4900, 5050, 4950, 5020}, Higher, "above 3300 by more than 25%"},
		{"across the edge", []float64{3000, 4000, 4200, 4300, 4100, 3900}, Undecided, "reaches across the edge"},
		{"too few", []float64{3500, 3510, 3490}, Undecided, "too few"},
	} {
		l := test.Locate(c.xs, 3300)
		if l.Verdict != c.v || !strings.Contains(l.Reason, c.text) {
			t.Errorf("%s: %v %q", c.name, l.Verdict, l.Reason)
		}
	}
	// The sign test's interval covers the median as often as it says:
	// over many draws with the median known, it misses at most alpha.
	rng := rand.New(rand.NewPCG(3, 4))
	miss, runs := 0, 4000
	for range runs {
		xs := make([]float64, 9)
		for i := range xs {
			xs[i] = 100 * math.Exp(0.1*rng.NormFloat64()) // median 100
		}
		if l := test.Locate(xs, 100); l.Low > 100 || l.High < 100 {
			miss++
		}
	}
	if rate := float64(miss) / float64(runs); rate > 0.05 {
		t.Errorf("the interval missed the median in %.1f%% of runs", 100*rate)
	}
}
