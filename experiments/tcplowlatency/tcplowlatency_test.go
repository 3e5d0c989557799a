package tcplowlatency

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func TestParseRelease(t *testing.T) {
	for _, tt := range []struct {
		release string
		want    kernel.Version
		modern  bool
	}{
		{"6.18.44-fc-v782", kernel.V(6, 18), true},
		{"4.14.0", kernel.V(4, 14), true},
		{"4.9.337-rt", kernel.V(4, 9), false},
		{"3.10.0-1160.el7.x86_64", kernel.V(3, 10), false},
	} {
		k, err := kernel.ParseRelease(tt.release)
		if err != nil || k != tt.want || k.AtLeast(removedIn) != tt.modern {
			t.Errorf("%s: %v (%v), modern %v", tt.release, k, err, k.AtLeast(removedIn))
		}
	}
	if _, err := kernel.ParseRelease("linux"); err == nil {
		t.Error("parsed a release without numbers")
	}
}

func TestStepsAlternate(t *testing.T) {
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"repeats": "3"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, labtest.Example(t, "quickstart", map[string]string{"client": "n1", "server": "n2"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Variant)
	}
	if want := []string{"tcp_low_latency=0", "tcp_low_latency=1", "tcp_low_latency=0", "tcp_low_latency=1", "tcp_low_latency=0", "tcp_low_latency=1"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

// steps makes a hand-made run: RTT p50 per repeat for each value, the
// value read back, and the kernel release.
func steps(release string, p50 map[string][]float64, readBack map[string]float64) []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	for i := range len(p50["0"]) {
		for _, v := range values {
			srv := &experimentv1.RoleReport{Role: "server", Metrics: map[string]float64{}}
			got, ok := readBack[v]
			if !ok {
				got = float64(v[0] - '0')
			}
			report.AddEvidence(srv, "tcp_low_latency", got, "", "", "")
			if release != "" {
				report.AddEvidence(srv, "kernel_version", 0, "", "", release)
			}
			cli := &experimentv1.RoleReport{Role: "client", Metrics: map[string]float64{"rtt_p50_ns": p50[v][i], "rtt_p99_ns": 2 * p50[v][i]}}
			out = append(out, &experimentv1.StepResult{Step: &experimentv1.Step{Variant: variantName(v), Repeat: int32(i)},
				Reports: []*experimentv1.RoleReport{srv, cli}})
		}
	}
	return out
}

func TestJudge(t *testing.T) {
	// Within ±1% of each other, 8 repeats each: the same within 5%.
	tight := map[string][]float64{"0": {20e3, 20.1e3, 19.9e3, 20.2e3, 19.8e3, 20e3, 20.1e3, 19.9e3}, "1": {20.1e3, 19.9e3, 20e3, 20.2e3, 19.9e3, 20.1e3, 20e3, 19.8e3}}
	// Medians 50% apart, ranges wide and overlapping: never "no effect".
	wide := map[string][]float64{"0": {20e3, 14e3, 35e3, 18e3, 26e3}, "1": {30e3, 16e3, 40e3, 22e3, 34e3}}
	same := map[string][]float64{"0": {20e3, 22e3, 21e3, 23e3, 20.5e3}, "1": {21e3, 20e3, 22.5e3, 21.5e3, 20.2e3}}
	apart := map[string][]float64{"0": {20e3, 20.5e3, 20.2e3, 20.1e3, 20.3e3}, "1": {30e3, 31e3, 30.5e3, 30.2e3, 30.1e3}}
	two := map[string][]float64{"0": {20e3, 20.5e3}, "1": {30e3, 31e3}}
	for _, tt := range []struct {
		name     string
		run      []*experimentv1.StepResult
		outcome  experimentv1.Outcome
		says     string
		engaged1 experimentv1.Engagement
	}{
		{"no effect on a modern kernel", steps("6.18.44", tight, nil), experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, "No effect larger than 5%, as expected on Linux 6.18", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"overlapping ranges are no evidence of no effect", steps("6.18.44", same, nil), experimentv1.Outcome_OUTCOME_UNDECIDED, "more repeats of each would decide it", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"50% apart with wide ranges is not the same", steps("6.18.44", wide, nil), experimentv1.Outcome_OUTCOME_UNDECIDED, "undecided", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"too few repeats", steps("6.18.44", two, nil), experimentv1.Outcome_OUTCOME_UNDECIDED, "too few", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"a difference on a modern kernel is drift", steps("5.15.0", apart, nil), experimentv1.Outcome_OUTCOME_UNDECIDED, "drift", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"an old kernel with a difference", steps("4.9.0", apart, nil), experimentv1.Outcome_OUTCOME_HOLDS, "bypasses the prequeue", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"an old kernel with no effect", steps("4.4.0", tight, nil), experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, "its effect is within 5%", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
		{"the value was not in force", steps("6.18.44", same, map[string]float64{"1": 0}), experimentv1.Outcome_OUTCOME_NOT_ENGAGED, "both values in force", experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
		{"no kernel version", steps("", same, nil), experimentv1.Outcome_OUTCOME_INCONCLUSIVE, "no kernel version", experimentv1.Engagement_ENGAGEMENT_ENGAGED},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var e Experiment
			p, _ := experiments.Validate(e.Spec(), nil)
			rows, v := e.Judge(p, tt.run)
			if v.Claim != "C3" || v.Outcome != tt.outcome || !strings.Contains(v.Explanation, tt.says) {
				t.Errorf("verdict %s %v: %s; want %v saying %q", v.Claim, v.Outcome, v.Explanation, tt.outcome, tt.says)
			}
			if r := report.Row(rows, "tcp_low_latency=1"); r.GetEngagement() != tt.engaged1 {
				t.Errorf("row of value 1: %v (%s), want %v", r.GetEngagement(), r.GetNote(), tt.engaged1)
			}
			if r := report.Row(rows, "tcp_low_latency=0"); tt.engaged1 != experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED && r.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_BASELINE {
				t.Errorf("row of value 0: %v", r.GetEngagement())
			}
		})
	}
}

const sysctlFile = "/proc/sys/net/ipv4/tcp_low_latency"

func readSysctl(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(sysctlFile)
	if err != nil {
		privtest.Unavailable(t, "no "+sysctlFile+": "+err.Error())
	}
	return strings.TrimSpace(string(b))
}

// runStep runs both roles of the step that sets value over loopback, with
// a settings journal as the agent keeps one, and restores it as the agent
// does. It returns the value the host had while the server was ready.
func runStep(t *testing.T, ctx context.Context, value string, params map[string]string) (during string, serverErr, clientErr error) {
	t.Helper()
	var e Experiment
	p, err := experiments.Validate(e.Spec(), params)
	if err != nil {
		t.Fatal(err)
	}
	step := &experimentv1.Step{Variant: variantName(value), Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n", Address: "127.0.0.1"}, {Role: "client", Node: "n"}}}
	_, errs := labtest.Roles(t, ctx, e, step, p, labtest.RoleOptions{Ready: func(role string, _ int) {
		if role == "server" {
			during = readSysctl(t)
		}
	}})
	return during, errs["server"], errs["client"]
}

// The server sets the host's sysctl for its step; the journal restores it,
// after a complete step and after a cancelled one.
func TestSysctlSetAndRestored(t *testing.T) {
	privtest.Root(t)
	orig := readSysctl(t)
	other := map[string]string{"0": "1", "1": "0"}[orig]
	t.Cleanup(func() {
		if got := readSysctl(t); got != orig {
			t.Errorf("%s is %s after the test, was %s", sysctl, got, orig)
			os.WriteFile(sysctlFile, []byte(orig), 0)
		}
	})
	during, serr, cerr := runStep(t, context.Background(), other, map[string]string{"duration": "100ms", "warmup": "10ms"})
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if during != other {
		t.Errorf("the host had %s=%s during the step, want %s", sysctl, during, other)
	}
	if got := readSysctl(t); got != orig {
		t.Errorf("after the step %s=%s, want %s back", sysctl, got, orig)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	during, serr, cerr = runStep(t, ctx, other, map[string]string{"duration": "1m", "warmup": "0s"})
	if serr == nil || cerr == nil || during != other {
		t.Fatalf("cancelled step: server %v, client %v, value during %s", serr, cerr, during)
	}
	if got := readSysctl(t); got != orig {
		t.Errorf("after the cancelled step %s=%s, want %s back", sysctl, got, orig)
	}
}
