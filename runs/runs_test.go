package runs

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/internal/fault"
	agentv1 "github.com/labctl/labctl/proto/labctl/agent/v1"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/services/agent"
	"github.com/labctl/labctl/topologies"
)

// fakeAgents serves one in-process agent per node over bufconn. The roles
// run in this process, on loopback addresses of the test plan.
type fakeAgents map[string]*fakeAgent

type fakeAgent struct {
	cc  *grpc.ClientConn
	srv *grpc.Server
}

func (f fakeAgents) Agent(node string) (agentv1.AgentServiceClient, error) {
	a, ok := f[node]
	if !ok {
		return nil, errors.New("no such agent")
	}
	return agentv1.NewAgentServiceClient(a.cc), nil
}

func startAgents(t *testing.T, nodes ...string) fakeAgents {
	t.Helper()
	return startAgentsWith(t, all.Registry(), nodes...)
}

func startAgentsWith(t *testing.T, reg *experiments.Registry, nodes ...string) fakeAgents {
	t.Helper()
	f := fakeAgents{}
	for _, n := range nodes {
		lis := bufconn.Listen(1 << 20)
		srv := agent.NewGRPCServer(&agent.Server{Lab: "t", Node: n, Version: "test", Registry: reg, SettingsDir: t.TempDir()})
		go func() { _ = srv.Serve(lis) }()
		cc, err := grpc.NewClient("passthrough:///"+n, append(agent.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close(); srv.Stop() })
		f[n] = &fakeAgent{cc: cc, srv: srv}
	}
	return f
}

// loopbackPlan is a two-node plan whose addresses are on loopback, so that
// in-process roles can reach each other without namespaces.
func loopbackPlan() *topologies.Plan {
	pfx := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	return &topologies.Plan{Lab: "t", Nodes: []topologies.Node{{Name: "n1", Agent: true}, {Name: "n2", Agent: true}},
		Links: []topologies.Link{{ID: "veth:n1:e0=n2:e0", Kind: topologies.KindVeth, Ends: []topologies.Iface{
			{Node: "n1", Namespace: "labctl-t-n1", Name: "e0", Addresses: pfx("127.0.0.1/8")},
			{Node: "n2", Namespace: "labctl-t-n2", Name: "e0", Addresses: pfx("127.0.0.2/8")},
		}}}}
}

func newRunner(t *testing.T) *Runner {
	return &Runner{Registry: all.Registry(), Store: &Store{Dir: t.TempDir()}, Version: "test"}
}

func TestRunRRStoresResult(t *testing.T) {
	r := newRunner(t)
	var events []Event
	res, err := r.Run(context.Background(), Request{
		Plan: loopbackPlan(), Agents: startAgents(t, "n1", "n2"), Experiment: "rr",
		Params: map[string]string{"count": "500", "warmup": "10ms", "repeats": "2"},
	}, func(ev Event) { events = append(events, ev) })
	if err != nil {
		t.Fatal(err)
	}
	if res.GetState() != experimentv1.RunState_RUN_STATE_COMPLETED || len(res.GetSteps()) != 2 {
		t.Fatalf("state %v with %d steps", res.GetState(), len(res.GetSteps()))
	}
	if res.GetNodes()["client"] != "n1" || res.GetNodes()["server"] != "n2" {
		t.Errorf("default placement: %v, want client n1, server n2", res.GetNodes())
	}
	for _, s := range res.GetSteps() {
		if len(s.GetReports()) != 2 || s.GetReports()[0].GetRole() != "server" || s.GetReports()[1].GetRole() != "client" {
			t.Fatalf("step reports: %v", s.GetReports())
		}
	}
	if res.GetVerdict().GetOutcome() != experimentv1.Outcome_OUTCOME_MEASURED {
		t.Errorf("verdict %v", res.GetVerdict())
	}
	if last := events[len(events)-1]; last.Result.GetId() != res.GetId() {
		t.Errorf("the last event is not the result: %v", last)
	}
	stored, err := r.Store.Get(res.GetId()[:len(res.GetId())-2])
	if err != nil {
		t.Fatal(err)
	}
	if got := stored.GetSummary()[0].GetMetrics()["client.rtt_p50_ns"].GetN(); got != 2 {
		t.Errorf("stored summary has %d repeats of p50", got)
	}
	list, err := r.Store.List("t", "rr", 0)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
}

func TestRunErrors(t *testing.T) {
	agents := startAgents(t, "n1", "n2")
	tests := []struct {
		name   string
		req    Request
		kind   fault.Kind
		fields []string
	}{
		{"unknown experiment", Request{Experiment: "nope"}, fault.NotFound, nil},
		{"out of bounds", Request{Experiment: "rr", Params: map[string]string{"size": "2MiB", "repeats": "0"}}, fault.Invalid, []string{"size", "repeats"}},
		{"unknown parameter", Request{Experiment: "rr", Params: map[string]string{"sise": "64"}}, fault.Invalid, []string{"sise"}},
		{"unknown node", Request{Experiment: "rr", Nodes: map[string]string{"server": "n9"}}, fault.Invalid, nil},
		{"unknown role", Request{Experiment: "rr", Nodes: map[string]string{"sender": "n1"}}, fault.Invalid, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Plan, tt.req.Agents = loopbackPlan(), agents
			_, err := newRunner(t).Run(context.Background(), tt.req, func(Event) {})
			if k := fault.KindOf(err); k != tt.kind {
				t.Fatalf("kind %v (%v), want %v", k, err, tt.kind)
			}
			var fields []string
			var pe experiments.ParamErrors
			if errors.As(err, &pe) {
				for _, e := range pe {
					fields = append(fields, e.Param)
				}
			}
			if len(tt.fields) > 0 && !equal(fields, tt.fields) {
				t.Errorf("field violations %v, want %v", fields, tt.fields)
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeadAgentIsUnavailable(t *testing.T) {
	agents := startAgents(t, "n1", "n2")
	agents["n2"].srv.Stop() // the server's agent died
	r := newRunner(t)
	res, err := r.Run(context.Background(), Request{Plan: loopbackPlan(), Agents: agents, Experiment: "rr",
		Params: map[string]string{"count": "10"}}, func(Event) {})
	if !fault.Is(err, fault.Unavailable) {
		t.Fatalf("got %v, want Unavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "node n2") {
		t.Errorf("error does not name the node: %q", msg)
	}
	if res.GetState() != experimentv1.RunState_RUN_STATE_FAILED {
		t.Errorf("stored state %v", res.GetState())
	}
}

func TestCancelStopsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := newRunner(t)
	go func() {
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	res, err := r.Run(ctx, Request{Plan: loopbackPlan(), Agents: startAgents(t, "n1", "n2"), Experiment: "rr",
		Params: map[string]string{"duration": "1m", "warmup": "0s"}}, func(Event) {})
	if !fault.Is(err, fault.Cancelled) {
		t.Fatalf("got %v, want Canceled", err)
	}
	stored, err := r.Store.Get(res.GetId())
	if err != nil || stored.GetState() != experimentv1.RunState_RUN_STATE_CANCELLED {
		t.Errorf("stored: %v %v", stored.GetState(), err)
	}
}

// TestCancelWaitsForRoles: Cancel stops the roles of a run through their
// agents; Run reports each role as it stops and restores, then returns the
// run as cancelled. Only the run's owner may cancel it.
func TestCancelWaitsForRoles(t *testing.T) {
	r := newRunner(t)
	var mu sync.Mutex
	var progress []*Progress
	ids := make(chan string, 1)
	measuring := make(chan struct{}, 1)
	done := make(chan error, 1)
	var res *experimentv1.Result
	go func() {
		var err error
		res, err = r.Run(context.Background(), Request{
			Plan: loopbackPlan(), Agents: startAgents(t, "n1", "n2"), Experiment: "rr", Owner: "alice",
			Params:  map[string]string{"duration": "5m", "warmup": "0s", "repeats": "1"},
			Started: func(id string) { ids <- id },
		}, func(ev Event) {
			if p := ev.Progress; p != nil {
				mu.Lock()
				progress = append(progress, p)
				mu.Unlock()
				if strings.Contains(p.Message, "measuring") {
					select {
					case measuring <- struct{}{}:
					default:
					}
				}
			}
		})
		done <- err
	}()
	id := <-ids
	select {
	case <-measuring:
	case <-time.After(20 * time.Second):
		t.Fatal("the run never started measuring")
	}
	if _, err := r.Cancel(id, "mallory"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("a cancel by another caller: %v", err)
	}
	stopping, err := r.Cancel(id, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(stopping, ",") != "n1 client,n2 server" {
		t.Errorf("stopping %q", stopping)
	}
	select {
	case err := <-done:
		if !fault.Is(err, fault.Cancelled) {
			t.Errorf("run ended with %v, want Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the cancelled run did not end")
	}
	if res.GetState() != experimentv1.RunState_RUN_STATE_CANCELLED {
		t.Errorf("stored as %v", res.GetState())
	}
	mu.Lock()
	defer mu.Unlock()
	var said []string
	for _, p := range progress {
		said = append(said, p.Message)
	}
	text := strings.Join(said, "\n")
	for _, want := range []string{"cancelling: waiting for n2 server, n1 client", "n1 client stopped and restored", "n2 server stopped and restored"} {
		if !strings.Contains(text, want) {
			t.Errorf("progress lacks %q:\n%s", want, text)
		}
	}
	if last := progress[len(progress)-1]; len(last.Restoring) != 0 {
		t.Errorf("still restoring at the end: %v", last.Restoring)
	}
	if _, err := r.Cancel(id, ""); !errors.Is(err, ErrNoRun) {
		t.Errorf("cancel of an ended run: %v", err)
	}
}
