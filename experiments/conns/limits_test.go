package conns

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func TestLimitsSteps(t *testing.T) {
	var e Limits
	p, _ := experiments.Validate(e.Spec(), map[string]string{"scenarios": "ports,sources", "repeats": "2"})
	steps, err := e.Steps(p, quickstart(t, "n1", "n2"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%d %s=%s", s.GetRepeat(), s.GetVariant(), s.GetParams()["scenarios"]))
	}
	if want := "0 ports=ports,0 sources=sources,1 ports=ports,1 sources=sources"; strings.Join(got, ",") != want {
		t.Errorf("steps %v, want %s", got, want)
	}
	for _, tc := range []struct {
		name   string
		params map[string]string
		lab    experiments.Lab
		want   string
	}{
		{"one node", nil, quickstart(t, "n1", "n1"), "different nodes"},
		{"prefix overlaps the lab", map[string]string{"source_prefix": "198.18.0.0/16"}, quickstart(t, "n1", "n2"), "overlaps 198.18.0."},
		{"prefix too small", map[string]string{"source_prefix": "198.19.248.0/30", "sources": "4"}, quickstart(t, "n1", "n2"), "fewer than 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := experiments.Validate(e.Spec(), tc.params)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.Steps(p, tc.lab); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// limitsStep makes the reports of one conn-limits step.
func limitsStep(sc string, repeat int, conns, value float64, limit, errno string, overflows, fdsBefore float64) *experimentv1.StepResult {
	client := &experimentv1.RoleReport{Role: "client", Metrics: map[string]float64{"conns": conns, "limit_value": value, "source_addrs": 1}}
	if sc == scenarioSources {
		client.Metrics["source_addrs"] = 4
	}
	report.AddEvidence(client, "limit", value, "", "", limit)
	report.AddEvidence(client, "refusal", 0, errno, "", "")
	if sc == scenarioNofile {
		report.AddEvidence(client, "descriptors_before", fdsBefore, "", "", "")
	}
	server := &experimentv1.RoleReport{Role: "server", Metrics: map[string]float64{"listen_overflows": overflows}}
	return &experimentv1.StepResult{Step: &experimentv1.Step{Variant: sc, Repeat: int32(repeat)}, Reports: []*experimentv1.RoleReport{server, client}}
}

func TestLimitsJudge(t *testing.T) {
	nofile := limitsStep(scenarioNofile, 0, 1021, 1024, limitNofile, "EMFILE", 0, 3)
	ports := limitsStep(scenarioPorts, 0, 1000, 1000, limitPorts, "EADDRNOTAVAIL", 0, 0)
	sources := limitsStep(scenarioSources, 0, 4000, 4000, limitPorts, "EADDRNOTAVAIL", 0, 0)
	backlog := limitsStep(scenarioBacklog, 0, 65, 64, limitBacklog, "", 3, 0)
	defaults := limitsStep(scenarioDefaults, 0, 28232, 28232, limitPorts, "EADDRNOTAVAIL", 0, 0)
	quiet := limitsStep(scenarioDefaults, 0, 3000, 0, limitNone, "", 0, 0)
	var e Limits
	p, _ := experiments.Validate(e.Spec(), nil)
	for _, tc := range []struct {
		name    string
		steps   []*experimentv1.StepResult
		outcome experimentv1.Outcome
		explain string
	}{
		{"holds", []*experimentv1.StepResult{nofile, ports, sources, backlog, defaults}, experimentv1.Outcome_OUTCOME_HOLDS, "lift the port limit 4.0-fold"},
		{"defaults reaching nothing does not count", []*experimentv1.StepResult{nofile, ports, quiet}, experimentv1.Outcome_OUTCOME_HOLDS, "nothing refused"},
		{"another limit refused", []*experimentv1.StepResult{nofile, limitsStep(scenarioPorts, 0, 500, 0, limitMemory, "ENOBUFS", 0, 0)}, experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, "want net.ipv4.ip_local_port_range"},
		{"nothing refused", []*experimentv1.StepResult{limitsStep(scenarioNofile, 0, 30000, 0, limitNone, "", 0, 3), limitsStep(scenarioPorts, 0, 30000, 0, limitNone, "", 0, 0)}, experimentv1.Outcome_OUTCOME_NOT_ENGAGED, "nothing refused"},
		{"ports short of the range", []*experimentv1.StepResult{nofile, limitsStep(scenarioPorts, 0, 990, 1000, limitPorts, "EADDRNOTAVAIL", 0, 0)}, experimentv1.Outcome_OUTCOME_INCONCLUSIVE, "after 990 connections; the range allows 1000"},
		{"backlog without overflows", []*experimentv1.StepResult{nofile, ports, limitsStep(scenarioBacklog, 0, 65, 64, limitBacklog, "", 0, 0)}, experimentv1.Outcome_OUTCOME_INCONCLUSIVE, "0 ListenOverflows"},
		{"only backlog", []*experimentv1.StepResult{backlog}, experimentv1.Outcome_OUTCOME_MEASURED, "judged on scenarios nofile and ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, v := e.Judge(p, tc.steps)
			if v.GetOutcome() != tc.outcome || !strings.Contains(v.GetExplanation(), tc.explain) || v.GetClaim() != "C14" {
				t.Errorf("verdict %v: %s\nwant %v containing %q", v.GetOutcome(), v.GetExplanation(), tc.outcome, tc.explain)
			}
		})
	}
}

// settingsOf reads what conn-limits changes in the two namespaces.
func settingsOf(t *testing.T, p pair) string {
	t.Helper()
	addrs, _ := exec.Command("ip", "-n", p.client, "-4", "-o", "addr", "show").Output()
	routes, _ := exec.Command("ip", "-n", p.server, "route", "show").Output()
	return strings.Join([]string{readIn(t, p.client, "/proc/sys/net/ipv4/ip_local_port_range"), readIn(t, p.server, "/proc/sys/net/core/somaxconn"),
		string(addrs), string(routes)}, "\n")
}

func TestLimitsScenarios(t *testing.T) {
	p := newPair(t)
	before := settingsOf(t, p)
	params := map[string]string{"max_conns": "3000", "port_range": "201", "nofile": "256", "somaxconn": "16", "sources": "2"}
	for _, sc := range scenarios {
		t.Run(sc, func(t *testing.T) {
			params["scenarios"] = sc
			out := runStep(t, context.Background(), Limits{}, p, sc, params)
			if out.serverErr != nil || out.clientErr != nil {
				t.Fatalf("server: %v, client: %v", out.serverErr, out.clientErr)
			}
			o, ok := readOutcome(&experimentv1.StepResult{Step: &experimentv1.Step{Variant: sc}, Reports: []*experimentv1.RoleReport{out.server, out.client}})
			if !ok {
				t.Fatalf("no outcome in %v", out.client)
			}
			engaged, why := o.check()
			switch sc {
			case scenarioDefaults:
				// 3000 connections reach none of the node's limits.
				if o.limit != limitNone || o.conns != 3000 || out.server.Metrics["accepted"] != 3000 {
					t.Errorf("defaults: %+v, server %v", o, out.server.Metrics)
				}
			default:
				if !engaged {
					t.Errorf("%s: %s", sc, why)
				}
			}
			if after := settingsOf(t, p); after != before {
				t.Errorf("settings not restored after %s:\n%s\nwant\n%s", sc, after, before)
			}
		})
	}
	leftovers(t, p)
}

func TestLimitsCancelRestoresSettings(t *testing.T) {
	p := newPair(t)
	before := settingsOf(t, p)
	// Scenario sources with a wide range would open 100,000 connections;
	// the run is cancelled long before.
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	out := runStep(t, ctx, Limits{}, p, scenarioSources, map[string]string{"scenarios": scenarioSources, "max_conns": "100000", "port_range": "25000", "sources": "4"})
	if out.clientErr == nil || out.serverErr == nil {
		t.Fatalf("a cancelled run ended without errors: client %v, server %v", out.clientErr, out.serverErr)
	}
	if after := settingsOf(t, p); after != before {
		t.Errorf("settings not restored after the cancel:\n%s\nwant\n%s", after, before)
	}
	leftovers(t, p)
}

// leftovers fails if a TCP socket other than a listener is left in either
// namespace.
func leftovers(t *testing.T, p pair) {
	t.Helper()
	for _, ns := range []string{p.client, p.server} {
		out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-Htan", "state", "all").Output()
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out), "\n"); n > 0 {
			t.Errorf("%d sockets left in %s:\n%.500s", n, ns, out)
		}
	}
}

// TestParamBoundsAreMaxConns: the parameters that set a number of
// connections stop at maxConns.
func TestParamBoundsAreMaxConns(t *testing.T) {
	for _, ps := range append(Cost{}.Spec().GetParams(), Limits{}.Spec().GetParams()...) {
		if (ps.GetName() == "counts" || ps.GetName() == "max_conns") && ps.GetMax() != strconv.Itoa(maxConns) {
			t.Errorf("%s: max %s, want %d", ps.GetName(), ps.GetMax(), maxConns)
		}
	}
}
