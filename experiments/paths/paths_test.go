package paths

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func loadLab(t *testing.T, example string, roles map[string]string) experiments.Lab {
	t.Helper()
	return labtest.Example(t, example, roles)
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		example, client string
		kinds           []string
		want            []target
		missing         []string
	}{
		{"paths", "n1", allKinds, []target{
			{kindLoopback, "n1", netip.MustParseAddr("127.0.0.1"), "lo"},
			{kindOwnIP, "n1", netip.MustParseAddr("198.18.0.1"), "lo"},
			{kindVeth, "n2", netip.MustParseAddr("198.18.0.2"), "veth0"},
			{kindBridge, "n3", netip.MustParseAddr("198.18.0.6"), "br0"},
			{kindMacvlan, "n4", netip.MustParseAddr("198.19.255.4"), "nic0"},
		}, []string{kindNIC}},
		// From n4 the moved NIC is the client's own device and the macvlan
		// sits on the far side: still the macvlan path.
		{"paths", "n4", allKinds, []target{
			{kindLoopback, "n4", netip.MustParseAddr("127.0.0.1"), "lo"},
			{kindOwnIP, "n4", netip.MustParseAddr("198.19.255.4"), "lo"},
			{kindMacvlan, "n1", netip.MustParseAddr("198.19.255.1"), "mv0"},
		}, []string{kindVeth, kindBridge, kindNIC}},
		{"quickstart", "n1", []string{kindOwnIP, kindVeth, kindBridge}, []target{
			{kindOwnIP, "n1", netip.MustParseAddr("198.18.0.1"), "lo"},
			{kindVeth, "n2", netip.MustParseAddr("198.18.0.2"), "eth0"},
		}, []string{kindBridge}},
	} {
		t.Run(tc.example+"/"+tc.client, func(t *testing.T) {
			got, missing := targets(loadLab(t, tc.example, nil), tc.client, tc.kinds)
			if len(got) != len(tc.want) {
				t.Fatalf("targets %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("target %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if strings.Join(missing, ",") != strings.Join(tc.missing, ",") {
				t.Errorf("missing %v, want %v", missing, tc.missing)
			}
		})
	}
}

func TestSteps(t *testing.T) {
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"repeats": "2", "paths": "own-ip,veth,bridge"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, loadLab(t, "paths", map[string]string{"client": "n1", "server": "n2", "sink": "n3"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		r := s.GetRoles()
		got = append(got, fmt.Sprintf("%s@%s=%s,%s=%s,%s", s.GetVariant(), r[0].GetNode(), r[0].GetAddress(), r[1].GetNode(), r[1].GetAddress(), r[2].GetNode()))
		if r[0].GetRole() != "server" || r[1].GetRole() != "sink" || r[2].GetRole() != "client" || r[2].GetAddress() != "" {
			t.Errorf("step %s: roles %v", s.GetVariant(), r)
		}
	}
	one := "own-ip@n1=198.18.0.1,n1=198.18.0.1,n1 veth@n2=198.18.0.2,n2=198.18.0.2,n1 bridge@n3=198.18.0.6,n3=198.18.0.6,n1"
	if want := one + " " + one; strings.Join(got, " ") != want {
		t.Errorf("steps:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}

	p, _ = experiments.Validate(e.Spec(), map[string]string{"paths": "nic"})
	if _, err := e.Steps(p, loadLab(t, "paths", map[string]string{"client": "n1"})); err == nil {
		t.Error("Steps accepted a run with no path of the kinds asked for")
	}
}

// report builds a role report with link evidence.
func roleReport(role, node string, metrics map[string]float64, links map[string]float64) *experimentv1.RoleReport {
	r := &experimentv1.RoleReport{Role: role, Node: node, Metrics: metrics}
	for _, name := range slices.Sorted(maps.Keys(links)) {
		report.AddEvidence(r, linkEvidencePrefix+name, links[name], "packets", "", "")
	}
	return r
}

// run makes the steps of a hand-made run: per repeat, loopback, own-ip
// and a veth path.
func run(rtt func(kind string, rep int) float64, ownLinks map[string]float64, repeats int) []*experimentv1.StepResult {
	var steps []*experimentv1.StepResult
	for rep := range repeats {
		for _, kind := range []string{kindLoopback, kindOwnIP, kindVeth} {
			links := map[string]float64{"lo": 4000, "veth0": 0}
			serverLinks := links
			switch kind {
			case kindOwnIP:
				links, serverLinks = ownLinks, ownLinks
			case kindVeth:
				links = map[string]float64{"lo": 0, "veth0": 2000}
				serverLinks = map[string]float64{"lo": 0, "eth0": 2000}
			}
			steps = append(steps, &experimentv1.StepResult{Step: &experimentv1.Step{Variant: kind, Repeat: int32(rep)}, Reports: []*experimentv1.RoleReport{
				roleReport("server", "n2", map[string]float64{}, serverLinks),
				roleReport("sink", "n2", map[string]float64{"throughput_bps": 20e9 + float64(rep)*1e8}, serverLinks),
				roleReport("client", "n1", map[string]float64{"rtt_p50_ns": rtt(kind, rep)}, links),
			}})
		}
	}
	return steps
}

func TestJudge(t *testing.T) {
	onLo := map[string]float64{"lo": 4000, "veth0": 2}
	same := func(kind string, rep int) float64 {
		if kind == kindVeth {
			return 30e3
		}
		return 10e3 + float64(rep)*100
	}
	slowerOwn := func(kind string, rep int) float64 {
		if kind == kindOwnIP {
			return 20e3 + float64(rep)*100
		}
		return same(kind, rep)
	}
	wide := func(kind string, rep int) float64 {
		lo := []float64{10e3, 14e3, 8e3, 12e3, 16e3}[rep%5]
		switch kind {
		case kindOwnIP:
			return 1.5 * lo * []float64{1, 0.8, 1.3, 1.1, 0.9}[rep%5]
		case kindVeth:
			return 30e3
		}
		return lo
	}
	for _, tc := range []struct {
		name    string
		steps   []*experimentv1.StepResult
		outcome experimentv1.Outcome
		own     experimentv1.Engagement
		explain string
	}{
		{"same speed, both on lo", run(same, onLo, 5), experimentv1.Outcome_OUTCOME_HOLDS, experimentv1.Engagement_ENGAGEMENT_ENGAGED, "no difference larger than 5%"},
		// Medians 50% apart with wide ranges that overlap (a busy
		// machine): no evidence of the same speed.
		{"50% apart, wide and overlapping", run(wide, onLo, 5), experimentv1.Outcome_OUTCOME_UNDECIDED, experimentv1.Engagement_ENGAGEMENT_ENGAGED, "undecided for RTT p50"},
		{"own IP over the veth", run(same, map[string]float64{"lo": 10, "veth0": 4000}, 5), experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "not carried by lo"},
		{"own IP slower beyond the spread", run(slowerOwn, onLo, 5), experimentv1.Outcome_OUTCOME_CONDITIONAL, experimentv1.Engagement_ENGAGEMENT_ENGAGED, "not at the same speed"},
		// Two repeats can decide nothing: not "the same speed".
		{"too few repeats to decide", run(slowerOwn, onLo, 2), experimentv1.Outcome_OUTCOME_UNDECIDED, experimentv1.Engagement_ENGAGEMENT_ENGAGED, "too few"},
		{"no own-ip path", dropKind(run(same, onLo, 5), kindOwnIP), experimentv1.Outcome_OUTCOME_INCONCLUSIVE, experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, "did not measure both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Experiment
			p, _ := experiments.Validate(e.Spec(), nil)
			rows, v := e.Judge(p, tc.steps)
			if v.GetOutcome() != tc.outcome || !strings.Contains(v.GetExplanation(), tc.explain) {
				t.Errorf("verdict %v %q; want %v mentioning %q", v.GetOutcome(), v.GetExplanation(), tc.outcome, tc.explain)
			}
			if v.GetClaim() != "C12" {
				t.Errorf("claim %q", v.GetClaim())
			}
			if row := report.Row(rows, kindOwnIP); row.GetEngagement() != tc.own {
				t.Errorf("own-ip row engagement %v, want %v (note %q)", row.GetEngagement(), tc.own, row.GetNote())
			}
			if row := report.Row(rows, kindVeth); row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
				t.Errorf("veth row: %v %q", row.GetEngagement(), row.GetNote())
			}
		})
	}
}

func dropKind(steps []*experimentv1.StepResult, kind string) []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	for _, s := range steps {
		if s.GetStep().GetVariant() != kind {
			out = append(out, s)
		}
	}
	return out
}

func TestCarrierOf(t *testing.T) {
	c, ok := carrierOf(roleReport("client", "n1", nil, map[string]float64{"lo": 10, "veth0": 990, "br0": 0}))
	if !ok || c.Iface != "veth0" || c.Share != 0.99 {
		t.Errorf("carrier %+v %v", c, ok)
	}
	if _, ok := carrierOf(roleReport("client", "n1", nil, map[string]float64{"lo": 0})); ok {
		t.Error("a node that counted nothing has a carrier")
	}
	// Ties go to the first name.
	if c, _ := carrierOf(roleReport("client", "n1", nil, map[string]float64{"b": 5, "a": 5})); c.Iface != "a" {
		t.Errorf("tie went to %s", c.Iface)
	}
}

// newNetns makes a network namespace for the test with lo up and a veth
// pair whose first end has addr.
func newNetns(t *testing.T, addr netip.Prefix) netns.NsHandle {
	t.Helper()
	ns := labtest.Netns(t)
	labtest.VethPair(t, labtest.End{NS: ns, Name: "veth0", Addr: addr}, labtest.End{NS: ns, Name: "veth1"})
	return ns
}

// runStep runs the roles of one step in ns, as the agent does.
func runStep(t *testing.T, ctx context.Context, ns netns.NsHandle, step *experimentv1.Step, p experiments.Params) (map[string]*experimentv1.RoleReport, map[string]error) {
	t.Helper()
	return labtest.Roles(t, ctx, Experiment{}, step, p, labtest.RoleOptions{NS: func(string) netns.NsHandle { return ns }})
}

func loopbackStep(kind, addr string, p experiments.Params) *experimentv1.Step {
	return &experimentv1.Step{Variant: kind, Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n1", Address: addr}, {Role: "sink", Node: "n1", Address: addr}, {Role: "client", Node: "n1"}}}
}

// TestLoopbackPathsInANamespace runs the loopback and own-ip steps in a
// namespace of the test's own: the packets must show on lo and not on the
// veth that holds the own address.
func TestLoopbackPathsInANamespace(t *testing.T) {
	own := netip.MustParsePrefix("198.18.77.1/30")
	ns := newNetns(t, own)
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"duration": "100ms", "warmup": "10ms", "bulk_duration": "100ms"})
	if err != nil {
		t.Fatal(err)
	}
	for kind, addr := range map[string]string{kindLoopback: "127.0.0.1", kindOwnIP: own.Addr().String()} {
		t.Run(kind, func(t *testing.T) {
			reports, errs := runStep(t, context.Background(), ns, loopbackStep(kind, addr, p), p)
			for role, err := range errs {
				if err != nil {
					t.Fatalf("%s: %v", role, err)
				}
			}
			client := reports["client"]
			for _, m := range []string{"rtt_p50_ns", "msgs_per_s", "tx_bps", "sent_bytes"} {
				if client.GetMetrics()[m] <= 0 {
					t.Errorf("client.%s = %v", m, client.GetMetrics()[m])
				}
			}
			if got := reports["sink"].GetMetrics()["throughput_bps"]; got <= 0 {
				t.Errorf("sink.throughput_bps = %v", got)
			}
			if reports["sink"].GetMetrics()["received_bytes"] != client.GetMetrics()["sent_bytes"] {
				t.Errorf("sink read %v bytes, client wrote %v", reports["sink"].GetMetrics()["received_bytes"], client.GetMetrics()["sent_bytes"])
			}
			for role, rep := range reports {
				c, ok := carrierOf(rep)
				t.Logf("%s: %s", role, c)
				if !ok || c.Iface != "lo" || c.Share < minLoShare || c.Packets["lo"] < 100 {
					t.Errorf("%s: carrier %s, want lo", role, c)
				}
			}
			if notes := client.GetNotes(); len(notes) == 0 || !strings.Contains(notes[len(notes)-1], "dev lo") {
				t.Errorf("client notes %q: want the route through lo", notes)
			}
		})
	}
}

func TestCancelStopsTheRoles(t *testing.T) {
	ns := newNetns(t, netip.MustParsePrefix("198.18.77.5/30"))
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), map[string]string{"duration": "100ms", "warmup": "0s", "bulk_duration": "1m"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	_, errs := runStep(t, ctx, ns, loopbackStep(kindLoopback, "127.0.0.1", p), p)
	// The rr phase is over by the cancel; the stream is not.
	for _, role := range []string{"sink", "client"} {
		if errs[role] == nil {
			t.Errorf("%s finished a 1m stream after the cancel", role)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the roles took %v to stop", d)
	}
}
