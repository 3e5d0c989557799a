package rr

import (
	"context"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// runLoopback runs both roles of one rr step over 127.0.0.1 in this process.
func runLoopback(t *testing.T, ctx context.Context, params map[string]string) (server, client *experimentv1.RoleReport, serverErr, clientErr error) {
	t.Helper()
	var e Experiment
	p, err := experiments.Validate(e.Spec(), params)
	if err != nil {
		t.Fatal(err)
	}
	step := &experimentv1.Step{Variant: "tcp", Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n", Address: "127.0.0.1"}, {Role: "client", Node: "n"}}}
	reports, errs := labtest.Roles(t, ctx, e, step, p, labtest.RoleOptions{})
	return reports["server"], reports["client"], errs["server"], errs["client"]
}

func TestRoundTripsOnLoopback(t *testing.T) {
	server, client, serr, cerr := runLoopback(t, context.Background(), map[string]string{"count": "2000", "warmup": "20ms", "size": "100"})
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if got := client.Metrics["messages"]; got != 2000 {
		t.Errorf("client measured %v round trips, want 2000", got)
	}
	// The server counts the same messages through the phase byte: warm-up
	// messages are excluded on both sides.
	if server.Metrics["messages"] != client.Metrics["messages"] {
		t.Errorf("server measured %v messages, client %v", server.Metrics["messages"], client.Metrics["messages"])
	}
	for _, m := range []string{"rtt_p50_ns", "rtt_p9999_ns", "msgs_per_s", "cpu_ns_per_msg", "vcsw_per_msg", "ivcsw_per_msg"} {
		if _, ok := client.Metrics[m]; !ok {
			t.Errorf("client report lacks %s", m)
		}
	}
	if client.Metrics["rtt_p50_ns"] <= 0 || client.Metrics["rtt_p50_ns"] > client.Metrics["rtt_p9999_ns"] {
		t.Errorf("percentiles out of order: %v", client.Metrics)
	}
	if client.Latency.GetCount() != 2000 {
		t.Errorf("histogram holds %d round trips", client.Latency.GetCount())
	}
	if napi, ok := report.EvidenceValue(server, "napi_id"); !ok || napi != 0 {
		t.Errorf("loopback has no NAPI context, yet napi_id evidence is %v (present %v)", napi, ok)
	}
	if _, ok := server.Metrics["cpu_ns_per_msg"]; !ok {
		t.Error("server report lacks cpu_ns_per_msg")
	}
}

func TestCancelStopsBothRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// A long run cancelled early: both roles must return, with the
	// context's error, instead of blocking in recv.
	_, _, serr, cerr := runLoopback(t, ctx, map[string]string{"duration": "1m", "warmup": "0s"})
	if cerr == nil || ctx.Err() == nil {
		t.Fatalf("client finished a 1m run in 300ms: %v", cerr)
	}
	if serr == nil {
		t.Error("server returned no error after the run was cancelled")
	}
}

func TestJudgeSummarisesRepeats(t *testing.T) {
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	var steps []*experimentv1.StepResult
	for i, p50 := range []float64{10e3, 12e3, 11e3} {
		steps = append(steps, &experimentv1.StepResult{
			Step:    &experimentv1.Step{Variant: "tcp", Repeat: int32(i)},
			Reports: []*experimentv1.RoleReport{{Role: "client", Metrics: map[string]float64{"rtt_p50_ns": p50, "rtt_p99_ns": 2 * p50, "msgs_per_s": 1e9 / p50}}},
		})
	}
	rows, v := e.Judge(p, steps)
	if len(rows) != 1 || rows[0].Metrics["client.rtt_p50_ns"].GetMedian() != 11e3 {
		t.Fatalf("summary: %v", rows)
	}
	if v.Outcome != experimentv1.Outcome_OUTCOME_MEASURED || v.Explanation == "" {
		t.Errorf("verdict: %v", v)
	}
}
