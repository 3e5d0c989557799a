package report

import (
	"strings"

	"github.com/labctl/labctl/internal/measure"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Helpers that put measurements into a RoleReport with the same metric
// names in every experiment.

// AddLatency records a latency distribution as <prefix>_p50_ns ... and keeps
// the histogram itself in the report.
func AddLatency(r *experimentv1.RoleReport, prefix string, h *measure.Histogram) {
	s := h.Summary()
	for name, v := range map[string]float64{
		"p50": float64(s.P50), "p90": float64(s.P90), "p99": float64(s.P99), "p999": float64(s.P999),
		"p9999": float64(s.P9999), "min": float64(s.Min), "max": float64(s.Max), "mean": float64(s.Mean), "stddev": float64(s.Stddev),
	} {
		r.Metrics[prefix+"_"+name+"_ns"] = v
	}
	r.Metrics[prefix+"_count"] = float64(s.Count)
	d := h.Data()
	r.Latency = &experimentv1.Histogram{SubBucketBits: d.SubBucketBits, Count: d.Count, MinNs: d.MinNs, MaxNs: d.MaxNs, SumNs: d.SumNs, Buckets: d.Buckets, Counts: d.Counts}
}

// Histogram rebuilds a report's latency histogram.
func Histogram(h *experimentv1.Histogram) (*measure.Histogram, error) {
	return measure.HistogramData{SubBucketBits: h.GetSubBucketBits(), Count: h.GetCount(), MinNs: h.GetMinNs(), MaxNs: h.GetMaxNs(),
		SumNs: h.GetSumNs(), Buckets: h.GetBuckets(), Counts: h.GetCounts()}.Histogram()
}

// AddUsage records a thread's CPU time and context switches per operation
// (unit names what an operation is: "msg", "byte").
func AddUsage(r *experimentv1.RoleReport, u measure.Usage, n int64, unit string) {
	p := u.PerOp(n)
	r.Metrics["cpu_ns_per_"+unit] = p.CPUNs
	r.Metrics["user_ns_per_"+unit] = p.UserNs
	r.Metrics["sys_ns_per_"+unit] = p.SystemNs
	r.Metrics["vcsw_per_"+unit] = p.Voluntary
	r.Metrics["ivcsw_per_"+unit] = p.Involuntary
}

// AddEvidence appends one kernel observation.
func AddEvidence(r *experimentv1.RoleReport, name string, value float64, unit, source, detail string) {
	r.Evidence = append(r.Evidence, &experimentv1.Evidence{Name: name, Value: value, Unit: unit, Source: source, Detail: detail})
}

// EvidenceValue finds a piece of evidence by name.
func EvidenceValue(r *experimentv1.RoleReport, name string) (float64, bool) {
	for _, e := range r.GetEvidence() {
		if e.GetName() == name {
			return e.GetValue(), true
		}
	}
	return 0, false
}

// ReportOf returns the report of role in a step, or nil.
func ReportOf(s *experimentv1.StepResult, role string) *experimentv1.RoleReport {
	for _, r := range s.GetReports() {
		if r.GetRole() == role {
			return r
		}
	}
	return nil
}

// Aggregate groups steps by variant, in the order variants first appear,
// and computes the spread of every metric across repeats; metrics are named
// role.metric ("client.rtt_p50_ns").
func Aggregate(steps []*experimentv1.StepResult) []*experimentv1.SummaryRow {
	var order []string
	values := map[string]map[string][]float64{}
	for _, s := range steps {
		v := s.GetStep().GetVariant()
		if values[v] == nil {
			values[v] = map[string][]float64{}
			order = append(order, v)
		}
		for _, r := range s.GetReports() {
			for name, x := range r.GetMetrics() {
				key := r.GetRole() + "." + name
				values[v][key] = append(values[v][key], x)
			}
		}
	}
	rows := make([]*experimentv1.SummaryRow, 0, len(order))
	for _, v := range order {
		row := &experimentv1.SummaryRow{Variant: v, Metrics: map[string]*experimentv1.Spread{}}
		for key, xs := range values[v] {
			row.Metrics[key] = SpreadProto(measure.SpreadOf(xs))
		}
		rows = append(rows, row)
	}
	return rows
}

// SpreadProto converts a Spread for a result.
func SpreadProto(s measure.Spread) *experimentv1.Spread {
	return &experimentv1.Spread{N: int32(s.N), Median: s.Median, Mean: s.Mean, Min: s.Min, Max: s.Max, Stddev: s.Stddev}
}

// Values returns a role-qualified metric across the repeats of a variant.
func Values(steps []*experimentv1.StepResult, variant, metric string) []float64 {
	role, name, _ := strings.Cut(metric, ".")
	var out []float64
	for _, s := range steps {
		if s.GetStep().GetVariant() != variant {
			continue
		}
		if r := ReportOf(s, role); r != nil {
			if x, ok := r.GetMetrics()[name]; ok {
				out = append(out, x)
			}
		}
	}
	return out
}

// Row finds a variant's summary row.
func Row(rows []*experimentv1.SummaryRow, variant string) *experimentv1.SummaryRow {
	for _, r := range rows {
		if r.GetVariant() == variant {
			return r
		}
	}
	return nil
}

// Variants lists the variants of a run in order.
func Variants(steps []*experimentv1.StepResult) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range steps {
		if v := s.GetStep().GetVariant(); !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
