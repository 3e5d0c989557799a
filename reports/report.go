// Package reports renders stored results for people to look at: one
// self-contained HTML page per run, or two runs side by side, with plots
// drawn by gonum/plot as inline SVG (nothing is fetched when the page is
// opened, so it can be attached to a bug and read offline), and a result's
// measurements as CSV. It reads results and writes bytes: nothing here
// touches the kernel or the store.
package reports

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/labctl/labctl/docs"
	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Input is what a page shows.
type Input struct {
	// Results holds one result, or two: the second set against the first.
	Results []*experimentv1.Result
	// Spec is the experiment's spec, nil when this labctl does not know it
	// (an imported result of a newer experiment).
	Spec *experimentv1.ExperimentSpec
	// Figures are the experiment's figures (experiments.Figured); nil for
	// the defaults.
	Figures []experiments.Figure
	// Comparison of the two results (judge.Results), for two.
	Comparison *experimentv1.ResultComparison
}

// Defaults are the figures of an experiment that declares none: a latency
// CDF for each role whose reports hold histograms, and bars of each of the
// spec's summary metrics.
func Defaults(spec *experimentv1.ExperimentSpec, results []*experimentv1.Result) []experiments.Figure {
	var out []experiments.Figure
	var roles []string
	for _, r := range results {
		for _, s := range r.GetSteps() {
			for _, rep := range s.GetReports() {
				if rep.GetLatency() != nil && !slices.Contains(roles, rep.GetRole()) {
					roles = append(roles, rep.GetRole())
				}
			}
		}
	}
	for _, role := range roles {
		out = append(out, experiments.Figure{Kind: experiments.LatencyCDF, Title: "Latency of the " + role, Role: role})
	}
	for _, m := range spec.GetSummaryMetrics() {
		f := experiments.Figure{Kind: experiments.Bars, Title: m, Metrics: []string{m}, YLabel: m}
		if strings.HasSuffix(m, "_ns") || strings.Contains(m, "_ns_") {
			f.Scale, f.YLabel = 1e-3, strings.Replace(m, "_ns", "_µs", 1)
		}
		out = append(out, f)
	}
	return out
}

// Render writes the page.
func Render(w io.Writer, in Input) error {
	if n := len(in.Results); n < 1 || n > 2 {
		return fmt.Errorf("a report shows one result or two, not %d", n)
	}
	figs := in.Figures
	if figs == nil {
		figs = Defaults(in.Spec, in.Results)
	}
	runs := []run{{R: in.Results[0]}}
	if len(in.Results) == 2 {
		runs = []run{{Label: "A", R: in.Results[0]}, {Label: "B", R: in.Results[1]}}
	}
	page := pageData{Input: in, Runs: runs, Claims: claimsOf(in)}
	for _, f := range figs {
		fig, err := render(f, runs)
		if err != nil {
			return err
		}
		if fig != nil {
			page.Figures = append(page.Figures, fig)
		}
	}
	paths, err := packetPaths(runs)
	if err != nil {
		return err
	}
	page.Figures = append(page.Figures, paths...)
	for _, r := range runs {
		t, err := topology(r)
		if err != nil {
			return err
		}
		if t != nil {
			page.Topologies = append(page.Topologies, t)
		}
	}
	if page.FontFace, err = fontFace(); err != nil {
		return err
	}
	return pageTemplate().Execute(w, page)
}

type pageData struct {
	Input
	Runs       []run
	Claims     []docs.Claim
	Figures    []*figure
	Topologies []*figure
	FontFace   template.CSS
}

func claimsOf(in Input) []docs.Claim {
	all := docs.Claims()
	var ids []string
	for _, c := range in.Spec.GetClaims() {
		ids = append(ids, strings.Split(c, ",")...)
	}
	if v := in.Results[0].GetVerdict(); len(ids) == 0 && v != nil {
		ids = strings.Split(v.GetClaim(), ",")
	}
	var out []docs.Claim
	for _, id := range ids {
		if c, ok := all[strings.TrimSpace(id)]; ok && !slices.ContainsFunc(out, func(x docs.Claim) bool { return x.ID == c.ID }) {
			out = append(out, c)
		}
	}
	return out
}

//go:embed page.html
var pageHTML string

// pageTemplate is parsed on first use, not at start-up: every labctl
// process, agents included, would pay for it.
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"outcome":      judge.OutcomeWord,
		"keys":         func(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) },
		"summary":      summaryRows,
		"evidence":     evidenceRows,
		"significance": judge.Significance,
		"num":          num,
		"spread": func(s *experimentv1.Spread) string {
			if s == nil {
				return ""
			}
			return fmt.Sprintf("%s [%s .. %s] n=%d", num(s.GetMedian()), num(s.GetMin()), num(s.GetMax()), s.GetN())
		},
		"when": func(r *experimentv1.Result) string {
			return r.GetStarted().AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"join": strings.Join,
	}).Parse(pageHTML))
})

// num prints a measurement with the precision it has (6 significant
// digits at most), integers as integers.
func num(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatInt(int64(x), 10)
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

type summaryRow struct {
	Run, Variant, Metric, Median, Range, Engaged string
}

// summaryRows are the summary metrics of each variant (all metrics when
// the spec names none).
func summaryRows(runs []run, spec *experimentv1.ExperimentSpec) []summaryRow {
	var out []summaryRow
	for _, r := range runs {
		for _, row := range r.R.GetSummary() {
			names := spec.GetSummaryMetrics()
			if len(names) == 0 {
				names = slices.Sorted(maps.Keys(row.GetMetrics()))
			}
			for _, m := range names {
				s, ok := row.GetMetrics()[m]
				if !ok {
					continue
				}
				out = append(out, summaryRow{Run: r.Label, Variant: row.GetVariant(), Metric: m, Median: num(s.GetMedian()),
					Range:   num(s.GetMin()) + " .. " + num(s.GetMax()),
					Engaged: strings.ToLower(strings.TrimPrefix(row.GetEngagement().String(), "ENGAGEMENT_"))})
			}
		}
	}
	return out
}

type evidenceRow struct {
	Run, Variant, Role, Name, Value, Unit, Source string
}

// evidenceRows are the kernel's evidence per variant and role: the median
// of each item over the variant's repeats, with where it comes from.
func evidenceRows(runs []run) []evidenceRow {
	var out []evidenceRow
	for _, r := range runs {
		for _, v := range report.Variants(r.R.GetSteps()) {
			type key struct{ role, name string }
			values := map[key][]float64{}
			var order []key
			meta := map[key]*experimentv1.Evidence{}
			for _, s := range r.R.GetSteps() {
				if s.GetStep().GetVariant() != v {
					continue
				}
				for _, rep := range s.GetReports() {
					for _, e := range rep.GetEvidence() {
						k := key{rep.GetRole(), e.GetName()}
						if _, ok := meta[k]; !ok {
							order = append(order, k)
							meta[k] = e
						}
						values[k] = append(values[k], e.GetValue())
					}
				}
			}
			for _, k := range order {
				s := measure.SpreadOf(values[k])
				value := num(s.Median)
				if s.Min != s.Max {
					value += " [" + num(s.Min) + " .. " + num(s.Max) + "]"
				}
				out = append(out, evidenceRow{Run: r.Label, Variant: v, Role: k.role, Name: k.name, Value: value,
					Unit: meta[k].GetUnit(), Source: meta[k].GetSource()})
			}
		}
	}
	return out
}
