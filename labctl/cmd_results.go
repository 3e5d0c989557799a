package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/measure"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/reports"
)

func newResultsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "results",
		Short: "List and show stored experiment results",
		Long: `Every run is stored as JSON with its parameters, environment (kernel, devices,
MTU, offloads, CPU pinning, observers), each step's measurements and evidence,
the summary per variant, the verdict, and its trace id.`,
	}
	var lab, experiment string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List results, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.ListResults(cmd.Context(), &labv1.ListResultsRequest{Lab: lab, Experiment: experiment, Limit: int32(limit)})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g.output, resp, func(w *tabwriter.Writer) {
				if len(resp.GetResults()) == 0 {
					fmt.Fprintln(w, "no results yet (labctl run --list shows what can run)")
					return
				}
				row(w, "ID", "LAB", "EXPERIMENT", "STATE", "STARTED", "VERDICT")
				for _, r := range resp.GetResults() {
					row(w, r.GetId(), r.GetLab(), r.GetExperiment(), stateName(r.GetState()), r.GetStarted(), judge.OutcomeWord(r.GetOutcome())+": "+clip(r.GetHeadline(), 90))
				}
			})
		},
	}
	list.Flags().StringVar(&lab, "lab", "", "only this lab's results")
	list.Flags().StringVar(&experiment, "experiment", "", "only this experiment's results")
	list.Flags().IntVar(&limit, "limit", 50, "at most this many (0: all)")
	show := &cobra.Command{
		Use:   "show RUN_ID",
		Short: "Show one result (a unique prefix of the id is enough)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.GetResult(cmd.Context(), &labv1.GetResultRequest{Id: args[0]})
			if err != nil {
				return err
			}
			r := resp.GetResult()
			return emit(cmd.OutOrStdout(), g.output, r, func(w *tabwriter.Writer) {
				resultTable(w, r, findSpec(cmd, c, r.GetExperiment()), true)
			})
		},
	}
	cmd.AddCommand(list, show, newCompareCmd(g), newExportCmd(g), newImportCmd(g))
	return cmd
}

func newCompareCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "compare RUN_A RUN_B",
		Short: "Set one run against another: what differs, and each metric's change",
		Long: `Compare sets run B against run A. First what differs between the runs besides
their measurements (experiment, parameters, kernel, machine, lab, placement):
shown, never hidden. Runs of different experiments cannot be compared and say
so. Then, for every variant both runs have, each of the experiment's summary
metrics (--all: every metric) with both medians and ranges, and the change
decided by the test verdicts use: the Hodges-Lehmann interval of B/A at 95%
over the two runs' repeats, "lower", "higher" or "undecided"
(docs/statistics.md). Each comparison stands alone: with many metrics, about
one in twenty undecided-looking differences is expected to be called by chance.

-o json prints the comparison as labctl.experiment.v1.ResultComparison
(docs/reports.md).`,
		Example: `  labctl results compare 20261124-113501-rr-7f3a 20261124-120000-rr-1b2c
  labctl results compare 20261124-113501-rr 20261124-120000-rr --all -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.CompareResults(cmd.Context(), &labv1.CompareResultsRequest{A: args[0], B: args[1], All: all})
			if err != nil {
				return err
			}
			cmp := resp.GetComparison()
			return emit(cmd.OutOrStdout(), g.output, cmp, func(w *tabwriter.Writer) { comparisonTable(w, cmp) })
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "compare every metric, not only the experiment's summary metrics")
	return cmd
}

func comparisonTable(w *tabwriter.Writer, c *experimentv1.ResultComparison) {
	fmt.Fprintf(w, "B %s against A %s (%s)\n", c.GetB(), c.GetA(), c.GetExperiment())
	if !c.GetComparable() {
		fmt.Fprintln(w, "\nnot comparable: the runs are of different experiments")
	}
	if len(c.GetDifferences()) == 0 {
		fmt.Fprintln(w, "\nsame experiment, parameters, kernel and machine")
	} else {
		fmt.Fprintln(w, "\nwhat differs:")
		row(w, "  WHAT", "A", "B")
		for _, d := range c.GetDifferences() {
			row(w, "  "+d.GetWhat(), orDash(d.GetA()), orDash(d.GetB()))
		}
	}
	if len(c.GetOnlyA()) > 0 {
		fmt.Fprintf(w, "\nonly in A: %s\n", strings.Join(c.GetOnlyA(), ", "))
	}
	if len(c.GetOnlyB()) > 0 {
		fmt.Fprintf(w, "\nonly in B: %s\n", strings.Join(c.GetOnlyB(), ", "))
	}
	if len(c.GetChanges()) > 0 {
		fmt.Fprintf(w, "\nchanges, B against A (median [min .. max]; %.0f%% error rate each; docs/statistics.md):\n", 100*measure.DefaultAlpha)
		row(w, "  VARIANT", "METRIC", "A", "B", "CHANGE")
		for _, ch := range c.GetChanges() {
			m := ch.GetMetric()
			row(w, "  "+ch.GetVariant(), m, spreadText(m, ch.GetA()), spreadText(m, ch.GetB()), judge.Significance(ch))
		}
	}
}

func spreadText(metric string, s *experimentv1.Spread) string {
	return fmt.Sprintf("%s [%s .. %s]", formatMetric(metric, s.GetMedian()), formatMetric(metric, s.GetMin()), formatMetric(metric, s.GetMax()))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newExportCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export RUN_ID",
		Short: "Write a result to standard output: JSON to import elsewhere, or CSV",
		Long: `Export writes a stored result. --format json (the default) is the whole
result, as labctl results import reads it on another machine. --format csv is
every step's metrics, one row per step and role: run, experiment, step,
variant, repeat, role, node, then one column per metric (empty where the role
did not report it).`,
		Example: `  labctl results export 20261124-113501-rr-7f3a > rr.json
  labctl results export 20261124-113501-rr-7f3a --format csv > rr.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "json" && format != "csv" {
				return usagef("--format %q: json or csv", format)
			}
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.GetResult(cmd.Context(), &labv1.GetResultRequest{Id: args[0]})
			if err != nil {
				return err
			}
			if format == "csv" {
				return reports.CSV(cmd.OutOrStdout(), resp.GetResult())
			}
			b, err := toJSON(resp.GetResult())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "json", "json (the whole result, to import) or csv (every step's metrics)")
	return cmd
}

func newImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Store a result made by another labctl, to compare it here",
		Long: `Import stores a result exported by another labctl (labctl results export, or
results show -o json) under its own id, so that results compare and report can
set it against runs made here. It refuses, storing nothing: a file that is not
a complete result (cut short, or something else), a result written by a newer
labctl (unknown fields, or a newer schema), and an id already stored (nothing
is overwritten). FILE - reads standard input.`,
		Example: `  labctl results import rr-from-laptop.json
  ssh box labctl results export 20261124-113501-rr-7f3a | labctl results import -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.ImportResult(cmd.Context(), &labv1.ImportResultRequest{Source: args[0], Result: data})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g.output, resp, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "imported %s (labctl results show %s)\n", resp.GetId(), resp.GetId())
			})
		},
	}
}

func stateName(s experimentv1.RunState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RUN_STATE_"))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// resultTable prints a result: what ran where, the verdict, and a summary
// per variant (the spec's summary metrics, or every metric with full).
func resultTable(w *tabwriter.Writer, r *experimentv1.Result, spec *experimentv1.ExperimentSpec, full bool) {
	fmt.Fprintf(w, "run %s: %s in lab %s, %s\n", r.GetId(), r.GetExperiment(), r.GetLab(), stateName(r.GetState()))
	var roles []string
	for _, role := range sortedKeys(r.GetNodes()) {
		roles = append(roles, role+" on "+strings.Join(placements(r, role), "|"))
	}
	h := r.GetHost()
	fmt.Fprintf(w, "  %s; kernel %s, %d CPUs; params %s\n", strings.Join(roles, ", "), h.GetKernel(), h.GetCpus(), paramsText(r.GetParams()))
	if ps := h.GetCniPlugins(); len(ps) > 0 {
		var s []string
		for _, p := range ps {
			s = append(s, fmt.Sprintf("%s %s (%s, sha256 %.12s)", p.GetType(), p.GetVersion(), p.GetPath(), p.GetSha256()))
		}
		fmt.Fprintf(w, "  cni plugins: %s\n", strings.Join(s, "; "))
	}
	if r.GetError() != "" {
		fmt.Fprintf(w, "  error: %s\n", r.GetError())
	}
	if v := r.GetVerdict(); v != nil {
		claim := ""
		if v.GetClaim() != "" {
			claim = " on " + v.GetClaim()
		}
		fmt.Fprintf(w, "\nverdict%s: %s\n  %s\n", claim, strings.ToUpper(judge.OutcomeWord(v.GetOutcome())), v.GetExplanation())
		if len(v.GetComparisons()) > 0 {
			fmt.Fprintf(w, "\ncomparisons (error rate %.0f%% over up to %d looks; docs/statistics.md):\n", 100*measure.DefaultAlpha, v.GetLooks())
			row(w, "  METRIC", "B AGAINST A", "VERDICT", "CHANGE [INTERVAL]", "REPEATS")
			for _, c := range v.GetComparisons() {
				change := fmt.Sprintf("%+.1f%%", 100*(c.GetRatio()-1))
				if c.GetHigh() > 0 {
					change += fmt.Sprintf(" [%+.1f%%, %+.1f%%]", 100*(c.GetLow()-1), 100*(c.GetHigh()-1))
				}
				verdict := strings.ToLower(strings.TrimPrefix(c.GetVerdict().String(), "COMPARISON_VERDICT_"))
				if c.GetMargin() > 0 {
					verdict += fmt.Sprintf(" (±%.0f%%)", 100*c.GetMargin())
				}
				if c.GetMore() > 0 {
					verdict += fmt.Sprintf(", ~%d more repeats", c.GetMore())
				}
				row(w, "  "+c.GetMetric(), c.GetB()+" vs "+c.GetA(), verdict, change, fmt.Sprintf("%d, %d", c.GetRepeatsB(), c.GetRepeatsA()))
			}
		}
	}
	if len(r.GetSummary()) > 0 {
		fmt.Fprintln(w, "\nsummary (median over repeats, [min .. max]):")
		row(w, "  VARIANT", "METRIC", "MEDIAN", "RANGE", "ENGAGED")
		for _, s := range r.GetSummary() {
			names := spec.GetSummaryMetrics()
			if full || len(names) == 0 {
				names = sortedKeys(s.GetMetrics())
			}
			first := true
			for _, name := range names {
				m, ok := s.GetMetrics()[name]
				if !ok {
					continue
				}
				variant, engaged := "", ""
				if first {
					variant, engaged, first = s.GetVariant(), engagementName(s.GetEngagement()), false
				}
				row(w, "  "+variant, name, formatMetric(name, m.GetMedian()), "["+formatMetric(name, m.GetMin())+" .. "+formatMetric(name, m.GetMax())+"]", engaged)
			}
			if first {
				row(w, "  "+s.GetVariant(), "", "", "", engagementName(s.GetEngagement()))
			}
			if s.GetNote() != "" {
				row(w, "", "note: "+s.GetNote())
			}
		}
	}
	packetTable(w, r)
	if full {
		evidenceTable(w, r)
	}
	if r.GetTraceId() != "" {
		fmt.Fprintf(w, "\ntrace %s (labctl trace %s)\n", r.GetTraceId(), r.GetId())
	}
	if !full {
		fmt.Fprintf(w, "\nstored as %s (labctl results show %s)\n", r.GetId(), r.GetId())
	}
}

// placements lists the nodes a role ran on: the run's placement, unless its
// steps put the role elsewhere (paths places its servers per path).
func placements(r *experimentv1.Result, role string) []string {
	seen := map[string]bool{}
	var nodes []string
	for _, s := range r.GetSteps() {
		for _, ra := range s.GetStep().GetRoles() {
			if ra.GetRole() == role && !seen[ra.GetNode()] {
				seen[ra.GetNode()] = true
				nodes = append(nodes, ra.GetNode())
			}
		}
	}
	if len(nodes) == 0 {
		return []string{r.GetNodes()[role]}
	}
	return nodes
}

// evidenceTable lists the evidence of the first repeat of each variant, and
// the notes of every step.
func evidenceTable(w *tabwriter.Writer, r *experimentv1.Result) {
	seen := map[string]bool{}
	fmt.Fprintln(w, "\nevidence (first repeat of each variant):")
	row(w, "  VARIANT", "ROLE", "EVIDENCE", "VALUE", "SOURCE")
	for _, s := range r.GetSteps() {
		v := s.GetStep().GetVariant()
		if seen[v] {
			continue
		}
		seen[v] = true
		for _, rep := range s.GetReports() {
			for _, e := range rep.GetEvidence() {
				row(w, "  "+v, rep.GetRole(), e.GetName(), fmt.Sprintf("%g %s", e.GetValue(), e.GetUnit()), e.GetSource())
			}
			for _, n := range rep.GetNotes() {
				row(w, "  "+v, rep.GetRole(), "note", n, "")
			}
		}
	}
}

func engagementName(e experimentv1.Engagement) string {
	if e == experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED {
		return ""
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.String(), "ENGAGEMENT_")), "_", " ")
}

func paramsText(p map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(p) {
		parts = append(parts, k+"="+p[k])
	}
	return strings.Join(parts, " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// formatMetric writes a value in the unit its name ends with.
func formatMetric(name string, v float64) string {
	switch {
	case strings.HasSuffix(name, "_ns") || strings.Contains(name, "_ns_per_"):
		return formatNs(v)
	case strings.HasSuffix(name, "_per_s"):
		return si(v) + "/s"
	case strings.HasSuffix(name, "_bps"):
		return si(v) + "bit/s"
	case strings.HasSuffix(name, "_bytes"):
		return si(v) + "B"
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

func formatNs(ns float64) string {
	switch a := math.Abs(ns); {
	case a < 1e3:
		return fmt.Sprintf("%.3g ns", ns) // per-byte costs are fractions of a ns
	case a < 1e6:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	case a < 1e9:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	}
	return fmt.Sprintf("%.2f s", ns/1e9)
}

func si(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// packetTable shows what packet tracing saw: per variant, where the time
// goes from each stage of the kernel's path to the next, and the drops.
func packetTable(w *tabwriter.Writer, r *experimentv1.Result) {
	pt := r.GetPacketTracing()
	if pt == nil {
		return
	}
	if pt.GetError() != "" {
		fmt.Fprintf(w, "\npacket tracing not engaged: %s\n", pt.GetError())
		return
	}
	fmt.Fprintf(w, "\npacket tracing: %d packets traced at rate %g", pt.GetTraced(), pt.GetRate())
	if pt.GetCapped() {
		fmt.Fprintf(w, " (stopped at the cap of %d)", pt.GetCap())
	}
	fmt.Fprintf(w, ", %d events lost", pt.GetLost())
	if n := pt.GetBpfPackets(); n > 0 {
		fmt.Fprintf(w, "; its programs ran %.0f ns of kernel time a transmission (kernel.bpf_stats_enabled)", float64(pt.GetBpfNs())/float64(n))
	}
	fmt.Fprintln(w)
	for _, m := range pt.GetMissing() {
		fmt.Fprintf(w, "  missing stage: %s\n", m)
	}
	if o := pt.GetOmitted(); len(o) > 0 {
		fmt.Fprintf(w, "  not traced at this rate: %s (--trace-all-stages traces them, at a cost to every packet)\n", strings.Join(o, ", "))
	}
	for _, s := range r.GetSummary() {
		pp := s.GetPacketPath()
		if pp == nil {
			continue
		}
		fmt.Fprintf(w, "\nwhere the time goes, %s (%d packets):\n", s.GetVariant(), pp.GetPackets())
		row(w, "  FROM", "TO", "PACKETS", "P50", "P99")
		for _, st := range pp.GetStages() {
			row(w, "  "+st.GetFrom(), st.GetTo(), st.GetPackets(), formatNs(st.GetP50Ns()), formatNs(st.GetP99Ns()))
		}
		for _, d := range pp.GetDrops() {
			row(w, "  drop", d.GetReason()+" at "+d.GetLocation(), d.GetCount(), "node "+d.GetNode(), "")
		}
	}
}
