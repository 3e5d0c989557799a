package iomodels

import (
	"strings"
	"testing"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// fake describes the repeats of one variant for a hand-made run: server
// and client metrics per repeat, and whether the server declined.
type fake struct {
	v        variant
	server   []map[string]float64
	client   []map[string]float64
	declined string
	sqCPU    float64
}

func (f fake) steps() []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	for i := range max(len(f.server), len(f.client), 1) {
		srv := &experimentv1.RoleReport{Role: "server", Metrics: map[string]float64{}}
		cli := &experimentv1.RoleReport{Role: "client", Metrics: map[string]float64{}}
		if i < len(f.server) {
			srv.Metrics = f.server[i]
		}
		if i < len(f.client) {
			cli.Metrics = f.client[i]
		}
		if f.declined != "" {
			srv.Notes = []string{"unsupported: " + f.declined}
			report.AddEvidence(srv, "supported", 0, "", string(f.v.Model), f.declined)
		} else {
			report.AddEvidence(srv, "supported", 1, "", string(f.v.Model), "")
		}
		if f.v.Model == uringSQPoll {
			report.AddEvidence(srv, "sqpoll_thread_cpu", f.sqCPU, "ns", "", "")
		}
		out = append(out, &experimentv1.StepResult{
			Step:    &experimentv1.Step{Variant: f.v.Name(), Repeat: int32(i), Params: f.v.Params()},
			Reports: []*experimentv1.RoleReport{srv, cli},
		})
	}
	return out
}

// series makes n repeats of one metric around x (x, x+d, x-d, ...), so
// that ranges of different variants overlap or not as a test needs.
func series(n int, metric string, x, d float64) []map[string]float64 {
	out := make([]map[string]float64, n)
	for i := range out {
		off := float64((i+1)/2) * d
		if i%2 == 0 {
			off = -off
		}
		out[i] = map[string]float64{metric: x + off}
	}
	return out
}

// with merges metric series repeat by repeat.
func with(a []map[string]float64, more ...[]map[string]float64) []map[string]float64 {
	for _, m := range more {
		for i := range a {
			for k, v := range m[i] {
				a[i][k] = v
			}
		}
	}
	return a
}

func run(fakes ...fake) []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	for _, f := range fakes {
		out = append(out, f.steps()...)
	}
	return out
}

func judgeDefaults(t *testing.T, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	t.Helper()
	var e Experiment
	p, err := experiments.Validate(e.Spec(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.Judge(p, steps)
}

func TestClaimVerdicts(t *testing.T) {
	tcp := func(m model) variant { return variant{Model: m, Proto: protoTCP} }
	idle := func(m model, n int) variant { return variant{Model: m, Proto: protoTCP, Idle: n} }
	rtt := func(x, d float64) []map[string]float64 { return series(5, "rtt_p50_ns", x, d) }
	srv := func(metric string, x, d float64) []map[string]float64 { return series(5, metric, x, d) }
	wait := func(x, d float64) []map[string]float64 { return srv("wait_ns_per_call", x, d) }
	tests := []struct {
		name    string
		run     []*experimentv1.StepResult
		claim   string
		outcome experimentv1.Outcome
		says    []string
	}{
		{"C8 holds: one counted switch per message", run(
			fake{v: tcp(blocking), server: srv("vcsw_per_msg", 0.99, 0.005), client: rtt(30e3, 1e3)},
			fake{v: tcp(spin), server: srv("vcsw_per_msg", 0.001, 0.0005), client: rtt(20e3, 1e3)},
		), "C8", experimentv1.Outcome_OUTCOME_HOLDS, []string{"0.99 voluntary", "2.0 switches", "spin made 0.00", "cost 10.00 µs"}},
		{"C8 conditional: recv often found data", run(
			fake{v: tcp(blocking), server: srv("vcsw_per_msg", 0.5, 0.05), client: rtt(30e3, 1e3)},
		), "C8", experimentv1.Outcome_OUTCOME_CONDITIONAL, []string{"0.50 voluntary", "did not sleep"}},
		{"C8 does not hold: recv never slept", run(
			fake{v: tcp(blocking), server: srv("vcsw_per_msg", 0.01, 0.005), client: rtt(30e3, 1e3)},
		), "C8", experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, []string{"almost never slept"}},
		{"C8 spin RTT undecided", run(
			fake{v: tcp(blocking), server: srv("vcsw_per_msg", 1, 0), client: rtt(30e3, 5e3)},
			fake{v: tcp(spin), server: srv("vcsw_per_msg", 0, 0), client: rtt(29e3, 5e3)},
		), "C8", experimentv1.Outcome_OUTCOME_HOLDS, []string{"RTT p50 blocking 30.00 µs vs spin 29.00 µs (undecided"}},
		{"C9 holds: poll and select grow, epoll flat", run(
			fake{v: idle(poll, 10), server: wait(1e3, 20)}, fake{v: idle(poll, 1000), server: wait(31e3, 200)},
			fake{v: idle(selectModel, 10), server: wait(1e3, 20)}, fake{v: idle(selectModel, 1000), server: wait(11e3, 200)},
			fake{v: idle(selectModel, 10000), declined: "select cannot watch fd 1030"},
			fake{v: idle(epollLT, 10), server: wait(500, 20)}, fake{v: idle(epollLT, 1000), server: wait(510, 20)},
		), "C9", experimentv1.Outcome_OUTCOME_HOLDS, []string{"poll 1.00 µs at 10 idle → 31.00 µs at 1000 (30.30 ns per idle descriptor)", "unsupported at [10000]", "epoll-lt 0.50 µs"}},
		{"C9 does not hold: epoll grows like poll", run(
			fake{v: idle(poll, 0), server: wait(1e3, 20)}, fake{v: idle(poll, 1000), server: wait(31e3, 200)},
			fake{v: idle(epollET, 0), server: wait(500, 20)}, fake{v: idle(epollET, 1000), server: wait(20e3, 200)},
		), "C9", experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, []string{"epoll-et grows too"}},
		{"C9 undecided: growth within the spread", run(
			fake{v: idle(poll, 0), server: wait(1e3, 500)}, fake{v: idle(poll, 10), server: wait(1.2e3, 500)},
			fake{v: idle(epollLT, 0), server: wait(500, 20)}, fake{v: idle(epollLT, 10), server: wait(500, 20)},
		), "C9", experimentv1.Outcome_OUTCOME_UNDECIDED, []string{"poll from 0 to 10 idle: undecided", "more repeats of each would decide it"}},
		{"C9 inconclusive: no epoll to compare", run(
			fake{v: idle(poll, 0), server: wait(1e3, 20)}, fake{v: idle(poll, 1000), server: wait(31e3, 200)},
		), "C9", experimentv1.Outcome_OUTCOME_INCONCLUSIVE, []string{"compares select or poll with epoll"}},
		{"C15 holds: uring 1 call, SQPOLL thread awake", run(
			fake{v: tcp(epollLT), server: srv("syscalls_per_msg", 3, 0.001), client: rtt(25e3, 1e3)},
			fake{v: tcp(uringModel), server: srv("syscalls_per_msg", 1, 0.001), client: rtt(24e3, 1e3)},
			fake{v: tcp(uringSQPoll), sqCPU: 1e8, server: with(srv("syscalls_per_msg", 1, 0.001), srv("sqpoll_wakeups_per_msg", 0.001, 0), srv("enter_calls_per_msg", 1, 0)), client: rtt(24e3, 1e3)},
		), "C15", experimentv1.Outcome_OUTCOME_HOLDS, []string{"epoll-lt 3.00, uring 1.00", "0.001 woke"}},
		{"C15 conditional: SQPOLL thread slept", run(
			fake{v: tcp(epollLT), server: srv("syscalls_per_msg", 3, 0.001), client: rtt(25e3, 1e3)},
			fake{v: tcp(uringModel), server: srv("syscalls_per_msg", 1, 0.001), client: rtt(24e3, 1e3)},
			fake{v: tcp(uringSQPoll), sqCPU: 1e8, server: with(srv("syscalls_per_msg", 2, 0.001), srv("sqpoll_wakeups_per_msg", 1, 0)), client: rtt(24e3, 1e3)},
		), "C15", experimentv1.Outcome_OUTCOME_CONDITIONAL, []string{"fell asleep"}},
		{"C15 not engaged: io_uring unavailable", run(
			fake{v: tcp(epollLT), server: srv("syscalls_per_msg", 3, 0.001), client: rtt(25e3, 1e3)},
			fake{v: tcp(uringModel), declined: "io_uring_setup: io_uring unavailable: disabled for everyone by kernel.io_uring_disabled=2: operation not permitted"},
		), "C15", experimentv1.Outcome_OUTCOME_NOT_ENGAGED, []string{"io_uring_disabled=2"}},
		{"C15 undecided: counts overlap", run(
			fake{v: tcp(epollLT), server: srv("syscalls_per_msg", 3, 1), client: rtt(25e3, 1e3)},
			fake{v: tcp(uringModel), server: srv("syscalls_per_msg", 2.5, 1), client: rtt(24e3, 1e3)},
		), "C15", experimentv1.Outcome_OUTCOME_UNDECIDED, []string{"epoll-lt 3.00, uring 2.50 (undecided"}},
		{"C16 holds: netpoller 10% slower", run(
			fake{v: tcp(epollLT), client: rtt(20e3, 100)}, fake{v: tcp(blocking), client: rtt(25e3, 100)},
			fake{v: tcp(netConn), client: rtt(22e3, 100)},
		), "C16", experimentv1.Outcome_OUTCOME_HOLDS, []string{"against epoll-lt: no difference larger than 25%: +10.0% ["}},
		{"C16 does not hold: netpoller 50% slower", run(
			fake{v: tcp(epollLT), client: rtt(20e3, 100)}, fake{v: tcp(netConn), client: rtt(30e3, 100)},
		), "C16", experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, []string{"against epoll-lt: 50.0% higher ["}},
		{"C16 undecided: within the spread", run(
			fake{v: tcp(blocking), client: rtt(20e3, 3e3)}, fake{v: tcp(netConn), client: rtt(21e3, 3e3)},
		), "C16", experimentv1.Outcome_OUTCOME_UNDECIDED, []string{"whether the overhead is within the 25%", "more repeats of each would decide it"}},
		// Medians 50% apart, ranges wide and overlapping: never "small".
		{"C16 50% apart, wide and overlapping", run(
			fake{v: tcp(blocking), client: rtt(20e3, 8e3)}, fake{v: tcp(netConn), client: rtt(30e3, 8e3)},
		), "C16", experimentv1.Outcome_OUTCOME_UNDECIDED, []string{"whether the overhead is within the 25%"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, v := judgeDefaults(t, tt.run)
			t.Log(v.Explanation)
			if v.Claim != tt.claim || v.Outcome != tt.outcome {
				t.Errorf("verdict %s %v, want %s %v: %s", v.Claim, v.Outcome, tt.claim, tt.outcome, v.Explanation)
			}
			for _, s := range tt.says {
				if !strings.Contains(v.Explanation, s) {
					t.Errorf("explanation lacks %q: %s", s, v.Explanation)
				}
			}
		})
	}
}

// Several claims in one run: one verdict naming all of them, CONDITIONAL
// when their outcomes differ, each outcome in the explanation.
func TestVerdictCombinesClaims(t *testing.T) {
	tcp := func(m model) variant { return variant{Model: m, Proto: protoTCP} }
	steps := run(
		fake{v: tcp(blocking), server: series(5, "vcsw_per_msg", 1, 0), client: series(5, "rtt_p50_ns", 30e3, 100)},
		fake{v: tcp(netConn), client: series(5, "rtt_p50_ns", 60e3, 100)},
	)
	_, v := judgeDefaults(t, steps)
	if v.Claim != "C8,C16" || v.Outcome != experimentv1.Outcome_OUTCOME_CONDITIONAL {
		t.Errorf("verdict %s %v: %s", v.Claim, v.Outcome, v.Explanation)
	}
	for _, s := range []string{"C8 HOLDS:", "C16 DOES NOT HOLD:"} {
		if !strings.Contains(v.Explanation, s) {
			t.Errorf("explanation lacks %q: %s", s, v.Explanation)
		}
	}
	_, v = judgeDefaults(t, run(fake{v: tcp(spin), client: series(5, "rtt_p50_ns", 30e3, 100)}))
	if v.Outcome != experimentv1.Outcome_OUTCOME_MEASURED || v.Claim != "" {
		t.Errorf("a run that judges no claim: %v", v)
	}
}

func TestEngagement(t *testing.T) {
	tcp := func(m model) variant { return variant{Model: m, Proto: protoTCP} }
	rows, _ := judgeDefaults(t, run(
		fake{v: tcp(blocking), server: series(2, "vcsw_per_msg", 1, 0)},
		fake{v: tcp(epollET), server: series(2, "vcsw_per_msg", 1, 0)},
		fake{v: tcp(uringModel), server: series(2, "vcsw_per_msg", 1, 0), declined: "io_uring RECV: not supported by this kernel"},
		fake{v: tcp(uringSQPoll), server: series(2, "vcsw_per_msg", 1, 0), sqCPU: 0},
		fake{v: variant{Model: uringSQPoll, Proto: protoUDP}, server: series(2, "vcsw_per_msg", 1, 0), sqCPU: 5e6},
	))
	want := map[string]experimentv1.Engagement{
		"blocking/tcp":     experimentv1.Engagement_ENGAGEMENT_BASELINE,
		"epoll-et/tcp":     experimentv1.Engagement_ENGAGEMENT_ENGAGED,
		"uring/tcp":        experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED,
		"uring-sqpoll/tcp": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED,
		"uring-sqpoll/udp": experimentv1.Engagement_ENGAGEMENT_ENGAGED,
	}
	for _, r := range rows {
		if r.Engagement != want[r.Variant] {
			t.Errorf("%s: %v, want %v (note %q)", r.Variant, r.Engagement, want[r.Variant], r.Note)
		}
	}
	if r := report.Row(rows, "uring/tcp"); !strings.Contains(r.GetNote(), "not supported") {
		t.Errorf("unsupported row's note: %q", r.GetNote())
	}
}
