package runs

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// seq is an experiment for the runner's rounds: two variants whose one
// metric is given per repeat by value, compared with no margin.
type seq struct {
	value func(variant string, repeat int32) float64
}

type seqParams struct {
	experiments.Rounds
	experiments.Timing
}

func (seq) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{Name: "seq", Summary: "test", Roles: []string{"client"},
		Params: experiments.Declare(seqParams{
			Rounds: experiments.Rounds{Repeats: experiments.Repeats{Repeats: 5}, MaxRepeats: 14, Budget: time.Hour},
			Timing: experiments.Timing{Duration: time.Second}})}
}

func (seq) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	var steps []*experimentv1.Step
	for r := range experiments.As[seqParams](p).Repeats.Repeats {
		for _, v := range []string{"a", "b"} {
			steps = append(steps, &experimentv1.Step{Variant: v, Repeat: int32(r), Params: p.Map(),
				Roles: []*experimentv1.RoleAssignment{{Role: "client", Node: lab.Node("client")}}})
		}
	}
	return steps, nil
}

func (s seq) Run(_ context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	env.Ready(0)
	r := env.Report()
	r.Metrics["x"] = s.value(env.Step.GetVariant(), env.Step.GetRepeat())
	return r, nil
}

func (seq) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	v := &experimentv1.Verdict{Outcome: experimentv1.Outcome_OUTCOME_UNDECIDED}
	if d := judge.Compare(v, experiments.As[seqParams](p).Test(0), steps, "client.x", "a", "b"); d.Decided() {
		v.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
	}
	return report.Aggregate(steps), v
}

func runSeq(t *testing.T, e seq, params map[string]string) (*experimentv1.Result, []string) {
	t.Helper()
	reg, err := experiments.NewRegistry(e)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Registry: reg, Store: &Store{Dir: t.TempDir()}, Version: "test"}
	var progress []string
	res, err := r.Run(context.Background(), Request{Plan: loopbackPlan(), Agents: startAgentsWith(t, r.Registry, "n1", "n2"),
		Experiment: "seq", Params: params}, func(ev Event) {
		if p := ev.Progress; p != nil {
			progress = append(progress, p.Message)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return res, progress
}

// TestRoundsUntilDecided: an undecided comparison gets rounds of three
// more repeats of its variants, interleaved in turn, until it is decided
// or the looks the parameters allow are spent; the time budget stops
// rounds that would pass it.
func TestRoundsUntilDecided(t *testing.T) {
	// The same distribution for a and b: no look decides, all 4 are taken.
	same := seq{value: func(v string, r int32) float64 { return 100 + 10*math.Sin(float64(r)*1.7+float64(len(v))) }}
	res, progress := runSeq(t, same, nil)
	if n := len(res.GetSteps()); n != 2*14 {
		t.Errorf("%d steps, want 2 variants x 14 repeats", n)
	}
	if v := res.GetVerdict(); v.GetLooks() != 4 || len(v.GetComparisons()) != 1 || v.GetComparisons()[0].GetRepeatsA() != 14 {
		t.Errorf("verdict: looks %d, comparisons %v", v.GetLooks(), v.GetComparisons())
	}
	if !strings.Contains(strings.Join(progress, "\n"), "undecided: a, b; look 2 of 4 adds 3 repeats of each") {
		t.Errorf("progress: %q", progress)
	}
	// Rounds reverse the variants' order every other repeat.
	var order []string
	for _, s := range res.GetSteps()[10:16] {
		order = append(order, fmt.Sprintf("%s%d", s.GetStep().GetVariant(), s.GetStep().GetRepeat()))
	}
	if got := strings.Join(order, " "); got != "a5 b5 b6 a6 a7 b7" {
		t.Errorf("round order %s", got)
	}

	// b 50% higher, noisy: decided before the looks run out.
	apart := seq{value: func(v string, r int32) float64 {
		x := 100 + 3*math.Sin(float64(r)*2.3)
		if v == "b" {
			x *= 1.5
		}
		return x
	}}
	res, _ = runSeq(t, apart, nil)
	if n := len(res.GetSteps()); n != 10 || res.GetVerdict().GetOutcome() != experimentv1.Outcome_OUTCOME_HOLDS {
		t.Errorf("a clear difference took %d steps, verdict %v", n, res.GetVerdict())
	}

	// A budget of 14 s: the first 10 steps (10 s) fit, a round of 6 more
	// would not.
	res, progress = runSeq(t, same, map[string]string{"time_budget": "14s"})
	if n := len(res.GetSteps()); n != 10 {
		t.Errorf("%d steps within the budget, want 10", n)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "would pass the budget of 14s") {
		t.Errorf("progress: %q", progress)
	}
}
