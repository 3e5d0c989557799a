package conns

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// evidenceOf finds a piece of evidence by name.
func evidenceOf(r *experimentv1.RoleReport, name string) *experimentv1.Evidence {
	for _, e := range r.GetEvidence() {
		if e.GetName() == name {
			return e
		}
	}
	return nil
}

// outcome is one step of conn-limits as the judge reads it.
type outcome struct {
	scenario  string
	limit     string // what refused (limitNone: nothing before max_conns)
	conns     float64
	value     float64 // the limit in force
	errno     string
	overflows float64 // the server's TcpExt.ListenOverflows
	fdsBefore float64 // scenario nofile: descriptors in the connections' table before connecting
	sources   float64 // client source addresses
}

func readOutcome(s *experimentv1.StepResult) (outcome, bool) {
	c, srv := report.ReportOf(s, "client"), report.ReportOf(s, "server")
	lim := evidenceOf(c, "limit")
	if c == nil || lim == nil {
		return outcome{}, false
	}
	o := outcome{scenario: s.GetStep().GetVariant(), limit: lim.GetDetail(), conns: c.GetMetrics()["conns"], value: lim.GetValue(),
		overflows: srv.GetMetrics()["listen_overflows"], sources: max(1, c.GetMetrics()["source_addrs"])}
	if e := evidenceOf(c, "refusal"); e != nil {
		o.errno = e.GetUnit()
	}
	if e := evidenceOf(c, "descriptors_before"); e != nil {
		o.fdsBefore = e.GetValue()
	}
	return o, true
}

// check says whether a step reached the limit its scenario is built for,
// exactly where the limit in force puts it; defaults only needs something
// to refuse.
func (o outcome) check() (ok bool, why string) {
	if o.limit == limitNone {
		return false, fmt.Sprintf("nothing refused: %.0f connections opened (max_conns)", o.conns)
	}
	if want, ok := expectedLimit[o.scenario]; ok && o.limit != want {
		return false, fmt.Sprintf("refused by %s (%s) after %.0f connections, want %s", o.limit, o.errno, o.conns, want)
	}
	switch o.scenario {
	case scenarioNofile:
		if o.conns+o.fdsBefore != o.value {
			return false, fmt.Sprintf("EMFILE after %.0f connections in a table that held %.0f descriptors before, but the soft limit is %.0f", o.conns, o.fdsBefore, o.value)
		}
	case scenarioPorts, scenarioSources:
		// An odd range may leave one port per source address unused:
		// connect() walks the even ports, then the odd ones, over a
		// count rounded down to even.
		if o.conns > o.value || o.conns < o.value-o.sources {
			return false, fmt.Sprintf("EADDRNOTAVAIL after %.0f connections; the range allows %.0f", o.conns, o.value)
		}
	case scenarioBacklog:
		if o.conns != o.value+1 || o.overflows == 0 {
			return false, fmt.Sprintf("%.0f handshakes completed with somaxconn %.0f (want somaxconn+1), %.0f ListenOverflows", o.conns, o.value, o.overflows)
		}
	}
	return true, o.describe()
}

func (o outcome) describe() string {
	switch o.limit {
	case limitNone:
		return fmt.Sprintf("nothing refused in %.0f connections", o.conns)
	case limitBacklog:
		return fmt.Sprintf("%.0f connections queued (somaxconn %.0f + 1), then SYNs dropped (%.0f ListenOverflows), no errno", o.conns, o.value, o.overflows)
	case limitNofile:
		return fmt.Sprintf("%s after %.0f connections (%s %.0f; the table held %.0f descriptors before)", o.errno, o.conns, o.limit, o.value, o.fdsBefore)
	case limitPorts:
		return fmt.Sprintf("%s after %.0f connections (%s: %.0f ports x %.0f source addresses)", o.errno, o.conns, o.limit, o.value/o.sources, o.sources)
	}
	return fmt.Sprintf("%s after %.0f connections (%s: %.0f)", o.errno, o.conns, o.limit, o.value)
}

// Judge summarises each scenario and judges C14: descriptors bound the
// connections of a process, local ports bound one client address's
// connections to one server port, more source addresses lift that bound.
// Scenario defaults only reports which of the node's limits came first.
func (Limits) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	byScenario := map[string][]outcome{}
	for _, s := range steps {
		if o, ok := readOutcome(s); ok {
			byScenario[o.scenario] = append(byScenario[o.scenario], o)
		}
	}
	verdict := &experimentv1.Verdict{Claim: "C14"}
	var parts []string
	judged, engaged, wrongLimit := 0, 0, 0
	for _, row := range rows {
		sc := row.GetVariant()
		os := byScenario[sc]
		row.Engagement = experimentv1.Engagement_ENGAGEMENT_ENGAGED
		var notes []string
		for _, o := range os {
			ok, why := o.check()
			if !ok {
				row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
				if want := expectedLimit[sc]; want != "" && o.limit != limitNone && o.limit != want {
					wrongLimit++
				}
			}
			if !slices.Contains(notes, why) {
				notes = append(notes, why)
			}
		}
		if len(os) == 0 {
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			notes = append(notes, "no client report")
		}
		row.Note = strings.Join(notes, "; ")
		parts = append(parts, sc+": "+row.GetNote())
		if _, judgedHere := expectedLimit[sc]; judgedHere {
			judged++
			if row.GetEngagement() == experimentv1.Engagement_ENGAGEMENT_ENGAGED {
				engaged++
			}
		}
	}
	if lift := portLift(byScenario); lift != "" {
		parts = append(parts, lift)
	}
	verdict.Explanation = strings.Join(parts, ". ")
	switch {
	case wrongLimit > 0:
		verdict.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
	case judged == 0 || !coversClaim(byScenario):
		verdict.Outcome = experimentv1.Outcome_OUTCOME_MEASURED
		verdict.Explanation += ". The claim is judged on scenarios nofile and ports (sources shows the lift)"
	case engaged == 0:
		verdict.Outcome = experimentv1.Outcome_OUTCOME_NOT_ENGAGED
	case engaged < judged:
		verdict.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
	default:
		verdict.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
	}
	return rows, verdict
}

// coversClaim reports whether the scenarios that test C14 ran.
func coversClaim(by map[string][]outcome) bool {
	return len(by[scenarioNofile]) > 0 && len(by[scenarioPorts]) > 0
}

// portLift compares the connections of scenarios sources and ports.
func portLift(by map[string][]outcome) string {
	src, ports := by[scenarioSources], by[scenarioPorts]
	if len(src) == 0 || len(ports) == 0 || ports[0].conns == 0 {
		return ""
	}
	return "more source addresses lift the port limit " + strconv.FormatFloat(src[0].conns/ports[0].conns, 'f', 1, 64) +
		fmt.Sprintf("-fold (%.0f connections instead of %.0f)", src[0].conns, ports[0].conns)
}
