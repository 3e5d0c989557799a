package iomodels

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// runLoopback runs both roles of one step of variant v over 127.0.0.1 in
// the test's own namespace, as the agent does.
func runLoopback(t *testing.T, ctx context.Context, v variant, params map[string]string) (server, client *experimentv1.RoleReport, serverErr, clientErr error) {
	t.Helper()
	var e Experiment
	p, err := experiments.Validate(e.Spec(), params)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = p.With(v.Params()); err != nil {
		t.Fatal(err)
	}
	step := &experimentv1.Step{Variant: v.Name(), Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n", Address: "127.0.0.1"}, {Role: "client", Node: "n"}}}
	reports, errs := labtest.Roles(t, ctx, e, step, p, labtest.RoleOptions{})
	return reports["server"], reports["client"], errs["server"], errs["client"]
}

// short measures a count of round trips, not a duration, so that a loaded
// machine makes a step slower but never thinner.
var short = map[string]string{"count": "50", "warmup": "10ms"}

// Every model serves both protocols on loopback, measures the same
// messages as the client, and counts the system calls its loop makes.
func TestModelsOnLoopback(t *testing.T) {
	privtest.Root(t) // perf counters on raw_syscalls need CAP_PERFMON
	// The range of syscalls per message each model's loop makes: a wait,
	// a recv and a send, and for edge triggering a recv that drains the
	// socket (it may find the next request instead, saving the wait).
	// Spin makes one recv per empty poll, without bound.
	calls := map[model][2]float64{blocking: {2, 2.1}, spin: {2, 1e9}, selectModel: {3, 3.1}, poll: {3, 3.1}, epollLT: {3, 3.1},
		epollET: {2, 4.1}, uringModel: {1, 1.1}, uringSQPoll: {1, 1.1}}
	for _, proto := range []string{protoTCP, protoUDP} {
		for _, m := range models {
			v := variant{Model: m, Proto: proto}
			t.Run(v.Name(), func(t *testing.T) {
				server, client, serr, cerr := runLoopback(t, context.Background(), v, short)
				if serr != nil || cerr != nil {
					t.Fatalf("server: %v, client: %v", serr, cerr)
				}
				if ok, _ := report.EvidenceValue(server, "supported"); ok == 0 {
					t.Skipf("unsupported here: %v", server.Notes)
				}
				if n := client.Metrics["messages"]; n != 50 || server.Metrics["messages"] != n {
					t.Errorf("client measured %v messages, server %v", n, server.Metrics["messages"])
				}
				for _, k := range []string{"cpu_ns_per_msg", "vcsw_per_msg", "ivcsw_per_msg", "process_syscalls_per_msg"} {
					if _, ok := server.Metrics[k]; !ok {
						t.Errorf("server report lacks %s: %v", k, server.Metrics)
					}
				}
				got := server.Metrics["syscalls_per_msg"]
				t.Logf("rtt p50 %.1f µs, server: %.2f syscalls (process %.2f), %.2f vcsw, %.0f ns CPU per message",
					client.Metrics["rtt_p50_ns"]/1e3, got, server.Metrics["process_syscalls_per_msg"], server.Metrics["vcsw_per_msg"], server.Metrics["cpu_ns_per_msg"])
				if want, counted := calls[m]; counted && (got < want[0] || got > want[1]) {
					t.Errorf("%.2f syscalls per message, want %v to %v", got, want[0], want[1])
				}
				// The process makes at least the loop's own calls.
				if proc := server.Metrics["process_syscalls_per_msg"]; proc < got {
					t.Errorf("process made %.2f syscalls per message, fewer than the loop's own %.2f", proc, got)
				}
				if client.Metrics["rtt_p50_ns"] <= 0 {
					t.Errorf("no RTT: %v", client.Metrics)
				}
			})
		}
	}
}

// With idle connections the multiplexing models watch them all and report
// the bare cost of a readiness check; select declines descriptors beyond
// FD_SETSIZE, and the client reports the decline instead of failing.
func TestIdleConnections(t *testing.T) {
	privtest.Root(t)
	for _, tt := range []struct {
		v         variant
		supported bool
	}{
		{variant{Model: selectModel, Proto: protoTCP, Idle: 100}, true},
		{variant{Model: poll, Proto: protoTCP, Idle: 100}, true},
		{variant{Model: epollLT, Proto: protoTCP, Idle: 100}, true},
		{variant{Model: epollET, Proto: protoTCP, Idle: 100}, true},
		{variant{Model: selectModel, Proto: protoTCP, Idle: 1100}, false},
	} {
		t.Run(tt.v.Name(), func(t *testing.T) {
			server, client, serr, cerr := runLoopback(t, context.Background(), tt.v, short)
			if serr != nil || cerr != nil {
				t.Fatalf("server: %v, client: %v", serr, cerr)
			}
			if n, _ := report.EvidenceValue(server, "watched_descriptors"); n != float64(tt.v.Idle+1) {
				t.Errorf("server watched %v descriptors, want %d", n, tt.v.Idle+1)
			}
			ok, _ := report.EvidenceValue(server, "supported")
			if !tt.supported {
				if ok != 0 || client.Metrics["declined"] != 1 || len(server.Notes) == 0 || !strings.Contains(server.Notes[0], "FD_SETSIZE") {
					t.Errorf("select over %d descriptors: supported %v, client %v, notes %v", tt.v.Idle+1, ok, client.Metrics, server.Notes)
				}
				if _, measured := client.Metrics["rtt_p50_ns"]; measured {
					t.Error("the client reports an RTT for a declined variant")
				}
				return
			}
			if ok != 1 || server.Metrics["wait_ns_per_call"] <= 0 || server.Metrics["messages"] != client.Metrics["messages"] {
				t.Errorf("supported %v, wait_ns_per_call %v, messages %v/%v", ok, server.Metrics["wait_ns_per_call"],
					server.Metrics["messages"], client.Metrics["messages"])
			}
		})
	}
}

// A cancelled run stops both roles, whatever the server is blocked in.
func TestCancelStopsEveryModel(t *testing.T) {
	privtest.Root(t)
	variants := []variant{{Model: blocking, Proto: protoUDP}, {Model: uringModel, Proto: protoUDP}, {Model: netConn, Proto: protoUDP},
		{Model: poll, Proto: protoTCP, Idle: 10}}
	for _, m := range models {
		variants = append(variants, variant{Model: m, Proto: protoTCP})
	}
	for _, v := range variants {
		t.Run(v.Name(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, _, serr, cerr := runLoopback(t, ctx, v, map[string]string{"duration": "1m", "warmup": "0s"})
			if cerr == nil || serr == nil {
				t.Fatalf("a 1m run cancelled after 300ms: server %v, client %v", serr, cerr)
			}
			// Both report the cancel, not a failure of their own.
			if !errors.Is(serr, context.DeadlineExceeded) || !errors.Is(cerr, context.DeadlineExceeded) {
				t.Errorf("server: %v, client: %v; want the context's error", serr, cerr)
			}
		})
	}
}
