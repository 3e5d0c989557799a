// Package tcplowlatency is the tcp-low-latency experiment, a control: rr with
// net.ipv4.tcp_low_latency 0 and 1 interleaved. Before Linux 4.14 the
// sysctl made TCP skip the prequeue (receive processing deferred to the
// reading task); "tcp: remove prequeue support" (Linux 4.14) removed the
// prequeue, and since then nothing reads the sysctl: ip-sysctl.rst calls it
// a legacy option with no effect. The run should show no difference (C3).
package tcplowlatency

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is tcp-low-latency; the zero value is ready to use.
type Experiment struct{}

// sysctl is the setting under test. It is not per network namespace: it
// lives in the global ipv4 table, so /proc/sys/net/ipv4/tcp_low_latency
// exists only in the host's namespace (checked on Linux 6.18: a node's
// namespace has no such file), and it is set and restored there.
const sysctl = "net.ipv4.tcp_low_latency"

// removedIn is the kernel that made the sysctl a no-op.
var removedIn = kernel.V(4, 14)

// Spec describes tcp-low-latency.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "tcp-low-latency",
		Summary: "rr with net.ipv4.tcp_low_latency 0 vs 1: a control that should show no difference since Linux 4.14",
		Description: `Runs rr (one TCP connection, one request of size bytes and its response at a
time, blocking calls on locked threads) with net.ipv4.tcp_low_latency=0 and =1,
interleaved across repeats (0 1 0 1 ...), and compares the client's RTT p50:
"no effect" is an equivalence test, the ratio's confidence interval within
±5%, not ranges that overlap; while undecided, the run adds rounds of repeats
up to max_repeats within its budget (docs/statistics.md).

Until Linux 4.14 the sysctl made TCP process incoming segments in softirq
context instead of queueing them on the prequeue for the reading task. Linux
4.14 ("tcp: remove prequeue support") removed the prequeue; the sysctl stayed
so that scripts writing it do not break, and nothing reads it
(Documentation/networking/ip-sysctl.rst: "This is a legacy option, it has no
effect anymore"). Expected verdict on 4.14 and later: does not hold, no
effect larger than 5%.

The sysctl is global, not per network namespace: it exists only in the host's
namespace, so the server role sets it on the host for its step, through the
agent's settings journal, which puts the old value back when the step ends,
also when the run is cancelled or fails (and after a crash, at the agent's
next start or labctl down). While a step runs, the whole host has the value.

Evidence: the value read back from the host during each step, the kernel
version, TCP retransmissions during the step. Defaults: 2 variants x 5
repeats x (1 s + 200 ms warm-up), about 15 s, and up to 3 rounds more (14
repeats, 35 s) while undecided.`,
		Claims:         []string{"C3"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.rtt_p50_ns", "client.rtt_p99_ns", "client.msgs_per_s", "server.cpu_ns_per_msg", "server.vcsw_per_msg"},
		Params:         experiments.Declare(defaults),
	}
}

type params struct {
	Size experiments.Size `param:"size" min:"1" max:"1MiB" help:"bytes per request and per response"`
	experiments.Timing
	experiments.Rounds
	experiments.Pinning
}

var defaults = params{
	Size:    64,
	Timing:  experiments.Timing{Duration: time.Second, Warmup: 200 * time.Millisecond},
	Rounds:  experiments.Rounds{Repeats: experiments.Repeats{Repeats: 5}, MaxRepeats: 14, Budget: time.Minute},
	Pinning: experiments.Unpinned,
}

// margin is the effect C3 calls none: RTT p50 within 5%.
const margin = 0.05

// values are the settings compared, in interleaving order.
var values = []string{"0", "1"}

func variantName(value string) string { return "tcp_low_latency=" + value }

// Steps alternates the two values across repeats; each step carries its
// value in the variant name only (the spec has no parameter for it: the
// experiment is the comparison).
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	place, err := lab.ServerClient()
	if err != nil {
		return nil, err
	}
	var steps []*experimentv1.Step
	for rep := range experiments.As[params](p).Repeats.Repeats {
		for _, v := range values {
			steps = append(steps, &experimentv1.Step{Variant: variantName(v), Repeat: int32(rep), Params: p.Map(), Roles: place.Roles()})
		}
	}
	return steps, nil
}

// Run sets the sysctl in the server role and runs rr's roles.
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	switch env.Role {
	case experiments.Server:
		value, ok := strings.CutPrefix(env.Step.GetVariant(), "tcp_low_latency=")
		if !ok || (value != "0" && value != "1") {
			return nil, fmt.Errorf("tcp-low-latency: step variant %q names no value of %s", env.Step.GetVariant(), sysctl)
		}
		if err := env.Settings.HostSysctl(ctx, sysctl, value); err != nil {
			return nil, fmt.Errorf("tcp-low-latency server: %w", err)
		}
		r, err := rr.Serve(ctx, env, int(p.Size), p.ServerCPU, nil)
		if err != nil {
			return nil, err
		}
		// Read back at the end of the step: the value in force while it ran
		// (another run writing it meanwhile would show here).
		inForce, err := env.Settings.ReadHostSysctl(sysctl)
		if err != nil {
			return nil, fmt.Errorf("tcp-low-latency server: read %s: %w", sysctl, err)
		}
		n, _ := strconv.Atoi(inForce)
		report.AddEvidence(r, "tcp_low_latency", float64(n), "", "/proc/sys/net/ipv4/tcp_low_latency in the host's namespace, read back after the step",
			"the value the step ran with (the sysctl is global)")
		k, release := kernel.Running()
		report.AddEvidence(r, "kernel_version", k.Number(), "major*1000+minor", "uname -r", release)
		return r, nil
	case experiments.Client:
		peer, err := env.Peer(experiments.Server)
		if err != nil {
			return nil, err
		}
		return rr.Client(ctx, env, peer, rr.ClientOptions{Size: int(p.Size), Duration: p.Duration,
			Warmup: p.Warmup, CPU: p.ClientCPU}, nil)
	}
	return nil, fmt.Errorf("tcp-low-latency has no role %q", env.Role)
}

// Judge compares the two settings' RTT p50. On 4.14 and later the sysctl
// is read by nothing: the claim does not hold when the RTTs are the same
// within Margin; a difference there is drift on the machine, not the
// sysctl, and leaves the verdict undecided. Before 4.14, a difference shows
// the prequeue bypass at work.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	v := &experimentv1.Verdict{Claim: "C3", Outcome: experimentv1.Outcome_OUTCOME_INCONCLUSIVE}
	inForce := map[string]bool{}
	for _, val := range values {
		name := variantName(val)
		row := report.Row(rows, name)
		if row == nil {
			continue
		}
		inForce[val] = true
		for _, s := range steps {
			if s.GetStep().GetVariant() != name {
				continue
			}
			got, ok := report.EvidenceValue(report.ReportOf(s, "server"), "tcp_low_latency")
			if !ok || strconv.Itoa(int(got)) != val {
				inForce[val] = false
			}
		}
		switch {
		case !inForce[val]:
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			row.Note = "the value read back from the host differed from " + val + " in some repeat (another run changing it?)"
		case val == "0":
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_BASELINE
		default:
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_ENGAGED
			row.Note = "the sysctl was 1 during every repeat (read back); whether the kernel reads it is the question"
		}
	}
	if !inForce["0"] || !inForce["1"] {
		v.Outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
		v.Explanation = "the run does not have both values in force (read back from the host), so it cannot compare them"
		return rows, v
	}
	k := kernelOf(steps)
	d := judge.Compare(v, experiments.As[params](p).Test(margin), steps, "client.rtt_p50_ns", variantName("0"), variantName("1"))
	numbers := fmt.Sprintf("RTT p50 with 1 against 0 (%s vs %s): %s", us(d.B.Median), us(d.A.Median), d.Reason)
	modern := k.AtLeast(removedIn)
	switch {
	case k.Major == 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "The server reported no kernel version, on which the verdict depends. " + numbers + "."
	case !d.Decided():
		v.Outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		v.Explanation = fmt.Sprintf("On Linux %s: %s.", k, numbers)
	case modern && d.Verdict == measure.Same:
		v.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		v.Explanation = fmt.Sprintf("No effect larger than %.0f%%, as expected on Linux %s: since %s (prequeue removed) nothing reads the sysctl. %s.", 100*margin, k, removedIn, numbers)
	case modern:
		v.Outcome = experimentv1.Outcome_OUTCOME_UNDECIDED
		v.Explanation = fmt.Sprintf("A difference on Linux %s, where nothing reads the sysctl: drift that interleaving did not cancel, or one of the %.0f%% of runs in which the test errs; repeat the run. %s.", k, 100*measure.DefaultAlpha, numbers)
	case d.Differs():
		v.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
		v.Explanation = fmt.Sprintf("On Linux %s (before %s the sysctl bypasses the prequeue) the setting changed the RTT: %s.", k, removedIn, numbers)
	default:
		v.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
		v.Explanation = fmt.Sprintf("On Linux %s the sysctl still acts (prequeue), but its effect is within %.0f%%: %s.", k, 100*margin, numbers)
	}
	return rows, v
}

// kernelOf reads the kernel the server reported.
func kernelOf(steps []*experimentv1.StepResult) kernel.Version {
	for _, s := range steps {
		for _, e := range report.ReportOf(s, "server").GetEvidence() {
			if e.GetName() == "kernel_version" {
				if k, err := kernel.ParseRelease(e.GetDetail()); err == nil {
					return k
				}
			}
		}
	}
	return kernel.Version{}
}

func us(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1e3) }

// Figures: the round trips with each setting.
func (Experiment) Figures() []experiments.Figure { return experiments.RoundTrips() }
