package reports

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"image/color"
	"math"
	"strconv"
	"sync"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The plots' text is laid out by gonum with the metrics of Liberation Sans;
// the page carries that one font (fontFace) so that a browser without it
// draws the text where gonum measured it.
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

func init() {
	plot.DefaultFont = sans
	plotter.DefaultFont = sans
}

// palette is the colour of each series in turn (Tableau 10: told apart by
// most readers, colour-blind ones included, better than a rainbow).
var palette = []color.NRGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
	{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
	{0xbc, 0xbd, 0x22, 0xff}, {0x17, 0xbe, 0xcf, 0xff},
}

func colour(i int) color.NRGBA { return palette[i%len(palette)] }

func translucent(c color.NRGBA) color.NRGBA { c.A = 0x40; return c }

// svgOf renders p as an <svg> element to inline in the page.
func svgOf(p *plot.Plot, w, h vg.Length) (template.HTML, error) {
	c := vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(false))
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", fmt.Errorf("render %q: %w", p.Title.Text, err)
	}
	b := buf.Bytes()
	// vgsvg starts with an XML prolog and a comment: not for inline SVG.
	if i := bytes.Index(b, []byte("<svg")); i > 0 {
		b = b[i:]
	}
	return template.HTML(b), nil // #nosec: our own renderer's output, text escaped by vgsvg
}

// fontFace is the @font-face rule that carries the plots' font, made once
// (the font is 400 KB of base64).
var fontFace = sync.OnceValues(func() (template.CSS, error) {
	face := font.DefaultCache.Lookup(sans, 10)
	if face.Face == nil {
		return "", fmt.Errorf("font %s is not in gonum's cache", sans.Name())
	}
	var ttf bytes.Buffer
	if _, err := face.Face.WriteSourceTo(nil, &ttf); err != nil {
		return "", fmt.Errorf("font %s: %w", sans.Name(), err)
	}
	return template.CSS(`@font-face{font-family:"Liberation Sans";src:url(data:font/ttf;base64,` +
		base64.StdEncoding.EncodeToString(ttf.Bytes()) + `) format("truetype")}`), nil
})

// newPlot is a plot with labctl's defaults: a grid, the legend top left.
func newPlot(title, xlabel, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(6)
	p.Add(plotter.NewGrid())
	return p
}

// logTicks labels each decade of a log axis with unit (a duration in µs
// or a plain number) and puts minor ticks at 2..9 times it.
func logTicks(format func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var ticks []plot.Tick
		for d := math.Pow(10, math.Floor(math.Log10(lo))); d <= hi*10; d *= 10 {
			for m := 1; m < 10; m++ {
				v := d * float64(m)
				if v < lo || v > hi {
					continue
				}
				t := plot.Tick{Value: v}
				if m == 1 || (m == 2 || m == 5) && hi/lo < 30 {
					t.Label = format(v)
				}
				ticks = append(ticks, t)
			}
		}
		return ticks
	})
}

// micros labels a value in µs as a duration.
func micros(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + " s"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " µs"
}

// number labels a plain value compactly: 64, 4K, 1M (powers of 1024 when
// bytes says so).
func number(bytes bool) func(float64) string {
	return func(v float64) string {
		base := 1000.0
		if bytes {
			base = 1024
		}
		for _, u := range []string{"", "K", "M", "G", "T"} {
			if math.Abs(v) < base || u == "T" {
				return strconv.FormatFloat(v, 'g', 3, 64) + u
			}
			v /= base
		}
		return ""
	}
}

// logRange widens [lo, hi] to whole decades, as a log axis reads best.
func logRange(lo, hi float64) (float64, float64) {
	return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
}

// spreadPoints are a series' medians with their ranges as error bars.
type spreadPoints struct {
	plotter.XYs
	plotter.YErrors
}

type spreadBars struct {
	plotter.XYs
	plotter.XErrors
}

// dashed is a vertical marker line at x.
func dashed(x, y0, y1 float64, c color.Color) (*plotter.Line, error) {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: y0}, {X: x, Y: y1}})
	if err != nil {
		return nil, err
	}
	l.Color = c
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	return l, nil
}

// limits returns the smallest and largest positive of xs.
func limits(xs []float64) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		if x > 0 && !math.IsInf(x, 0) {
			lo, hi = min(lo, x), max(hi, x)
		}
	}
	return lo, hi, lo <= hi
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compactTicks are gonum's default ticks labelled compactly: 2500, 1.5M,
// 200M rather than 2500.00 and 2e+08.
type compactTicks struct{}

func (compactTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = number(false)(ticks[i].Value)
		}
	}
	return ticks
}

// sizeTicks put a tick at every power of two of a log axis of sizes in
// bytes, labelled at every power of four that leaves room (64, 256, 1K,
// 4K...).
var sizeTicks = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	step := 2
	if hi/lo > 1<<12 {
		step = 4
	}
	for e := int(math.Floor(math.Log2(lo))); e <= int(math.Ceil(math.Log2(hi))); e++ {
		v := math.Exp2(float64(e))
		if v < lo || v > hi {
			continue
		}
		t := plot.Tick{Value: v}
		if e%step == 0 {
			t.Label = number(true)(v)
		}
		ticks = append(ticks, t)
	}
	return ticks
})
