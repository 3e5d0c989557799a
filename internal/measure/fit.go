package measure

import (
	"errors"
	"fmt"
)

// Fit is a least-squares straight line y = Slope*x + Intercept. For kernel
// memory against the number of connections, Slope is bytes per connection
// and Intercept the baseline.
type Fit struct {
	Slope     float64 `json:"slope"`
	Intercept float64 `json:"intercept"`
	// R2 is the coefficient of determination: 1 when every point is on the
	// line (also when all ys are equal), near 0 when x explains nothing.
	R2 float64 `json:"r2"`
}

// LinearFit fits ys against xs by ordinary least squares. It needs at least
// two points and two distinct xs.
func LinearFit(xs, ys []float64) (Fit, error) {
	n := len(xs)
	if n != len(ys) {
		return Fit{}, fmt.Errorf("linear fit: %d xs but %d ys", n, len(ys))
	}
	if n < 2 {
		return Fit{}, fmt.Errorf("linear fit: need at least 2 points, got %d", n)
	}
	var mx, my float64
	for i := range n {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(n)
	my /= float64(n)
	// Sums of centred products rather than Σx², Σxy: with x in the 100,000s
	// and y in the 100,000,000s the uncentred form loses most of its digits.
	var sxx, sxy, syy float64
	for i := range n {
		dx, dy := xs[i]-mx, ys[i]-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return Fit{}, errors.New("linear fit: all xs are equal")
	}
	f := Fit{Slope: sxy / sxx}
	f.Intercept = my - f.Slope*mx
	var ssRes float64
	for i := range n {
		r := ys[i] - (f.Slope*xs[i] + f.Intercept)
		ssRes += r * r
	}
	if syy == 0 {
		f.R2 = 1
	} else {
		f.R2 = 1 - ssRes/syy
	}
	return f, nil
}
