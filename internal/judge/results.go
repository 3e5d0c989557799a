package judge

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Results sets result b against result a: what differs between the runs,
// and for each variant both have, each metric's change decided by the test
// verdicts use (one look at the 5% error rate, no margin: a change is
// "lower", "higher" or "undecided"). metrics limits the metrics compared
// (role-qualified); empty means every metric both runs measured.
//
// Runs of different experiments are not comparable: the comparison then
// says so and holds no changes. Every other difference (parameters, kernel,
// machine) is listed, not hidden, and the changes are still computed: a
// changed parameter is usually the point of comparing.
func Results(a, b *experimentv1.Result, metrics []string) *experimentv1.ResultComparison {
	c := &experimentv1.ResultComparison{A: a.GetId(), B: b.GetId(), Experiment: a.GetExperiment(), Comparable: true}
	diff := func(what, x, y string) {
		if x != y {
			c.Differences = append(c.Differences, &experimentv1.Difference{What: what, A: x, B: y})
		}
	}
	diff("experiment", a.GetExperiment(), b.GetExperiment())
	if a.GetExperiment() != b.GetExperiment() {
		c.Comparable = false
		return c
	}
	for _, k := range sortedUnion(a.GetParams(), b.GetParams()) {
		diff("param "+k, a.GetParams()[k], b.GetParams()[k])
	}
	ha, hb := a.GetHost(), b.GetHost()
	diff("kernel", ha.GetKernel(), hb.GetKernel())
	diff("host", ha.GetHostname(), hb.GetHostname())
	diff("cpu", ha.GetCpuModel(), hb.GetCpuModel())
	diff("cpus", fmt.Sprint(ha.GetCpus()), fmt.Sprint(hb.GetCpus()))
	diff("labctl", ha.GetLabctlVersion(), hb.GetLabctlVersion())
	for _, k := range sortedUnion(ha.GetSysctls(), hb.GetSysctls()) {
		diff("sysctl "+k, ha.GetSysctls()[k], hb.GetSysctls()[k])
	}
	diff("lab", a.GetLab(), b.GetLab())
	for _, role := range sortedUnion(a.GetNodes(), b.GetNodes()) {
		diff("node of "+role, a.GetNodes()[role], b.GetNodes()[role])
	}

	test := measure.Test{Alpha: measure.DefaultAlpha, Looks: 1}
	va, vb := report.Variants(a.GetSteps()), report.Variants(b.GetSteps())
	for _, v := range va {
		if !slices.Contains(vb, v) {
			c.OnlyA = append(c.OnlyA, v)
			continue
		}
		names := metrics
		if len(names) == 0 {
			names = stepMetrics(a.GetSteps(), v)
		}
		for _, m := range names {
			xa, xb := report.Values(a.GetSteps(), v, m), report.Values(b.GetSteps(), v, m)
			if len(xa) == 0 || len(xb) == 0 {
				continue
			}
			ch := &experimentv1.MetricChange{Variant: v, Metric: m,
				A: report.SpreadProto(measure.SpreadOf(xa)), B: report.SpreadProto(measure.SpreadOf(xb))}
			if len(xa) >= 2 && len(xb) >= 2 {
				ch.Comparison = ComparisonProto(m, a.GetId(), b.GetId(), test.Decide(xa, xb))
			}
			c.Changes = append(c.Changes, ch)
		}
	}
	for _, v := range vb {
		if !slices.Contains(va, v) {
			c.OnlyB = append(c.OnlyB, v)
		}
	}
	return c
}

// Significance says a change the way the command line and reports print
// it: "lower: -12.3% [-15.0%, -9.1%]", "undecided: …", or why there is no
// test.
func Significance(ch *experimentv1.MetricChange) string {
	cmp := ch.GetComparison()
	if cmp == nil {
		return "fewer than 2 repeats: not tested"
	}
	verdict := strings.ToLower(strings.TrimPrefix(cmp.GetVerdict().String(), "COMPARISON_VERDICT_"))
	if cmp.GetRatio() <= 0 {
		return verdict + ": " + cmp.GetText() // no estimate (values that are not finite)
	}
	s := fmt.Sprintf("%s: %+.1f%%", verdict, 100*(cmp.GetRatio()-1))
	if cmp.GetHigh() > 0 {
		s += fmt.Sprintf(" [%+.1f%%, %+.1f%%]", 100*(cmp.GetLow()-1), 100*(cmp.GetHigh()-1))
	}
	return s
}

// stepMetrics are the role-qualified metrics the steps of a variant
// reported, sorted.
func stepMetrics(steps []*experimentv1.StepResult, variant string) []string {
	seen := map[string]bool{}
	for _, s := range steps {
		if s.GetStep().GetVariant() != variant {
			continue
		}
		for _, r := range s.GetReports() {
			for m := range r.GetMetrics() {
				seen[r.GetRole()+"."+m] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

func sortedUnion(a, b map[string]string) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// OutcomeWord is a verdict's outcome as labctl writes it everywhere (CLI,
// reports, traces, explanations): "holds", "does not hold", "undecided".
func OutcomeWord(o experimentv1.Outcome) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_")), "_", " ")
}
