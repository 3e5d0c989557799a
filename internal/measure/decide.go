package measure

import (
	"fmt"
	"math"
	"slices"
	"sync"
)

// Test is how a comparison of two variants is decided: the error rate it
// keeps, over how many looks at the data, and the margin within which a
// difference counts as none. docs/statistics.md explains the method.
type Test struct {
	// Alpha is the chance, over the whole run, that the decision is wrong
	// (the interval misses the true ratio): 0.05.
	Alpha float64
	// Looks is the most times the run may look at the data and decide
	// (the first repeats, then each round of more): each look uses
	// Alpha/Looks (Bonferroni), so stopping at the first look that decides
	// still keeps Alpha. It is fixed before the run starts.
	Looks int
	// Margin is the relative difference that counts as none: 0.05 says
	// "the same within ±5%". It belongs to the claim, chosen before any
	// data is seen.
	Margin float64
}

// DefaultAlpha is the error rate of every verdict.
const DefaultAlpha = 0.05

// Verdict is what a comparison decided.
type Verdict int

// Verdicts of a comparison of B with A.
const (
	// Undecided: the interval of the ratio holds 1 and reaches beyond the
	// margin; more repeats may decide.
	Undecided Verdict = iota
	// Lower and Higher: the interval of B/A lies wholly below or above 1.
	Lower
	Higher
	// Same: the interval lies wholly within the margin.
	Same
)

func (v Verdict) String() string {
	return [...]string{"undecided", "lower", "higher", "same"}[v]
}

// Decision compares the repeats b of one variant with the repeats a of
// another.
type Decision struct {
	Test
	A, B Spread
	// Ratio estimates B/A: the exponential of the Hodges-Lehmann estimate
	// of the shift between log a and log b (the median of every pairwise
	// log ratio).
	Ratio float64
	// Low and High bound B/A with confidence Level; 0 and +Inf when the
	// repeats are too few to reach it.
	Low, High float64
	// Level is the confidence the interval has: the exact Mann-Whitney
	// level closest to, and not below, 1 - Alpha/Looks.
	Level   float64
	Verdict Verdict
	// Beyond says, for Lower and Higher, that the whole interval is
	// beyond the margin: the difference is larger than the margin too.
	Beyond bool
	// More estimates the repeats of each variant to add for an undecided
	// comparison to decide: the interval narrows as 1/sqrt(n). -1 when no
	// number of repeats would (the estimate sits on the margin).
	More int
	// Reason says it in one line.
	Reason string
}

// Decided reports whether the comparison reached a verdict.
func (d Decision) Decided() bool { return d.Verdict != Undecided }

// Settled reports whether the comparison is decided relative to its
// margin: the same within it, or different by more than it (with no
// margin, different at all). A difference that may be smaller than the
// margin is not settled: more repeats would tell.
func (d Decision) Settled() bool {
	return d.Verdict == Same || d.Differs() && (d.Margin == 0 || d.Beyond)
}

// Differs reports whether B differs from A (Lower or Higher).
func (d Decision) Differs() bool { return d.Verdict == Lower || d.Verdict == Higher }

// Change is B/A - 1, as a percentage.
func (d Decision) Change() float64 { return 100 * (d.Ratio - 1) }

// Decide compares the repeats b with the repeats a. Values must be
// positive (latencies, rates, costs); a comparison of values that are not
// is left undecided with the reason.
func (t Test) Decide(a, b []float64) Decision {
	d := Decision{Test: t, A: SpreadOf(a), B: SpreadOf(b), High: math.Inf(1), More: -1}
	if t.Looks < 1 {
		d.Looks = 1
	}
	if d.Alpha <= 0 || d.Alpha >= 1 {
		d.Alpha = DefaultAlpha
	}
	if len(a) == 0 || len(b) == 0 {
		d.Reason = fmt.Sprintf("nothing to compare: %d repeats and %d", len(a), len(b))
		return d
	}
	if slices.ContainsFunc(a, notFinite) || slices.ContainsFunc(b, notFinite) {
		d.Reason = "values that are not finite cannot be compared"
		return d
	}
	// Positive values (latencies, rates, costs) are compared as a ratio,
	// on the log scale; counts that may be 0 (system calls per message
	// with SQPOLL) as a difference, relative to the larger median.
	toRatio := math.Exp
	shift := func(x, y float64) float64 { return math.Log(y) - math.Log(x) }
	if slices.ContainsFunc(a, notPositive) || slices.ContainsFunc(b, notPositive) {
		ref := max(math.Abs(d.A.Median), math.Abs(d.B.Median))
		if ref == 0 {
			d.Ratio, d.Low, d.High, d.Level, d.Verdict, d.More = 1, 1, 1, 1, Same, 0
			d.Reason = "both are 0 in every repeat"
			return d
		}
		toRatio = func(s float64) float64 { return 1 + s/ref }
		shift = func(x, y float64) float64 { return y - x }
	}
	// Every pairwise shift, sorted: their median estimates the shift, and
	// order statistics of them bound it (Lehmann's interval for the
	// Mann-Whitney test: it needs no assumption about the distribution of
	// repeats, only that B's are A's shifted).
	diffs := make([]float64, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			diffs = append(diffs, shift(x, y))
		}
	}
	slices.Sort(diffs)
	d.Ratio = toRatio(median(diffs))
	k, level := lehmannRank(len(a), len(b), d.Alpha/float64(d.Looks))
	d.Level = level
	if k == 0 {
		d.Low = 0
		d.More = needForLevel(len(a), len(b), d.Alpha/float64(d.Looks))
		d.Reason = fmt.Sprintf("undecided: %d and %d repeats are too few for %.2f%% confidence at any difference; about %d more of each are needed",
			len(a), len(b), 100*(1-d.Alpha/float64(d.Looks)), d.More)
		return d
	}
	d.Low, d.High = toRatio(diffs[k-1]), toRatio(diffs[len(diffs)-k])
	lo, hi := 1-d.Margin, 1+d.Margin
	switch {
	case d.Margin > 0 && d.Low > lo && d.High < hi:
		d.Verdict = Same
	case d.High < 1:
		d.Verdict, d.Beyond = Lower, d.High < lo
	case d.Low > 1:
		d.Verdict, d.Beyond = Higher, d.Low > hi
	}
	d.More = 0
	if !d.Settled() {
		d.More = d.estimateMore(len(a), len(b))
	}
	d.Reason = d.text()
	return d
}

func notPositive(x float64) bool { return !(x > 0) }

func notFinite(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// pct writes a ratio as a signed percentage change.
func pct(r float64) string { return fmt.Sprintf("%+.1f%%", 100*(r-1)) }

// text words a decided or undecided comparison.
func (d Decision) text() string {
	ci := fmt.Sprintf("[%s, %s] at %.1f%% confidence, %d and %d repeats", pct(d.Low), pct(d.High), 100*d.Level, d.A.N, d.B.N)
	switch d.Verdict {
	case Same:
		return fmt.Sprintf("no difference larger than %.0f%%: %s %s (equivalence)", 100*d.Margin, pct(d.Ratio), ci)
	case Lower, Higher:
		if !d.Settled() {
			break
		}
		dir := "lower"
		if d.Verdict == Higher {
			dir = "higher"
		}
		s := fmt.Sprintf("%.1f%% %s %s", math.Abs(d.Change()), dir, ci)
		if !d.Beyond && d.Margin > 0 {
			s += fmt.Sprintf(", possibly within the %.0f%% margin", 100*d.Margin)
		}
		return s
	}
	more := "no practical number of repeats would decide it (the difference, if any, is small against the spread)"
	if d.More > 0 {
		more = fmt.Sprintf("about %d more repeats of each would decide it", d.More)
	}
	switch {
	case d.Margin == 0:
		return fmt.Sprintf("undecided: %s %s holds no change; %s", pct(d.Ratio), ci, more)
	case d.Differs():
		return fmt.Sprintf("undecided whether by more than %.0f%%: %s %s; %s", 100*d.Margin, pct(d.Ratio), ci, more)
	}
	return fmt.Sprintf("undecided: %s %s spans both no change and more than %.0f%%; %s", pct(d.Ratio), ci, 100*d.Margin, more)
}

// estimateMore scales the interval's half-width as 1/sqrt(n) to the width
// that would decide: one that excludes 1 (a difference) or fits within the
// margin (none), whichever is nearer.
func (d Decision) estimateMore(n, m int) int {
	est := d.Ratio - 1
	half := (d.High - d.Low) / 2
	if !(half > 0) || math.IsInf(half, 0) {
		return -1
	}
	target := math.Abs(est) // to exclude 1
	if d.Margin > 0 {
		if t := d.Margin - math.Abs(est); t > target {
			target = t // to fit within the margin
		}
	}
	if target <= 0 {
		return -1
	}
	scale := (half / target) * (half / target)
	now := float64(min(n, m))
	more := int(math.Ceil(now*scale - now))
	if more > 1000 {
		return -1
	}
	return max(more, 1)
}

// needForLevel is how many repeats of each (beyond n and m) the exact test
// needs before any interval of confidence 1-alpha exists.
func needForLevel(n, m int, alpha float64) int {
	for extra := 1; extra <= 100; extra++ {
		if k, _ := lehmannRank(n+extra, m+extra, alpha); k > 0 {
			return extra
		}
	}
	return -1
}

// lehmannRank returns the rank k (from 1) such that the k-th smallest and
// k-th largest of the n*m pairwise differences bound the shift with
// confidence at least 1-alpha, the largest such k, and the confidence it
// gives; k is 0 when n and m are too few for that confidence. It uses the
// exact null distribution of the Mann-Whitney U statistic (for n*m up to
// 2,500; a normal approximation with continuity correction above).
func lehmannRank(n, m int, alpha float64) (int, float64) {
	if n*m > 2500 {
		mean := float64(n*m) / 2
		sd := math.Sqrt(float64(n*m*(n+m+1)) / 12)
		z := normalQuantile(1 - alpha/2)
		k := int(math.Floor(mean - z*sd - 0.5))
		if k < 1 {
			return 0, 0
		}
		return k, 1 - 2*normalCDF((float64(k)-0.5-mean)/sd)
	}
	cdf := uCDF(n, m)
	// The interval [D(k), D(nm+1-k)] covers the shift with probability
	// 1 - 2 P(U <= k-1).
	k := 0
	for c := 1; c <= n*m/2; c++ {
		if 2*cdf[c-1] <= alpha {
			k = c
		} else {
			break
		}
	}
	if k == 0 {
		return 0, 0
	}
	return k, 1 - 2*cdf[k-1]
}

// uCDF returns P(U <= u) for u = 0..n*m under the null hypothesis, by
// counting the arrangements of n and m values with each U (cached: a judge
// makes many comparisons of equally many repeats).
func uCDF(n, m int) []float64 {
	key := [2]int{n, m}
	if c, ok := cdfCache.Load(key); ok {
		return c.([]float64)
	}
	// f[i][u]: arrangements of i values of the first sample among j of the
	// second with statistic u, for the j of the current round.
	f := make([][]float64, n+1)
	g := make([][]float64, n+1)
	for i := range f {
		f[i] = make([]float64, n*m+1)
		g[i] = make([]float64, n*m+1)
		f[i][0] = 1 // j = 0: U is 0
	}
	for j := 1; j <= m; j++ {
		clear(g[0])
		g[0][0] = 1
		for i := 1; i <= n; i++ {
			clear(g[i])
			for u := 0; u <= i*j; u++ {
				// The largest value is from the second sample (U gains
				// nothing) or from the first (it exceeds all j).
				c := f[i][u]
				if u >= j {
					c += g[i-1][u-j]
				}
				g[i][u] = c
			}
		}
		f, g = g, f
	}
	counts := f[n]
	total := 0.0
	for _, c := range counts {
		total += c
	}
	cdf := make([]float64, len(counts))
	acc := 0.0
	for u, c := range counts {
		acc += c
		cdf[u] = acc / total
	}
	cdfCache.Store(key, cdf)
	return cdf
}

var cdfCache sync.Map // [2]int{n, m} -> []float64

func normalCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// normalQuantile inverts normalCDF by bisection (it runs once per
// comparison; precision to 1e-12 is plenty).
func normalQuantile(p float64) float64 {
	lo, hi := -40.0, 40.0
	for range 200 {
		mid := (lo + hi) / 2
		if normalCDF(mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// Location is where the repeats of one value lie against a claimed value:
// the confidence interval of their median, from the exact sign test at
// 1 - Alpha/Looks, against the band of ±Margin around the claim.
type Location struct {
	Test
	S     Spread
	Claim float64
	// Low and High bound the median with confidence Level; 0 and +Inf
	// when the repeats are too few to reach it.
	Low, High, Level float64
	// Verdict: Same when the interval lies within the band, Higher or
	// Lower when it lies wholly above or below it, else Undecided.
	Verdict Verdict
	// More estimates the repeats to add for an undecided location.
	More   int
	Reason string
}

// Locate places the median of xs against claim: within ±Margin of it,
// beyond, or undecided. The sign test assumes only that repeats are
// independent draws of one distribution.
func (t Test) Locate(xs []float64, claim float64) Location {
	l := Location{Test: t, S: SpreadOf(xs), Claim: claim, High: math.Inf(1), More: -1}
	if l.Looks < 1 {
		l.Looks = 1
	}
	if l.Alpha <= 0 || l.Alpha >= 1 {
		l.Alpha = DefaultAlpha
	}
	alpha := l.Alpha / float64(l.Looks)
	n := len(xs)
	k := signRank(n, alpha)
	lo, hi := claim*(1-l.Margin), claim*(1+l.Margin)
	if k == 0 {
		for extra := 1; extra <= 100; extra++ {
			if signRank(n+extra, alpha) > 0 {
				l.More = extra
				break
			}
		}
		l.Reason = fmt.Sprintf("undecided: %d repeats are too few for %.2f%% confidence; about %d more are needed", n, 100*(1-alpha), l.More)
		return l
	}
	s := slices.Sorted(slices.Values(xs))
	l.Low, l.High = s[k-1], s[n-k]
	l.Level = 1 - 2*binomCDF(n, k-1)
	ci := fmt.Sprintf("median %.4g [%.4g, %.4g] at %.1f%% confidence, %d repeats", l.S.Median, l.Low, l.High, 100*l.Level, n)
	switch {
	case l.Low >= lo && l.High <= hi:
		l.Verdict = Same
		l.Reason = fmt.Sprintf("within ±%.0f%% of %.4g: %s", 100*l.Margin, claim, ci)
	case l.High < lo:
		l.Verdict = Lower
		l.Reason = fmt.Sprintf("below %.4g by more than %.0f%%: %s", claim, 100*l.Margin, ci)
	case l.Low > hi:
		l.Verdict = Higher
		l.Reason = fmt.Sprintf("above %.4g by more than %.0f%%: %s", claim, 100*l.Margin, ci)
	default:
		l.More = 3 // a round of repeats: the interval narrows by order statistics, not by a known rate
		l.Reason = fmt.Sprintf("undecided: %s reaches across the edge of ±%.0f%% around %.4g; more repeats narrow it (a round adds %d)", ci, 100*l.Margin, claim, l.More)
	}
	return l
}

// signRank is the largest k such that the k-th smallest and k-th largest
// of n repeats bound their median with confidence 1-alpha (sign test), or
// 0 when n is too small.
func signRank(n int, alpha float64) int {
	k := 0
	for c := 1; c <= n/2; c++ {
		if 2*binomCDF(n, c-1) <= alpha {
			k = c
		} else {
			break
		}
	}
	return k
}

// binomCDF is P(X <= k) for X ~ Binomial(n, 1/2).
func binomCDF(n, k int) float64 {
	p, term := 0.0, math.Pow(0.5, float64(n))
	for i := 0; i <= k; i++ {
		p += term
		term = term * float64(n-i) / float64(i+1)
	}
	return p
}
