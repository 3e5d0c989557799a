package captureorder

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
)

// testdata/labctl.json is `nft -j list table inet labctl` of a node after
// three datagrams to 9000, one to 9002 and one sendto 9001 (refused by
// rule 7, which has no counter).
func TestFindRule(t *testing.T) {
	data, err := os.ReadFile("testdata/labctl.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		chain   string
		port    int
		handle  int
		packets uint64
		err     string
	}{
		// Rule 0 is narrowed by a source address and passed over; rule 1
		// decides, rule 2 is never reached.
		{"input", 9000, 5, 3, ""},
		{"input", 9002, 8, 1, ""},            // a set
		{"input", 9150, 9, 0, ""},            // a range
		{"input", 9300, 0, 0, "with accept"}, // an accept decides first
		{"input", 9500, 11, 0, ""},           // meta l4proto udp: every port
		{"output", 9001, 0, 0, "no counter"},
		{"output", 9999, 0, 0, "has no rule"},
		{"forward", 9000, 0, 0, "has no rule"},
	} {
		r, err := findRule(data, "labctl", tc.chain, tc.port)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %d: %+v, %v; want an error with %q", tc.chain, tc.port, r, err, tc.err)
			}
			continue
		}
		if err != nil || r.Handle != tc.handle || r.Packets != tc.packets {
			t.Errorf("%s %d: %+v, %v; want handle %d with %d packets", tc.chain, tc.port, r, err, tc.handle, tc.packets)
		}
	}
	if _, err := findRule(data, "other", "input", 9000); err == nil {
		t.Error("found a rule in a table the listing does not hold")
	}
	if _, err := findRule([]byte("{"), "labctl", "input", 9000); err == nil {
		t.Error("no error for broken JSON")
	}
}

func TestTopologyRule(t *testing.T) {
	plan := labtest.Example(t, "capture-order", nil).Plan
	rx, _ := plan.Node("rx")
	tx, _ := plan.Node("tx")
	for _, tc := range []struct {
		node  *topologies.Node
		chain string
		port  int
		want  bool
	}{
		{rx, "input", 9000, true},
		{rx, "input", 9001, false},
		{rx, "output", 9000, false},
		{tx, "output", 9001, true},
		{tx, "input", 9001, false},
	} {
		if _, got := topologyRule(tc.node, tc.chain, tc.port); got != tc.want {
			t.Errorf("node %s chain %s port %d: %v, want %v", tc.node.Name, tc.chain, tc.port, got, tc.want)
		}
	}
	accept := &topologies.Node{Firewall: []topologies.Rule{
		{Chain: "input", Proto: "udp", Dport: topologies.PortRange{Lo: 9000, Hi: 9010}, Action: "accept"},
		{Chain: "input", Proto: "udp", Dport: topologies.PortRange{Lo: 9000, Hi: 9000}, Action: "drop"},
	}}
	if _, ok := topologyRule(accept, "input", 9000); ok {
		t.Error("an earlier accept of the port was ignored")
	}
}

// frame builds an Ethernet frame with an IPv4 UDP datagram.
func frame(ethertype uint16, proto byte, fragOff uint16, dport uint16, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], ethertype)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[6:], fragOff)
	ip[9] = proto
	binary.BigEndian.PutUint16(ip[20+2:], dport)
	copy(ip[28:], payload)
	return b
}

func TestMatchFrame(t *testing.T) {
	tag := stepTag("run", variantInput, 0)
	payload := append(append([]byte{}, tag...), 1, 2, 3)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"the step's datagram", frame(0x0800, 17, 0, 9000, payload), true},
		{"another port", frame(0x0800, 17, 0, 9001, payload), false},
		{"another step's tag", frame(0x0800, 17, 0, 9000, stepTag("run", variantInput, 1)), false},
		{"TCP", frame(0x0800, 6, 0, 9000, payload), false},
		{"IPv6 ethertype", frame(0x86dd, 17, 0, 9000, payload), false},
		{"a later fragment", frame(0x0800, 17, 185, 9000, payload), false},
		{"short payload", frame(0x0800, 17, 0, 9000, tag[:8]), false},
		{"truncated", frame(0x0800, 17, 0, 9000, payload)[:30], false},
	} {
		if got := matchFrame(tc.frame, 9000, tag); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTag(t *testing.T) {
	a, b := stepTag("r1", variantInput, 0), stepTag("r1", variantInput, 0)
	if !bytes.Equal(a, b) || len(a) != tagLen || !bytes.HasPrefix(a, []byte("labctlC7")) {
		t.Errorf("tag %x, again %x", a, b)
	}
	for _, other := range [][]byte{stepTag("r2", variantInput, 0), stepTag("r1", variantOutput, 0), stepTag("r1", variantInput, 1)} {
		if bytes.Equal(a, other) {
			t.Errorf("two steps share tag %x", a)
		}
	}
}

func TestParseTcpdumpCounts(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want tcpdumpTally
		err  bool
	}{
		{"tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n1000 packets captured\n1002 packets received by filter\n0 packets dropped by kernel\n",
			tcpdumpTally{1000, 1002, 0}, false},
		{"1 packet captured\n1 packet received by filter\n3 packets dropped by kernel\n", tcpdumpTally{1, 1, 3}, false},
		{"tcpdump: eth9: No such device exists\n", tcpdumpTally{}, true},
	} {
		got, err := parseTcpdumpCounts(tc.out)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v (error %v)", tc.out, got, err, tc.want, tc.err)
		}
	}
}

func TestRunRuleScript(t *testing.T) {
	got := runRuleScript("input", 9000)
	want := `create table inet labctl_capture; add chain inet labctl_capture input { type filter hook input priority -10; policy accept; }; ` +
		`add rule inet labctl_capture input udp dport 9000 counter drop comment "labctl capture-order"`
	if got != want {
		t.Errorf("script\n%s\nwant\n%s", got, want)
	}
}

func labOf(t *testing.T, example string, roles map[string]string) experiments.Lab {
	t.Helper()
	return labtest.Example(t, example, roles)
}

func TestSteps(t *testing.T) {
	var e Experiment
	for _, tc := range []struct {
		example string
		roles   map[string]string
		params  map[string]string
		addr    string
		err     string
	}{
		{"capture-order", map[string]string{"client": "tx", "server": "rx"}, nil, "198.18.0.2", ""},
		{"capture-order", map[string]string{"client": "rx", "server": "tx"}, nil, "", "node tx has no firewall rule that drops udp dport 9000 in chain input"},
		{"quickstart", map[string]string{"client": "n1", "server": "n2"}, nil, "", "rules=run"},
		{"quickstart", map[string]string{"client": "n1", "server": "n2"}, map[string]string{"rules": "run"}, "198.18.0.2", ""},
		{"quickstart", map[string]string{"client": "n1", "server": "n1"}, map[string]string{"rules": "run"}, "127.0.0.1", ""},
		{"quickstart", map[string]string{"client": "n1", "server": "n2"}, map[string]string{"rules": "run", "output_port": "9000"}, "", "both 9000"},
	} {
		p, err := experiments.Validate(e.Spec(), mergeParams(map[string]string{"repeats": "2"}, tc.params))
		if err != nil {
			t.Fatal(err)
		}
		steps, err := e.Steps(p, labOf(t, tc.example, tc.roles))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %v %v: %v; want an error with %q", tc.example, tc.roles, tc.params, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s %v: %v", tc.example, tc.roles, err)
		}
		var variants []string
		for _, s := range steps {
			variants = append(variants, s.GetVariant())
			if s.GetRoles()[0].GetAddress() != tc.addr || s.GetRoles()[0].GetNode() != tc.roles["server"] || s.GetRoles()[1].GetNode() != tc.roles["client"] {
				t.Errorf("%s: roles %v", tc.example, s.GetRoles())
			}
		}
		if got := strings.Join(variants, " "); got != "input output input output" {
			t.Errorf("%s: variants %s", tc.example, got)
		}
	}
}

func mergeParams(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// step builds one hand-made step from counts.
func step(variant string, rep int, c counts, tcpdump bool) *experimentv1.StepResult {
	client := &experimentv1.RoleReport{Role: "client", Node: "tx", Metrics: map[string]float64{
		"sent_packets": c.Sent, "send_ok_packets": c.OK, "send_eperm_packets": c.EPERM, "wire_packets": c.Wire}}
	server := &experimentv1.RoleReport{Role: "server", Node: "rx", Metrics: map[string]float64{
		"captured_packets": c.Captured, "delivered_packets": c.Delivered}}
	owner := server
	if variant == variantOutput {
		owner = client
	}
	owner.Metrics["rule_packets"] = c.Rule
	if tcpdump {
		client.Metrics["tcpdump_packets"] = c.Wire
		server.Metrics["tcpdump_packets"] = c.Captured
	}
	report.AddEvidence(server, "capture_drops", c.Drops, "packets", "", "")
	return &experimentv1.StepResult{Step: &experimentv1.Step{Variant: variant, Repeat: int32(rep)}, Reports: []*experimentv1.RoleReport{server, client}}
}

func TestJudge(t *testing.T) {
	in := counts{Sent: 1000, OK: 1000, Wire: 1000, Captured: 1000, Rule: 1000}
	out := counts{Sent: 1000, EPERM: 1000, Rule: 1000}
	with := func(c counts, f func(*counts)) counts { f(&c); return c }
	steps := func(in, out counts, tcpdump bool) []*experimentv1.StepResult {
		var s []*experimentv1.StepResult
		for rep := range 3 {
			s = append(s, step(variantInput, rep, in, tcpdump), step(variantOutput, rep, out, tcpdump))
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		steps   []*experimentv1.StepResult
		outcome experimentv1.Outcome
		explain string
	}{
		{"the ordering holds", steps(in, out, true), experimentv1.Outcome_OUTCOME_HOLDS, "before ip_rcv"},
		{"delivered despite the drop", steps(with(in, func(c *counts) { c.Delivered = 1000 }), out, false), experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, "delivered to the application 1000, expected 0"},
		{"output captured on the wire", steps(in, with(out, func(c *counts) { c.Wire = 1000 }), false), experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, "wire 1000, expected 0"},
		{"no steps", steps(in, out, true)[:0], experimentv1.Outcome_OUTCOME_INCONCLUSIVE, "lacks one"},
		{"the rule matched nothing", steps(with(in, func(c *counts) { c.Rule = 0 }), out, false), experimentv1.Outcome_OUTCOME_NOT_ENGAGED, "matched 0 of 1000"},
		{"capture lost frames", steps(with(in, func(c *counts) { c.Drops = 7; c.Captured = 993 }), out, false), experimentv1.Outcome_OUTCOME_INCONCLUSIVE, "lost 7 frames"},
		{"only input ran", steps(in, out, false)[:1], experimentv1.Outcome_OUTCOME_INCONCLUSIVE, "lacks one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Experiment
			p, _ := experiments.Validate(e.Spec(), nil)
			rows, v := e.Judge(p, tc.steps)
			if v.GetOutcome() != tc.outcome || !strings.Contains(v.GetExplanation(), tc.explain) || v.GetClaim() != "C7" {
				t.Errorf("verdict %v %q; want %v mentioning %q", v.GetOutcome(), v.GetExplanation(), tc.outcome, tc.explain)
			}
			for _, row := range rows {
				if row.GetEngagement() == experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED || row.GetNote() == "" {
					t.Errorf("row %s: engagement %v, note %q", row.GetVariant(), row.GetEngagement(), row.GetNote())
				}
			}
		})
	}
	// A tcpdump that disagrees with the capture contradicts the ordering.
	bad := steps(in, out, true)
	bad[0].Reports[0].Metrics["tcpdump_packets"] = 10
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	if _, v := e.Judge(p, bad); v.GetOutcome() != experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD || !strings.Contains(v.GetExplanation(), "tcpdump on the server 10") {
		t.Errorf("verdict with a disagreeing tcpdump: %v %q", v.GetOutcome(), v.GetExplanation())
	}
}

// newNetns makes a network namespace for the test with lo up.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	privtest.Root(t)
	if _, err := exec.LookPath("nft"); err != nil {
		privtest.Unavailable(t, "nft is not installed")
	}
	return labtest.Netns(t)
}

// roles runs both roles of a step in ns over lo.
func roles(t *testing.T, ns netns.NsHandle, step *experimentv1.Step, p experiments.Params) (server, client *experimentv1.RoleReport, serr, cerr error) {
	t.Helper()
	reports, errs := labtest.Roles(t, context.Background(), Experiment{}, step, p, labtest.RoleOptions{NS: func(string) netns.NsHandle { return ns }})
	return reports["server"], reports["client"], errs["server"], errs["client"]
}

// runTableGone checks that the run's table is not in ns.
func runTableGone(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	err := <-labtest.In(ns, func() error {
		out, err := exec.Command("nft", "list", "tables").CombinedOutput()
		if err != nil {
			return err
		}
		if strings.Contains(string(out), runTable) {
			t.Errorf("table %s is left after the role:\n%s", runTable, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBothDropsOnLoopback runs both variants over lo in a namespace of the
// test's own, with rules created for the run: on lo the sender's egress
// copy and the receiver's ingress copy are both taken on lo.
func TestBothDropsOnLoopback(t *testing.T) {
	ns := newNetns(t)
	var e Experiment
	given := map[string]string{"rules": "run", "count": "300", "input_port": "9400", "output_port": "9401"}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		given["tcpdump"] = "false"
	}
	p, err := experiments.Validate(e.Spec(), given)
	if err != nil {
		t.Fatal(err)
	}
	for rep, variant := range []string{variantInput, variantOutput} {
		step := &experimentv1.Step{Variant: variant, Repeat: int32(rep), Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
			{Role: "server", Node: "n", Address: "127.0.0.1"}, {Role: "client", Node: "n"}}}
		server, client, serr, cerr := roles(t, ns, step, p)
		if serr != nil || cerr != nil {
			t.Fatalf("%s: server: %v, client: %v", variant, serr, cerr)
		}
		c, _ := countsOf(&experimentv1.StepResult{Step: step, Reports: []*experimentv1.RoleReport{server, client}})
		t.Logf("%s: %s", variant, c)
		if c.Rule != 300 {
			t.Errorf("%s: rule counted %v of 300", variant, c.Rule)
		}
		if bad := c.Expected(variant); len(bad) > 0 {
			t.Errorf("%s: %v", variant, bad)
		}
		// On lo tcpdump only counts the receiver's (incoming) copies.
		if _, ok := c.Tcpdump["server"]; experiments.As[params](p).Tcpdump && (!ok || len(c.Tcpdump) != 1) {
			t.Errorf("%s: tcpdump counts %v, want the server's only", variant, c.Tcpdump)
		}
		runTableGone(t, ns)
	}
}

// TestCancelRemovesTheRunsRule cancels a step while the receiver waits,
// with its rule in place; the journal must delete the table.
func TestCancelRemovesTheRunsRule(t *testing.T) {
	ns := newNetns(t)
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), map[string]string{"rules": "run", "tcpdump": "false", "input_port": "9402", "output_port": "9403"})
	// The server alone: it waits for datagrams that never come.
	step := &experimentv1.Step{Variant: variantInput, Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n", Address: "127.0.0.1"}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		_, errs := labtest.Roles(t, ctx, e, step, p, labtest.RoleOptions{NS: func(string) netns.NsHandle { return ns },
			Ready: func(string, int) { ready <- struct{}{} }})
		done <- errs["server"]
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("server ended before it was ready: %v", err)
	}
	// The rule is made before the server is ready: it must be there now.
	if err := <-labtest.In(ns, func() error { return exec.Command("nft", "list", "table", "inet", runTable).Run() }); err != nil {
		t.Fatalf("the run's table is not there while the server waits: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the cancelled server returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancelled server did not return")
	}
	runTableGone(t, ns)
}
