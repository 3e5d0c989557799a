package reports

import (
	"fmt"
	"html/template"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/units"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// run is one result in a report, with the label its series carry when two
// runs share a plot.
type run struct {
	Label string
	R     *experimentv1.Result
}

func (r run) name(series string) string {
	if r.Label == "" {
		return series
	}
	return r.Label + ": " + series
}

// figure is a rendered plot.
type figure struct {
	Title, Caption string
	SVG            template.HTML
}

const plotWidth = 7 * vg.Inch

// maxCurves bounds the lines in one plot: more are unreadable, and the
// caption says which were left out.
const maxCurves = 10

// render draws f from the runs, or returns nil when they hold nothing it
// draws (a latency CDF of a run without histograms).
func render(f experiments.Figure, runs []run) (*figure, error) {
	switch f.Kind {
	case experiments.LatencyCDF:
		return latencyCDF(f, runs)
	case experiments.Bars:
		return bars(f, runs)
	case experiments.Sweep, experiments.Fit:
		return sweep(f, runs)
	}
	return nil, fmt.Errorf("figure %q: unknown kind %d", f.Title, f.Kind)
}

// matcher selects the variants a figure draws.
func matcher(f experiments.Figure) (*regexp.Regexp, error) {
	re, err := regexp.Compile(f.Variants)
	if err != nil {
		return nil, fmt.Errorf("figure %q: variants: %w", f.Title, err)
	}
	return re, nil
}

func scaleOf(f experiments.Figure) float64 {
	if f.Scale == 0 {
		return 1
	}
	return f.Scale
}

// stepValue is a role-qualified metric of one step.
func stepValue(s *experimentv1.StepResult, metric string) (float64, bool) {
	role, name, _ := strings.Cut(metric, ".")
	x, ok := report.ReportOf(s, role).GetMetrics()[name]
	return x, ok
}

// quantiles is the probability grid a CDF is drawn on: fine enough for a
// smooth line, a few hundred vertices (each costs ~14 bytes of SVG).
var quantiles = func() []float64 {
	var qs []float64
	for q := 0.005; q < 0.99; q += 0.01 {
		qs = append(qs, q)
	}
	return append(qs, 0.99, 0.995, 0.999)
}()

func latencyCDF(f experiments.Figure, runs []run) (*figure, error) {
	re, err := matcher(f)
	if err != nil {
		return nil, err
	}
	type curve struct {
		name        string
		med, lo, hi plotter.XYs
		merged      *measure.Histogram
		repeats     int
	}
	var curves []curve
	var left []string
	for _, r := range runs {
		for _, v := range report.Variants(r.R.GetSteps()) {
			if !re.MatchString(v) {
				continue
			}
			c := curve{name: r.name(v), merged: &measure.Histogram{}}
			var perRepeat [][]float64
			for _, s := range r.R.GetSteps() {
				h := report.ReportOf(s, f.Role).GetLatency()
				if s.GetStep().GetVariant() != v || h == nil {
					continue
				}
				hist, err := report.Histogram(h)
				if err != nil {
					return nil, fmt.Errorf("figure %q: %s: %w", f.Title, v, err)
				}
				if hist.Count() == 0 {
					continue
				}
				c.merged.Merge(hist)
				xs := make([]float64, len(quantiles))
				for i, q := range quantiles {
					xs[i] = float64(hist.Quantile(q).Nanoseconds()) / 1e3
				}
				perRepeat = append(perRepeat, xs)
			}
			if len(perRepeat) == 0 {
				continue
			}
			if len(curves) == maxCurves {
				left = append(left, c.name)
				continue
			}
			c.repeats = len(perRepeat)
			for i, q := range quantiles {
				at := make([]float64, len(perRepeat))
				for j := range perRepeat {
					at[j] = perRepeat[j][i]
				}
				s := measure.SpreadOf(at)
				c.med = append(c.med, plotter.XY{X: s.Median, Y: q})
				c.lo = append(c.lo, plotter.XY{X: s.Min, Y: q})
				c.hi = append(c.hi, plotter.XY{X: s.Max, Y: q})
			}
			curves = append(curves, c)
		}
	}
	if len(curves) == 0 {
		return nil, nil
	}
	p := newPlot(f.Title, "latency (log scale)", "fraction of round trips ≤ latency")
	p.Legend.Top, p.Legend.Left = true, true
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = logTicks(micros)
	p.Y.Min, p.Y.Max = 0, 1
	var all []float64
	for _, c := range curves {
		for _, xs := range []plotter.XYs{c.lo, c.hi} {
			for _, xy := range xs {
				all = append(all, xy.X)
			}
		}
	}
	lo, hi, ok := limits(all)
	if !ok {
		return nil, nil
	}
	p.X.Min, p.X.Max = logRange(lo, hi)
	var caption []string
	for i, c := range curves {
		// The band spans the repeats: at each probability, the lowest and
		// the highest latency any repeat had there.
		ring := slices.Clone(c.lo)
		for j := len(c.hi) - 1; j >= 0; j-- {
			ring = append(ring, c.hi[j])
		}
		band, err := plotter.NewPolygon(positive(ring))
		if err != nil {
			return nil, err
		}
		band.Color = translucent(colour(i))
		band.LineStyle.Width = 0
		p.Add(band)
		line, err := plotter.NewLine(positive(c.med))
		if err != nil {
			return nil, err
		}
		line.Color = colour(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(c.name, line)
		q := func(x float64) float64 { return float64(c.merged.Quantile(x).Nanoseconds()) / 1e3 }
		caption = append(caption, fmt.Sprintf("%s: p50 %s, p99 %s, p99.9 %s (%d repeats, %d round trips)",
			c.name, micros(q(0.5)), micros(q(0.99)), micros(q(0.999)), c.repeats, c.merged.Count()))
		if i > 0 {
			continue
		}
		// The first curve's percentiles, marked where they fall.
		var marks plotter.XYLabels
		for _, m := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p99", 0.99}, {"p99.9", 0.999}} {
			x := q(m.q)
			if x <= 0 {
				continue
			}
			l, err := dashed(x, 0, 1, colour(i))
			if err != nil {
				return nil, err
			}
			p.Add(l)
			marks.XYs = append(marks.XYs, plotter.XY{X: x, Y: 0.02})
			marks.Labels = append(marks.Labels, m.name+" "+micros(x))
		}
		labels, err := plotter.NewLabels(marks)
		if err != nil {
			return nil, err
		}
		for j := range labels.TextStyle {
			labels.TextStyle[j].Rotation = math.Pi / 2
			labels.TextStyle[j].Font.Size = vg.Points(8)
			labels.TextStyle[j].YAlign = draw.YBottom
		}
		p.Add(labels)
	}
	text := "The line is the median over repeats at each fraction, the band the lowest to the highest repeat; dashed: " +
		curves[0].name + "'s p50, p99 and p99.9. " + strings.Join(caption, "; ") + "."
	if len(left) > 0 {
		text += " Not drawn (more than " + strconv.Itoa(maxCurves) + " lines): " + strings.Join(left, ", ") + "."
	}
	return finish(p, f, text, 4.2*vg.Inch)
}

// positive drops points a log axis cannot place.
func positive(xys plotter.XYs) plotter.XYs {
	out := xys[:0:0]
	for _, xy := range xys {
		if xy.X > 0 {
			out = append(out, xy)
		}
	}
	return out
}

func bars(f experiments.Figure, runs []run) (*figure, error) {
	re, err := matcher(f)
	if err != nil {
		return nil, err
	}
	type bar struct {
		label  string
		metric int
		s      measure.Spread
	}
	var all []bar
	scale := scaleOf(f)
	labels := metricLabels(f.Metrics)
	for _, r := range runs {
		for _, v := range report.Variants(r.R.GetSteps()) {
			if !re.MatchString(v) {
				continue
			}
			for i, m := range f.Metrics {
				xs := report.Values(r.R.GetSteps(), v, m)
				if len(xs) == 0 {
					continue
				}
				for j := range xs {
					xs[j] *= scale
				}
				label := v
				if len(f.Metrics) > 1 {
					label += " · " + labels[m]
				}
				all = append(all, bar{label: r.name(label), metric: i, s: measure.SpreadOf(xs)})
			}
		}
	}
	if len(all) == 0 {
		return nil, nil
	}
	p := newPlot(f.Title, f.YLabel, "")
	p.Legend.Top, p.Legend.Left = false, false
	// The first bar on top: bar i sits at y = n-1-i.
	n := len(all)
	names := make([]string, n)
	for i, b := range all {
		y := float64(n - 1 - i)
		names[n-1-i] = b.label
		chart, err := plotter.NewBarChart(plotter.Values{b.s.Median}, vg.Points(10))
		if err != nil {
			return nil, err
		}
		chart.Horizontal = true
		chart.XMin = y
		chart.Color = colour(b.metric)
		chart.LineStyle.Width = 0
		p.Add(chart)
		eb, err := plotter.NewXErrorBars(spreadBars{
			XYs:     plotter.XYs{{X: b.s.Median, Y: y}},
			XErrors: plotter.XErrors{{Low: b.s.Median - b.s.Min, High: b.s.Max - b.s.Median}},
		})
		if err != nil {
			return nil, err
		}
		eb.CapWidth = vg.Points(6)
		p.Add(eb)
	}
	p.NominalY(names...)
	p.X.Tick.Marker = compactTicks{}
	p.X.Min = math.Min(0, p.X.Min)
	p.X.Max *= 1.05
	p.Y.Padding = 0
	p.Y.Tick.Label.Font.Size = vg.Points(8)
	text := "Each bar is the median over the variant's repeats; the line across it spans the lowest to the highest repeat."
	return finish(p, f, text, vg.Inch+vg.Length(n)*16)
}

// metricLabels name a figure's metrics in its labels: without their role
// when they share one.
func metricLabels(metrics []string) map[string]string {
	out := map[string]string{}
	roles := map[string]bool{}
	for _, m := range metrics {
		role, _, _ := strings.Cut(m, ".")
		roles[role] = true
	}
	for _, m := range metrics {
		_, name, ok := strings.Cut(m, ".")
		if !ok || len(roles) > 1 {
			name = m
		}
		out[m] = name
	}
	return out
}

// xOf reads a variant's position on a sweep's x axis from the "x" group
// of its name: a size (4KiB) or a number with a unit after it (10000pps).
func xOf(s string) (float64, bool) {
	if n, _, err := units.ParseSize(s); err == nil {
		return float64(n), true
	}
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(s)
	}
	x, err := strconv.ParseFloat(s[:end], 64)
	return x, err == nil && end > 0
}

// sweepLine is one line of a Sweep or Fit.
type sweepLine struct {
	name   string
	base   string      // the name of the line it is set against
	points plotter.XYs // each variant's medians, in x order
	errs   plotter.YErrors
	every  plotter.XYs // every repeat
}

// sweepLines gathers the lines of a Sweep or Fit from the runs.
func sweepLines(f experiments.Figure, runs []run) ([]*sweepLine, error) {
	re, err := matcher(f)
	if err != nil {
		return nil, err
	}
	xGroup := re.SubexpIndex("x")
	if xGroup < 0 {
		return nil, fmt.Errorf("figure %q: variants %q needs the group (?P<x>…)", f.Title, f.Variants)
	}
	scale := scaleOf(f)
	var lines []*sweepLine
	find := func(name, base string) *sweepLine {
		for _, l := range lines {
			if l.name == name {
				return l
			}
		}
		l := &sweepLine{name: name, base: base}
		lines = append(lines, l)
		return l
	}
	labels := metricLabels(f.Metrics)
	for _, r := range runs {
		for _, v := range report.Variants(r.R.GetSteps()) {
			m := re.FindStringSubmatch(v)
			if m == nil {
				continue
			}
			series, against := seriesOf(re, v, f.Baseline)
			for _, metric := range f.Metrics {
				name, base := series, against
				if len(f.Metrics) > 1 {
					name, base = name+" · "+labels[metric], base+" · "+labels[metric]
				}
				l := find(r.name(name), r.name(base))
				var xs, ys []float64
				for _, s := range r.R.GetSteps() {
					if s.GetStep().GetVariant() != v {
						continue
					}
					y, ok := stepValue(s, metric)
					if !ok {
						continue
					}
					var x float64
					if f.X != "" {
						x, ok = stepValue(s, f.X)
					} else {
						x, ok = xOf(m[xGroup])
					}
					if !ok || f.LogX && x <= 0 {
						continue
					}
					xs, ys = append(xs, x), append(ys, y*scale)
					l.every = append(l.every, plotter.XY{X: x, Y: y * scale})
				}
				if len(ys) == 0 {
					continue
				}
				sx, sy := measure.SpreadOf(xs), measure.SpreadOf(ys)
				l.points = append(l.points, plotter.XY{X: sx.Median, Y: sy.Median})
				l.errs = append(l.errs, struct{ Low, High float64 }{sy.Median - sy.Min, sy.Max - sy.Median})
			}
		}
	}
	lines = slices.DeleteFunc(lines, func(l *sweepLine) bool { return len(l.points) == 0 })
	for _, l := range lines {
		// Points and their ranges sorted together, by x.
		order := make([]int, len(l.points))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmpFloat(l.points[a].X, l.points[b].X) })
		points, errs := make(plotter.XYs, len(order)), make(plotter.YErrors, len(order))
		for i, j := range order {
			points[i], errs[i] = l.points[j], l.errs[j]
		}
		l.points, l.errs = points, errs
	}
	return lines, nil
}

func sweep(f experiments.Figure, runs []run) (*figure, error) {
	lines, err := sweepLines(f, runs)
	if err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, nil
	}
	var left []string
	if len(lines) > maxCurves {
		for _, l := range lines[maxCurves:] {
			left = append(left, l.name)
		}
		lines = lines[:maxCurves]
	}
	p := newPlot(f.Title, f.XLabel, f.YLabel)
	p.Legend.Left = false
	p.Y.Tick.Marker = compactTicks{}
	p.X.Tick.Marker = compactTicks{}
	if f.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks(number(false))
		if strings.Contains(f.XLabel, "bytes") {
			p.X.Tick.Marker = sizeTicks
		}
	}
	var text []string
	if f.Kind == experiments.Fit {
		text = append(text, "Every repeat is a point; the line is the least-squares fit over them.")
	} else {
		text = append(text, "Each point is the median over the variant's repeats, the bar across it the lowest to the highest repeat.")
	}
	for i, l := range lines {
		if f.Kind == experiments.Fit {
			sc, err := plotter.NewScatter(l.every)
			if err != nil {
				return nil, err
			}
			sc.Color = colour(i)
			sc.Shape = draw.CircleGlyph{}
			p.Add(sc)
			p.Legend.Add(l.name, sc)
			var xs, ys []float64
			for _, xy := range l.every {
				xs, ys = append(xs, xy.X), append(ys, xy.Y)
			}
			fit, err := measure.LinearFit(xs, ys)
			if err != nil {
				text = append(text, fmt.Sprintf("%s: no fit (%v).", l.name, err))
				continue
			}
			lo, hi, _ := limits(xs)
			fn := plotter.NewFunction(func(x float64) float64 { return fit.Intercept + fit.Slope*x })
			fn.XMin, fn.XMax = lo, hi
			fn.Color = colour(i)
			fn.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			p.Add(fn)
			text = append(text, fmt.Sprintf("%s: %s per %s, R² %.4f.", l.name, strconv.FormatFloat(fit.Slope, 'g', 4, 64), unitOf(f.XLabel), fit.R2))
			continue
		}
		ln, sc, err := plotter.NewLinePoints(l.points)
		if err != nil {
			return nil, err
		}
		ln.Color, sc.Color = colour(i), colour(i)
		p.Add(ln, sc)
		p.Legend.Add(l.name, ln, sc)
		eb, err := plotter.NewYErrorBars(spreadPoints{XYs: l.points, YErrors: l.errs})
		if err != nil {
			return nil, err
		}
		eb.Color = colour(i)
		eb.CapWidth = vg.Points(4)
		p.Add(eb)
	}
	if f.Baseline != "" {
		for _, l := range lines {
			if at := slices.IndexFunc(lines, func(b *sweepLine) bool { return b.name == l.base }); at >= 0 && l.base != l.name {
				text = append(text, crossover(l.name, l.points, lines[at].name, lines[at].points))
			}
		}
	}
	if len(left) > 0 {
		text = append(text, "Not drawn (more than "+strconv.Itoa(maxCurves)+" lines): "+strings.Join(left, ", ")+".")
	}
	return finish(p, f, strings.Join(text, " "), 4.2*vg.Inch)
}

// seriesOf names a variant's line: the variant without its "x" group
// (and the separators around it), or its "series" group when the pattern
// has one. base is the name of the line it is set against: the name with
// the "line" group replaced by baseline.
func seriesOf(re *regexp.Regexp, v, baseline string) (name, base string) {
	idx := re.FindStringSubmatchIndex(v)
	group := func(name string) (int, int) {
		if i := re.SubexpIndex(name); i >= 0 && idx[2*i] >= 0 {
			return idx[2*i], idx[2*i+1]
		}
		return -1, -1
	}
	if s, e := group("series"); s >= 0 {
		name = v[s:e]
	} else {
		s, e := group("x")
		name = strings.Trim(v[:s], "/ ") + "/" + strings.Trim(v[e:], "/ ")
		name = strings.Trim(name, "/")
	}
	base = name
	if s, e := group("line"); s >= 0 && baseline != "" {
		if i := strings.Index(name, v[s:e]); i >= 0 {
			base = name[:i] + baseline + name[i+e-s:]
		}
	}
	return name, base
}

// crossover says from which x on a line stays below the line it is set
// against.
func crossover(name string, pts plotter.XYs, base string, bpts plotter.XYs) string {
	at := map[float64]float64{}
	for _, xy := range bpts {
		at[xy.X] = xy.Y
	}
	from := math.NaN()
	for j := len(pts) - 1; j >= 0; j-- {
		b, ok := at[pts[j].X]
		if !ok || pts[j].Y >= b {
			break
		}
		from = pts[j].X
	}
	if math.IsNaN(from) {
		return fmt.Sprintf("%s's median does not stay below %s's.", name, base)
	}
	return fmt.Sprintf("%s's median is below %s's from %s on.", name, base, number(true)(from))
}

// unitOf is what an axis label counts ("connections" of "open
// connections"), for "per …" in a fit's caption.
func unitOf(label string) string {
	if f := strings.Fields(label); len(f) > 0 {
		return f[len(f)-1]
	}
	return "x"
}

// finish renders p at plotWidth × height with the figure's caption.
func finish(p *plot.Plot, f experiments.Figure, text string, height vg.Length) (*figure, error) {
	svg, err := svgOf(p, plotWidth, height)
	if err != nil {
		return nil, err
	}
	if f.Caption != "" {
		text = f.Caption + " " + text
	}
	return &figure{Title: f.Title, Caption: text, SVG: svg}, nil
}
