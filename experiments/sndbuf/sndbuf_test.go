package sndbuf

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func runLoopback(t *testing.T, ctx context.Context, variant string, params map[string]string) (server, client *experimentv1.RoleReport, serverErr, clientErr error) {
	t.Helper()
	var e Experiment
	p, err := experiments.Validate(e.Spec(), params)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = p.With(map[string]string{"variants": variant}); err != nil {
		t.Fatal(err)
	}
	step := &experimentv1.Step{Variant: variant, Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n", Address: "127.0.0.1"}, {Role: "client", Node: "n"}}}
	reports, errs := labtest.Roles(t, ctx, e, step, p, labtest.RoleOptions{})
	return reports["server"], reports["client"], errs["server"], errs["client"]
}

func evidence(t *testing.T, r *experimentv1.RoleReport, name string) float64 {
	t.Helper()
	v, ok := report.EvidenceValue(r, name)
	if !ok {
		t.Fatalf("%s report lacks evidence %s", r.GetRole(), name)
	}
	return v
}

func TestNonBlockingSendGetsEAGAIN(t *testing.T) {
	privtest.Root(t) // not for privileges: for the same loopback the other tests use
	server, client, serr, cerr := runLoopback(t, context.Background(), nonBlocking, nil)
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if e := evidence(t, client, "send_errno"); unix.Errno(e) != unix.EAGAIN {
		t.Errorf("send failed with errno %v, want EAGAIN", unix.Errno(e))
	}
	m := client.Metrics
	// Every accepted byte reaches the reader, and at the end of the stall
	// it is in one of the two queues.
	if server.Metrics["bytes_read"] != m["accepted_bytes"] {
		t.Errorf("server read %v bytes, the client had %v accepted", server.Metrics["bytes_read"], m["accepted_bytes"])
	}
	// Unacknowledged bytes the receiver already holds count in both.
	if inq := server.Metrics["queued_at_release_bytes"]; m["send_queue_bytes"]+inq < m["accepted_bytes"] || inq > m["accepted_bytes"] || m["unsent_bytes"] > m["send_queue_bytes"] {
		t.Errorf("send queue %v (%v unsent) and receive queue %v do not account for %v accepted", m["send_queue_bytes"], m["unsent_bytes"], inq, m["accepted_bytes"])
	}
	if m["first_eagain_bytes"] <= 0 || m["first_eagain_bytes"] > m["accepted_bytes"] {
		t.Errorf("first EAGAIN after %v bytes, %v accepted in all", m["first_eagain_bytes"], m["accepted_bytes"])
	}
	// The kernel doubles the 4 KiB asked for.
	if got := evidence(t, client, "sndbuf"); got != 8192 {
		t.Errorf("SO_SNDBUF reads %v, want 8192", got)
	}
}

func TestBlockingSendWaitsForTheReader(t *testing.T) {
	privtest.Root(t)
	server, client, serr, cerr := runLoopback(t, context.Background(), blocking, map[string]string{"bytes": "128KiB"})
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if server.Metrics["bytes_read"] != 128<<10 || client.Metrics["sent_bytes"] != 128<<10 {
		t.Errorf("sent %v, read %v, want 128 KiB", client.Metrics["sent_bytes"], server.Metrics["bytes_read"])
	}
	// Causality, not speed: a send was asleep when the reader began to
	// read, and returned after.
	step := &experimentv1.StepResult{Step: &experimentv1.Step{Variant: blocking}, Reports: []*experimentv1.RoleReport{server, client}}
	if rel := releases([]*experimentv1.StepResult{step}); len(rel) != 1 || rel[0].wake < 0 || rel[0].blocked < rel[0].wake {
		t.Errorf("no send was asleep when the reader began (released at %v): %v", evidence(t, server, "released_at"), client.Evidence)
	}
	if b := client.Metrics["bytes_before_block"]; b <= 0 || b >= 128<<10 {
		t.Errorf("%v bytes before the first send that slept", b)
	}
}

func TestCancelWhileBlocked(t *testing.T) {
	privtest.Root(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, serr, cerr := runLoopback(t, ctx, blocking, map[string]string{"stall": "5s"})
	if !errors.Is(serr, context.DeadlineExceeded) || !errors.Is(cerr, context.DeadlineExceeded) {
		t.Errorf("server: %v, client: %v; want both cancelled", serr, cerr)
	}
}

func TestSteps(t *testing.T) {
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"repeats": "2", "variants": "nonblocking,blocking,nonblocking"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, labtest.Example(t, "quickstart", map[string]string{"client": "n1", "server": "n2"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Variant+":"+s.Params["variants"])
	}
	want := []string{"nonblocking:nonblocking", "blocking:blocking", "nonblocking:nonblocking", "blocking:blocking"}
	if !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

// fakeStep is one hand-made repeat.
func fakeStep(variant string, client, server map[string]float64, clientEv, serverEv map[string]float64) *experimentv1.StepResult {
	c := &experimentv1.RoleReport{Role: "client", Metrics: client}
	s := &experimentv1.RoleReport{Role: "server", Metrics: server}
	for _, k := range slices.Sorted(maps.Keys(clientEv)) {
		report.AddEvidence(c, k, clientEv[k], "", "", "")
	}
	for _, k := range slices.Sorted(maps.Keys(serverEv)) {
		report.AddEvidence(s, k, serverEv[k], "", "", "")
	}
	return &experimentv1.StepResult{Step: &experimentv1.Step{Variant: variant}, Reports: []*experimentv1.RoleReport{s, c}}
}

func TestJudge(t *testing.T) {
	nb := func(errno unix.Errno) *experimentv1.StepResult {
		return fakeStep(nonBlocking, map[string]float64{"first_eagain_bytes": 9000, "accepted_bytes": 30000, "sndbuf_bytes": 8192, "send_queue_bytes": 10000},
			map[string]float64{"queued_at_release_bytes": 20000, "rcvbuf_bytes": 8192}, map[string]float64{"send_errno": float64(errno)}, nil)
	}
	// bl is a blocking repeat that first slept at 0.8 s after 30000 bytes,
	// and again from 10 ms before the release (at 1 s) to wake after it,
	// 2000 bytes later; a negative wake ends that sleep before the release.
	bl := func(wake float64) *experimentv1.StepResult {
		s := fakeStep(blocking, map[string]float64{"bytes_before_block": 30000, "sleeps": 2, "sent_bytes": 1 << 20}, map[string]float64{},
			nil, map[string]float64{"released_at": 1e9})
		for _, sleep := range [][3]float64{{0.8e9, 0.9e9, 30000}, {1e9 - 10e6, 1e9 + wake, 32000}} {
			report.AddEvidence(s.Reports[1], "sleep_began", sleep[0], "ns", "", "")
			report.AddEvidence(s.Reports[1], "sleep_ended", sleep[1], "ns", "", "")
			report.AddEvidence(s.Reports[1], "sleep_after", sleep[2], "bytes", "", "")
		}
		return s
	}
	for _, tt := range []struct {
		name    string
		steps   []*experimentv1.StepResult
		outcome experimentv1.Outcome
		says    []string
	}{
		{"holds", []*experimentv1.StepResult{nb(unix.EAGAIN), bl(40e3), nb(unix.EAGAIN), bl(60e3)},
			experimentv1.Outcome_OUTCOME_HOLDS, []string{"EAGAIN in every repeat, first after 9000 bytes", "first slept after 30000 bytes and was held for 200.05ms from then",
				"only 2000 bytes more", "returned 50µs after it"}},
		{"no EAGAIN", []*experimentv1.StepResult{nb(0), bl(40e3)},
			experimentv1.Outcome_OUTCOME_CONDITIONAL, []string{"did not fail with EAGAIN"}},
		{"returned before the reader read", []*experimentv1.StepResult{bl(40e3), bl(-5e6)},
			experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, []string{"did not wait for the reader"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var e Experiment
			p, _ := experiments.Validate(e.Spec(), nil)
			_, v := e.Judge(p, tt.steps)
			if v.Claim != "C17" || v.Outcome != tt.outcome {
				t.Errorf("verdict %s %v, want %v: %s", v.Claim, v.Outcome, tt.outcome, v.Explanation)
			}
			for _, s := range tt.says {
				if !strings.Contains(v.Explanation, s) {
					t.Errorf("explanation lacks %q: %s", s, v.Explanation)
				}
			}
		})
	}
}
