// Package judge decides the comparisons of a run's verdict: the
// Mann-Whitney/Hodges-Lehmann test of measure over the variants' repeats,
// recorded in the verdict, and the rounds of more repeats a run adds while
// a comparison is undecided (docs/statistics.md).
package judge

import (
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Compare decides metric (role-qualified: "client.rtt_p50_ns") of variant
// b against variant a over their repeats with test (the run's error rate
// split over its looks, and the claim's margin: experiments.Rounds.Test),
// and records the
// comparison in v: in its comparisons, and, while it is not settled
// (measure.Decision.Settled), in the variants that need more repeats.
func Compare(v *experimentv1.Verdict, test measure.Test, steps []*experimentv1.StepResult, metric, a, b string) measure.Decision {
	d := Decide(test, steps, metric, a, b)
	v.Looks = int32(d.Looks)
	v.Comparisons = append(v.Comparisons, ComparisonProto(metric, a, b, d))
	if !d.Settled() {
		for _, x := range []string{a, b} {
			if !slices.Contains(v.NeedMore, x) {
				v.NeedMore = append(v.NeedMore, x)
			}
		}
	}
	return d
}

// Decide is Compare for a comparison that only describes: recorded
// nowhere, it never asks for more repeats.
func Decide(test measure.Test, steps []*experimentv1.StepResult, metric, a, b string) measure.Decision {
	return test.Decide(report.Values(steps, a, metric), report.Values(steps, b, metric))
}

// ComparisonProto is d as a result records it.
func ComparisonProto(metric, a, b string, d measure.Decision) *experimentv1.Comparison {
	verdict := map[measure.Verdict]experimentv1.ComparisonVerdict{
		measure.Undecided: experimentv1.ComparisonVerdict_COMPARISON_VERDICT_UNDECIDED,
		measure.Lower:     experimentv1.ComparisonVerdict_COMPARISON_VERDICT_LOWER,
		measure.Higher:    experimentv1.ComparisonVerdict_COMPARISON_VERDICT_HIGHER,
		measure.Same:      experimentv1.ComparisonVerdict_COMPARISON_VERDICT_SAME,
	}[d.Verdict]
	high := d.High
	if high > 1e300 {
		high = 0 // no interval: JSON has no infinity
	}
	return &experimentv1.Comparison{Metric: metric, A: a, B: b, Ratio: d.Ratio, Low: d.Low, High: high, Level: d.Level,
		Margin: d.Margin, Verdict: verdict, BeyondMargin: d.Beyond, RepeatsA: int32(d.A.N), RepeatsB: int32(d.B.N),
		More: int32(d.More), Text: d.Reason}
}

// MoreSteps is a round of grow more repeats of the variants in need, for
// a run whose comparisons of them are undecided: each variant's steps of
// its last repeat, cloned under the next repeat numbers. The variants are
// interleaved, in reverse order every other repeat (A B, B A), so that
// drift on the machine hits them alike.
func MoreSteps(done []*experimentv1.StepResult, need []string, grow int) []*experimentv1.Step {
	last := map[string]int32{}
	for _, s := range done {
		v := s.GetStep().GetVariant()
		if r, ok := last[v]; !ok || s.GetStep().GetRepeat() > r {
			last[v] = s.GetStep().GetRepeat()
		}
	}
	template := map[string][]*experimentv1.Step{}
	var order []string
	for _, s := range done {
		st := s.GetStep()
		if !slices.Contains(need, st.GetVariant()) || st.GetRepeat() != last[st.GetVariant()] {
			continue
		}
		if template[st.GetVariant()] == nil {
			order = append(order, st.GetVariant())
		}
		template[st.GetVariant()] = append(template[st.GetVariant()], st)
	}
	var out []*experimentv1.Step
	for r := range grow {
		vs := slices.Clone(order)
		if r%2 == 1 {
			slices.Reverse(vs)
		}
		for _, v := range vs {
			for _, st := range template[v] {
				c := proto.Clone(st).(*experimentv1.Step)
				c.Repeat = last[v] + 1 + int32(r)
				out = append(out, c)
			}
		}
	}
	return out
}
