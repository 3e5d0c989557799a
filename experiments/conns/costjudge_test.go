package conns

import (
	"fmt"
	"strings"
	"testing"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func quickstart(t *testing.T, client, server string) experiments.Lab {
	t.Helper()
	return labtest.Example(t, "quickstart", map[string]string{"client": client, "server": server})
}

func TestCostSteps(t *testing.T) {
	var e Cost
	p, err := experiments.Validate(e.Spec(), map[string]string{"counts": "100,1000", "variants": "idle,epoll", "repeats": "2"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, quickstart(t, "n1", "n2"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%d %s", s.GetRepeat(), s.GetVariant()))
		// Each step narrows the lists to its own count and variant, and
		// its params validate like the run's.
		n, v := s.GetParams()["counts"], s.GetParams()["variants"]
		if s.GetVariant() != v+" n="+n {
			t.Errorf("step %s has counts=%s variants=%s", s.GetVariant(), n, v)
		}
		if _, err := experiments.Validate(e.Spec(), s.GetParams()); err != nil {
			t.Errorf("step %s: %v", s.GetVariant(), err)
		}
		roles := s.GetRoles()
		if len(roles) != 2 || roles[0].GetRole() != "server" || roles[0].GetNode() != "n2" || roles[0].GetAddress() != "198.18.0.2" ||
			roles[1].GetRole() != "client" || roles[1].GetNode() != "n1" || roles[1].GetAddress() != "198.18.0.1" {
			t.Errorf("roles %v", roles)
		}
	}
	want := "0 idle n=100,0 epoll n=100,0 idle n=1000,0 epoll n=1000,1 idle n=100,1 epoll n=100,1 idle n=1000,1 epoll n=1000"
	if strings.Join(got, ",") != want {
		t.Errorf("steps\n%s\nwant\n%s", strings.Join(got, ","), want)
	}
}

// model is the memory a step reports: bytes per pair, per server end and
// per TIME_WAIT socket, plus what the host did meanwhile (noise, per
// snapshot).
type model struct {
	pair, server, timeWait float64
	noise                  [3]float64
}

// costStep makes the reports of one step whose connections behaved as the
// evidence says they should, with memory following m.
func costStep(v string, n, repeat int, m model) *experimentv1.StepResult {
	N := float64(n)
	client := &experimentv1.RoleReport{Role: "client", Metrics: map[string]float64{
		"established.conn_caches_bytes": m.pair*N + m.noise[0],
		"close_wait.conn_caches_bytes":  (m.server+m.timeWait)*N + m.noise[1],
		"time_wait.conn_caches_bytes":   m.timeWait*N + m.noise[2],
		"established.TCP_bytes":         2 * 2368 * N,
		"close_wait.TCP_bytes":          2368 * N,
		"time_wait.TCP_bytes":           0,
	}}
	server := &experimentv1.RoleReport{Role: "server", Metrics: map[string]float64{}}
	for name, x := range map[string]float64{"client_established": N, "client_fin_wait2": N, "client_time_wait": N, "client_unacked_bytes": 0} {
		report.AddEvidence(client, name, x, "", "", "")
	}
	unread := 0.0
	if hasByte(v) {
		unread = N
	}
	for name, x := range map[string]float64{"server_established": N, "server_close_wait": N, "server_left": 0, "server_unread_bytes": unread} {
		report.AddEvidence(server, name, x, "", "", "")
	}
	if hasEpoll(v) {
		report.AddEvidence(client, "client_epoll_registrations", N, "", "", "")
		report.AddEvidence(server, "server_epoll_registrations", N, "", "", "")
	}
	return &experimentv1.StepResult{
		Step:    &experimentv1.Step{Variant: costVariant(v, n), Repeat: int32(repeat), Params: map[string]string{"counts": fmt.Sprint(n), "variants": v}},
		Reports: []*experimentv1.RoleReport{server, client},
	}
}

// costRun makes a run of variant v at the counts, one model per repeat.
func costRun(v string, counts []int, models ...model) []*experimentv1.StepResult {
	var steps []*experimentv1.StepResult
	for r, m := range models {
		for _, n := range counts {
			steps = append(steps, costStep(v, n, r, m))
		}
	}
	return steps
}

func TestCostJudge(t *testing.T) {
	counts := []int{1000, 10000, 100000}
	good := model{pair: 7200, server: 3600, timeWait: 400, noise: [3]float64{3e5, -2e5, 1e5}}
	small := good
	small.timeWait = 256
	slightly := func(tw float64) model { m := good; m.timeWait = tw; return m }
	// The host took 300 MB during every repeat's middle step.
	six := func(m model) []model { return []model{m, m, m, m, m, m} }
	noisy := costRun("idle", counts, six(good)...)
	for _, st := range noisy {
		if st.GetStep().GetParams()["counts"] == "10000" {
			m := report.ReportOf(st, "client").Metrics
			m["established.conn_caches_bytes"] += 3e8
			m["close_wait.conn_caches_bytes"] += 3e8
			m["time_wait.conn_caches_bytes"] += 3e8
		}
	}
	var e Cost
	p, _ := experiments.Validate(e.Spec(), nil)
	for _, tc := range []struct {
		name    string
		steps   []*experimentv1.StepResult
		outcome experimentv1.Outcome
		explain string
	}{
		{"holds", costRun("idle", counts, six(good)...), experimentv1.Outcome_OUTCOME_HOLDS, "per ESTABLISHED socket 3.60 KB"},
		{"time wait smaller than claimed", costRun("idle", counts, six(small)...), experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, "Per TIME_WAIT socket 0.26 KB"},
		{"repeats straddle the band's edge", costRun("idle", counts, slightly(290), slightly(305), slightly(320), slightly(295), slightly(310), slightly(300)), experimentv1.Outcome_OUTCOME_UNDECIDED, "reaches across the edge"},
		{"three repeats decide nothing", costRun("idle", counts, good, good, good), experimentv1.Outcome_OUTCOME_UNDECIDED, "too few"},
		{"host noise swamps the fit", noisy, experimentv1.Outcome_OUTCOME_UNDECIDED, "R² below"},
		{"one count: nothing to fit", costRun("idle", []int{1000}, good, good), experimentv1.Outcome_OUTCOME_MEASURED, "two or more counts"},
		{"idle not run", costRun("epoll", counts, good, good), experimentv1.Outcome_OUTCOME_MEASURED, "variant idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, v := e.Judge(p, tc.steps)
			if v.GetOutcome() != tc.outcome || !strings.Contains(v.GetExplanation(), tc.explain) || v.GetClaim() != "C13" {
				t.Errorf("verdict %v: %s\nwant %v containing %q", v.GetOutcome(), v.GetExplanation(), tc.outcome, tc.explain)
			}
			if len(rows) == 0 {
				t.Fatal("no rows")
			}
		})
	}
}

func TestCostJudgeFitRow(t *testing.T) {
	var e Cost
	p, _ := experiments.Validate(e.Spec(), nil)
	m := model{pair: 7200, server: 3500, timeWait: 512, noise: [3]float64{1000, 2000, 3000}}
	rows, _ := e.Judge(p, costRun("idle", []int{1000, 10000}, m, m))
	// Per count rows first, then the fit.
	var names []string
	for _, r := range rows {
		names = append(names, r.GetVariant())
		if r.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
			t.Errorf("row %s: %v %s", r.GetVariant(), r.GetEngagement(), r.GetNote())
		}
	}
	if strings.Join(names, ",") != "idle n=1000,idle n=10000,idle fit" {
		t.Fatalf("rows %v", names)
	}
	fit := rows[2].GetMetrics()
	for key, want := range map[string]float64{
		"fit.pair.conn_caches_bytes": 7200, "fit.server_end.conn_caches_bytes": 3500, "fit.client_end.conn_caches_bytes": 3700,
		"fit.time_wait.conn_caches_bytes": 512, "fit.pair.conn_caches_intercept_bytes": 1000, "fit.time_wait.conn_caches_intercept_bytes": 3000,
		"fit.pair.TCP_bytes": 2 * 2368, "fit.server_end.TCP_bytes": 2368, "fit.time_wait.TCP_r2": 1,
	} {
		s := fit[key]
		if s == nil || s.GetN() != 2 || abs(s.GetMedian()-want) > 1e-6*max(1, abs(want)) {
			t.Errorf("%s = %v, want %v over 2 repeats", key, s, want)
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestCostJudgeNotEngaged(t *testing.T) {
	var e Cost
	p, _ := experiments.Validate(e.Spec(), nil)
	steps := costRun("idle", []int{1000, 10000}, model{pair: 7200, server: 3600, timeWait: 400})
	// Fewer TIME_WAIT sockets than connections: net.ipv4.tcp_max_tw_buckets
	// closed the rest without TIME_WAIT.
	client := report.ReportOf(steps[1], "client")
	for _, ev := range client.Evidence {
		if ev.Name == "client_time_wait" {
			ev.Value = 8000
		}
	}
	rows, v := e.Judge(p, steps)
	if v.GetOutcome() != experimentv1.Outcome_OUTCOME_NOT_ENGAGED || !strings.Contains(v.GetExplanation(), "client_time_wait 8000, want 10000") {
		t.Errorf("verdict %v: %s", v.GetOutcome(), v.GetExplanation())
	}
	if r := report.Row(rows, "idle n=10000"); r.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED {
		t.Errorf("row idle n=10000: %v", r.GetEngagement())
	}
	if r := report.Row(rows, "idle n=1000"); r.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
		t.Errorf("row idle n=1000: %v %s", r.GetEngagement(), r.GetNote())
	}
}

func TestCostJudgeComparesVariants(t *testing.T) {
	var e Cost
	p, _ := experiments.Validate(e.Spec(), nil)
	counts := []int{1000, 10000}
	idle := model{pair: 7200, server: 3600, timeWait: 400}
	withEpoll := model{pair: 7584, server: 3792, timeWait: 400}
	for _, tc := range []struct {
		name    string
		repeats int
		jitter  float64
		want    string
	}{
		{"significant", 4, 10, "5.2% higher ["},
		{"too few repeats", 3, 10, "too few"},
		{"undecided", 4, 600, "undecided: -2.9% ["},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var steps []*experimentv1.StepResult
			for r := range tc.repeats {
				// Alternate the repeats' offsets so that the ranges
				// are jitter wide.
				d := tc.jitter * float64(r%2)
				a, b := idle, withEpoll
				a.pair += d
				b.pair -= d
				for _, n := range counts {
					steps = append(steps, costStep("idle", n, r, a), costStep("epoll", n, r, b))
				}
			}
			rows, _ := e.Judge(p, steps)
			row := report.Row(rows, "epoll fit")
			if row == nil || !strings.Contains(row.GetNote(), tc.want) {
				t.Errorf("epoll fit note %q, want %q", row.GetNote(), tc.want)
			}
		})
	}
}
