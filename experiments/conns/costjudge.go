package conns

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// The claim C13, in bytes per socket, and how far "about" reaches.
const (
	claimEstablished = 3300.0
	claimTimeWait    = 400.0
	claimBand        = 0.25
	// minR2 is the fit quality below which the slope is not trusted:
	// something besides the connections moved the memory.
	minR2 = 0.95
)

// Fitted quantities: what a slope across counts is the cost of.
const (
	fitPair      = "pair"
	fitServerEnd = "server_end"
	fitClientEnd = "client_end"
	fitTimeWait  = "time_wait"
)

var fitKinds = []string{fitPair, fitServerEnd, fitClientEnd, fitTimeWait}

// point is one step's memory by series, for one variant and repeat.
type point struct {
	n    float64
	ends map[string]ends // series -> ends
}

// stepPoint reads a step's count and the client's memory changes.
func stepPoint(s *experimentv1.StepResult) (variant string, p point, ok bool) {
	variant = s.GetStep().GetParams()["variants"]
	n, err := strconv.Atoi(s.GetStep().GetParams()["counts"])
	client := report.ReportOf(s, "client")
	if err != nil || client == nil {
		return "", point{}, false
	}
	p = point{n: float64(n), ends: map[string]ends{}}
	m := client.GetMetrics()
	for key := range m {
		series, found := strings.CutPrefix(key, phaseEstablished+".")
		if !found || !strings.HasSuffix(series, "_bytes") {
			continue
		}
		series = strings.TrimSuffix(series, "_bytes")
		cw, ok1 := m[phaseCloseWait+"."+series+"_bytes"]
		tw, ok2 := m[phaseTimeWait+"."+series+"_bytes"]
		if ok1 && ok2 {
			p.ends[series] = splitEnds(m[key], cw, tw)
		}
	}
	return variant, p, true
}

func (e ends) of(kind string) float64 {
	switch kind {
	case fitPair:
		return e.Pair
	case fitServerEnd:
		return e.ServerEnd
	case fitClientEnd:
		return e.ClientEnd
	}
	return e.TimeWait
}

// variantFits fits every series of every kind across the counts, once per
// repeat: fits["pair.TCP"] holds one Fit per repeat that has at least two
// distinct counts.
func variantFits(steps []*experimentv1.StepResult, variant string) map[string][]measure.Fit {
	byRepeat := map[int32][]point{}
	var repeats []int32
	for _, s := range steps {
		v, p, ok := stepPoint(s)
		if !ok || v != variant {
			continue
		}
		r := s.GetStep().GetRepeat()
		if _, seen := byRepeat[r]; !seen {
			repeats = append(repeats, r)
		}
		byRepeat[r] = append(byRepeat[r], p)
	}
	slices.Sort(repeats)
	fits := map[string][]measure.Fit{}
	for _, r := range repeats {
		pts := byRepeat[r]
		for series := range pts[0].ends {
			for _, kind := range fitKinds {
				var xs, ys []float64
				for _, p := range pts {
					if e, ok := p.ends[series]; ok {
						xs = append(xs, p.n)
						ys = append(ys, e.of(kind))
					}
				}
				if f, err := measure.LinearFit(xs, ys); err == nil {
					fits[kind+"."+series] = append(fits[kind+"."+series], f)
				}
			}
		}
	}
	return fits
}

func slopes(fs []measure.Fit) []float64 {
	out := make([]float64, len(fs))
	for i, f := range fs {
		out[i] = f.Slope
	}
	return out
}

// fitRow turns a variant's fits into a summary row: for each kind and
// series the slope (bytes per connection), the intercept and R², as their
// spread over repeats.
func fitRow(variant string, fits map[string][]measure.Fit) *experimentv1.SummaryRow {
	row := &experimentv1.SummaryRow{Variant: variant + " fit", Metrics: map[string]*experimentv1.Spread{}}
	for key, fs := range fits {
		var icpt, r2 []float64
		for _, f := range fs {
			icpt = append(icpt, f.Intercept)
			r2 = append(r2, f.R2)
		}
		row.Metrics["fit."+key+"_bytes"] = report.SpreadProto(measure.SpreadOf(slopes(fs)))
		row.Metrics["fit."+key+"_intercept_bytes"] = report.SpreadProto(measure.SpreadOf(icpt))
		row.Metrics["fit."+key+"_r2"] = report.SpreadProto(measure.SpreadOf(r2))
	}
	return row
}

// shortfalls lists the evidence of a step that says its connections were
// not in the state its snapshots assume.
func shortfalls(s *experimentv1.StepResult) []string {
	n, _ := strconv.Atoi(s.GetStep().GetParams()["counts"])
	v := s.GetStep().GetParams()["variants"]
	want := map[string]map[string]float64{
		"client": {"client_established": float64(n), "client_fin_wait2": float64(n), "client_time_wait": float64(n), "client_unacked_bytes": 0},
		"server": {"server_established": float64(n), "server_close_wait": float64(n), "server_left": 0, "server_unread_bytes": 0},
	}
	if hasEpoll(v) {
		want["client"]["client_epoll_registrations"] = float64(n)
		want["server"]["server_epoll_registrations"] = float64(n)
	}
	if hasByte(v) {
		want["server"]["server_unread_bytes"] = float64(n)
	}
	var out []string
	for _, role := range []string{"client", "server"} {
		r := report.ReportOf(s, role)
		for _, name := range slices.Sorted(maps.Keys(want[role])) {
			got, ok := report.EvidenceValue(r, name)
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s: no %s evidence", s.GetStep().GetVariant(), name))
			case got != want[role][name]:
				out = append(out, fmt.Sprintf("%s: %s %g, want %g", s.GetStep().GetVariant(), name, got, want[role][name]))
			}
		}
	}
	return out
}

// engagement marks rows whose steps all have the evidence they need.
func engagement(row *experimentv1.SummaryRow, steps []*experimentv1.StepResult, match func(*experimentv1.StepResult) bool) {
	var missing []string
	for _, s := range steps {
		if match(s) {
			missing = append(missing, shortfalls(s)...)
		}
	}
	if len(missing) == 0 {
		row.Engagement = experimentv1.Engagement_ENGAGEMENT_ENGAGED
		return
	}
	row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
	note := missing[0]
	if len(missing) > 1 {
		note += fmt.Sprintf(" (and %d more)", len(missing)-1)
	}
	row.Note = strings.TrimSpace(row.Note + " " + note)
}

// Judge summarises each variant at each count, fits each variant across
// counts, and judges the claim on the idle variant.
func (Cost) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	for _, row := range rows {
		engagement(row, steps, func(s *experimentv1.StepResult) bool { return s.GetStep().GetVariant() == row.GetVariant() })
	}
	var variants []string
	for _, s := range steps {
		if v := s.GetStep().GetParams()["variants"]; !slices.Contains(variants, v) {
			variants = append(variants, v)
		}
	}
	fits := map[string]map[string][]measure.Fit{}
	for _, v := range variants {
		fits[v] = variantFits(steps, v)
		if len(fits[v]) == 0 {
			continue
		}
		row := fitRow(v, fits[v])
		if v != variantIdle && len(fits[variantIdle]) > 0 {
			c := experiments.As[costParams](p).Test(0).Decide(slopes(fits[variantIdle][fitPair+"."+seriesConnCaches]), slopes(fits[v][fitPair+"."+seriesConnCaches]))
			row.Note = "bytes per pair vs idle: " + c.Reason
		}
		engagement(row, steps, func(s *experimentv1.StepResult) bool { return s.GetStep().GetParams()["variants"] == v })
		rows = append(rows, row)
	}
	var idle []string
	for _, n := range experiments.As[costParams](p).Counts {
		idle = append(idle, costVariant(variantIdle, n))
	}
	return rows, costVerdict(p, fits[variantIdle], report.Row(rows, variantIdle+" fit"), idle)
}

// costVerdict judges C13 on the idle variant's fits: the ESTABLISHED part
// per socket (half a pair) and the TIME_WAIT part, the confidence interval
// of each one's median over the repeats (sign test) within ±25% of the
// claim, with fits that explain the memory (R²). idle are the variants of
// the idle steps, which more repeats of an undecided verdict would run.
func costVerdict(p experiments.Params, fits map[string][]measure.Fit, row *experimentv1.SummaryRow, idle []string) *experimentv1.Verdict {
	v := &experimentv1.Verdict{Claim: "C13"}
	pair, tw := fits[fitPair+"."+seriesConnCaches], fits[fitTimeWait+"."+seriesConnCaches]
	if len(pair) == 0 || len(tw) == 0 {
		v.Outcome = experimentv1.Outcome_OUTCOME_MEASURED
		v.Explanation = "no fit on the idle variant: the claim is judged on variant idle run at two or more counts"
		return v
	}
	if row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
		v.Outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
		v.Explanation = "the connections were not all in the states the snapshots assume: " + row.GetNote()
		return v
	}
	perSocket := slopes(pair)
	for i := range perSocket {
		perSocket[i] /= 2
	}
	twSlopes := slopes(tw)
	r2 := func(fs []measure.Fit) float64 {
		var xs []float64
		for _, f := range fs {
			xs = append(xs, f.R2)
		}
		return measure.SpreadOf(xs).Median
	}
	test := experiments.As[costParams](p).Test(claimBand)
	est, tim := test.Locate(perSocket, claimEstablished), test.Locate(twSlopes, claimTimeWait)
	v.Looks = int32(test.Looks)
	m := row.GetMetrics()
	text := fmt.Sprintf("idle, per ESTABLISHED socket %s (half a pair; repeats %s; R² %.4f; server end %s, client end %s) vs claimed %s: %s. "+
		"Per TIME_WAIT socket %s (repeats %s; R² %.4f) vs claimed %s: %s. Pair by slab: %s. TIME_WAIT by slab: %s.",
		kb(measure.SpreadOf(perSocket).Median), rangeKB(perSocket), r2(pair),
		kb(m["fit.server_end."+seriesConnCaches+"_bytes"].GetMedian()), kb(m["fit.client_end."+seriesConnCaches+"_bytes"].GetMedian()),
		kb(claimEstablished), est.Reason,
		kb(measure.SpreadOf(twSlopes).Median), rangeKB(twSlopes), r2(tw), kb(claimTimeWait), tim.Reason, slabSplit(m, fitPair), slabSplit(m, fitTimeWait))
	v.Explanation = text
	switch {
	case r2(pair) < minR2 || r2(tw) < minR2:
		v.Outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		v.Explanation = fmt.Sprintf("the fits explain the memory poorly (R² below %.2f: the host's other work moved the slabs; repeat on a quieter host); ", minR2) + text
	case est.Verdict == measure.Higher || est.Verdict == measure.Lower || tim.Verdict == measure.Higher || tim.Verdict == measure.Lower:
		v.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
	case est.Verdict == measure.Same && tim.Verdict == measure.Same:
		v.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
	default:
		v.Outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		v.NeedMore = idle
	}
	return v
}

func kb(b float64) string { return fmt.Sprintf("%.2f KB", b/1000) }

func rangeKB(xs []float64) string {
	s := measure.SpreadOf(xs)
	return fmt.Sprintf("%.2f–%.2f KB", s.Min/1000, s.Max/1000)
}

// slabSplit lists the bytes per connection of one fitted kind per slab
// line, largest first, leaving out lines under 8 bytes.
func slabSplit(m map[string]*experimentv1.Spread, kind string) string {
	type part struct {
		name  string
		bytes float64
	}
	var parts []part
	for key, s := range m {
		name, ok := strings.CutPrefix(key, "fit."+kind+".")
		if !ok || !strings.HasSuffix(name, "_bytes") || strings.HasSuffix(name, "_intercept_bytes") {
			continue
		}
		name = strings.TrimSuffix(name, "_bytes")
		if strings.HasPrefix(name, "conn_caches") || strings.HasPrefix(name, "all_slab") || strings.HasPrefix(name, "tcp_mem") || strings.HasPrefix(name, "memcg_") {
			continue
		}
		if math.Abs(s.GetMedian()) >= 8 {
			parts = append(parts, part{name, s.GetMedian()})
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].bytes > parts[j].bytes })
	var out []string
	for _, p := range parts {
		out = append(out, fmt.Sprintf("%s %.0f B", p.name, p.bytes))
	}
	return strings.Join(out, ", ")
}
