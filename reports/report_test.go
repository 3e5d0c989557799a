package reports

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"html"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/internal/golden"
	"github.com/labctl/labctl/internal/judge"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// recorded reads testdata/<experiment>.json.gz: a result of the README's
// command for the experiment, made on the reference machine (2 vCPUs,
// Linux 6.18) at commit 217df86, with the steps of its first three repeats
// kept to stay small.
func recorded(t *testing.T, experiment string) *experimentv1.Result {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", experiment+".json.gz"))
	if err != nil {
		t.Fatalf("no recorded result of %s: %v", experiment, err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	var r experimentv1.Result
	if err := protojson.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", experiment, err)
	}
	return &r
}

func inputOf(t *testing.T, results ...*experimentv1.Result) Input {
	e, ok := all.Registry().Get(results[0].GetExperiment())
	if !ok {
		t.Fatalf("no experiment %s", results[0].GetExperiment())
	}
	in := Input{Results: results, Spec: e.Spec()}
	if f, ok := e.(experiments.Figured); ok {
		in.Figures = f.Figures()
	}
	return in
}

func render1(t *testing.T, in Input) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, in); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

var (
	figureRE = regexp.MustCompile(`(?s)<figure>(<svg.*?</svg>)\s*<figcaption>`)
	urlRE    = regexp.MustCompile(`(?i)(https?:|ftp:|//[a-z0-9.-]+\.[a-z]{2,}/|url\((["']?)[^d"'])`)
)

// TestEveryExperimentsReport renders each experiment's recorded result and
// checks the page's structure: every declared figure drawn (with its
// title and axis labels in the SVG), the topology, the verdict, the
// claim, the evidence, and nothing the page would fetch.
func TestEveryExperimentsReport(t *testing.T) {
	for _, spec := range all.Registry().Specs() {
		t.Run(spec.GetName(), func(t *testing.T) {
			r := recorded(t, spec.GetName())
			in := inputOf(t, r)
			page := html.UnescapeString(render1(t, in))
			svgs := figureRE.FindAllStringSubmatch(page, -1)
			figures := in.Figures
			if figures == nil {
				figures = Defaults(in.Spec, in.Results)
			}
			for _, f := range figures {
				found := false
				for _, svg := range svgs {
					if strings.Contains(svg[1], ">"+f.Title+"<") {
						found = true
						for _, label := range []string{f.XLabel, f.YLabel} {
							if label != "" && !strings.Contains(svg[1], ">"+label+"<") {
								t.Errorf("figure %q has no axis label %q", f.Title, label)
							}
						}
						if strings.Count(svg[1], "<path") < 10 {
							t.Errorf("figure %q draws almost nothing: %d paths", f.Title, strings.Count(svg[1], "<path"))
						}
					}
				}
				if !found {
					t.Errorf("figure %q is not on the page", f.Title)
				}
			}
			if !strings.Contains(page, ">Topology: "+r.GetLab()+"<") {
				t.Errorf("the page does not draw the topology of lab %s", r.GetLab())
			}
			v := r.GetVerdict()
			outcome := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(v.GetOutcome().String(), "OUTCOME_")), "_", " ")
			if !strings.Contains(page, "<b>"+outcome+"</b>") || !strings.Contains(page, v.GetExplanation()) {
				t.Errorf("the page does not show the verdict %s with its explanation", outcome)
			}
			for _, c := range spec.GetClaims() {
				for _, id := range strings.Split(c, ",") {
					if !strings.Contains(page, "<b>"+strings.TrimSpace(id)+": ") {
						t.Errorf("the page does not state claim %s", id)
					}
				}
			}
			if !strings.Contains(page, "Evidence from the kernel") {
				t.Error("no evidence section")
			}
			for _, m := range urlRE.FindAllString(stripNamespaces(page), -1) {
				t.Errorf("the page refers to something outside it: %q", m)
			}
		})
	}
}

// stripNamespaces removes the SVG namespace names: identifiers that look
// like URLs and are never fetched.
func stripNamespaces(page string) string {
	for _, ns := range []string{`xmlns="http://www.w3.org/2000/svg"`, `xmlns:xlink="http://www.w3.org/1999/xlink"`} {
		page = strings.ReplaceAll(page, ns, "")
	}
	return page
}

// TestTwoRunsSideBySide: a run set against a copy of itself with one
// parameter changed shows the parameter, both runs in each plot and a
// change per summary metric.
func TestTwoRunsSideBySide(t *testing.T) {
	a := recorded(t, "rr")
	b := proto.Clone(a).(*experimentv1.Result)
	b.Id = "20261205-130000-rr-beef"
	b.Params["size"] = "1024"
	in := inputOf(t, a, b)
	in.Comparison = judge.Results(a, b, in.Spec.GetSummaryMetrics())
	page := render1(t, in)
	for _, want := range []string{"What differs between the runs", "<td>param size</td><td>64</td><td>1024</td>",
		">A: tcp<", ">B: tcp<", "Changes, B against A", "Verdict of run A", "Verdict of run B"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if got, want := len(in.Comparison.GetChanges()), len(in.Spec.GetSummaryMetrics()); got != want {
		t.Errorf("%d changes, want one per summary metric (%d)", got, want)
	}
}

// TestComparisonJSON pins the shape of `results compare -o json`
// (docs/reports.md) with a golden file: rr against itself with the
// message size changed and every latency 50% higher.
func TestComparisonJSON(t *testing.T) {
	// Three repeats cannot decide at 95% (the rank test's smallest p for
	// 3 against 3 is 0.1): each step is repeated once more, 1% apart, to
	// give both runs six.
	a := recorded(t, "rr")
	for _, s := range slices.Clone(a.GetSteps()) {
		c := proto.Clone(s).(*experimentv1.StepResult)
		c.Step.Repeat += 3
		for _, r := range c.GetReports() {
			for k, v := range r.GetMetrics() {
				r.Metrics[k] = v * 1.01
			}
		}
		a.Steps = append(a.Steps, c)
	}
	b := proto.Clone(a).(*experimentv1.Result)
	b.Id = "20261205-130000-rr-beef"
	b.Params["size"] = "1024"
	b.Host.Kernel = "6.19.0"
	for _, s := range b.GetSteps() {
		for _, r := range s.GetReports() {
			for k, v := range r.GetMetrics() {
				if strings.HasPrefix(k, "rtt_") {
					r.Metrics[k] = v * 1.5
				}
			}
		}
	}
	c := judge.Results(a, b, []string{"client.rtt_p50_ns", "client.msgs_per_s"})
	b2, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	// As labctl's -o json prints it: protojson's whitespace varies by build.
	var out bytes.Buffer
	if err := json.Indent(&out, b2, "", "  "); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "compare.golden.json"), append(out.Bytes(), '\n'))
	if p50 := c.GetChanges()[0]; p50.GetComparison().GetVerdict() != experimentv1.ComparisonVerdict_COMPARISON_VERDICT_HIGHER {
		t.Errorf("every p50 50%% higher: %s, want higher", judge.Significance(p50))
	}
	other := proto.Clone(a).(*experimentv1.Result)
	other.Experiment = "zerocopy"
	if c := judge.Results(a, other, nil); c.GetComparable() || len(c.GetChanges()) > 0 {
		t.Errorf("runs of different experiments compared: %v", c)
	}
}

// TestCSV: one row per step and role, one column per metric.
func TestCSV(t *testing.T) {
	r := recorded(t, "rr")
	var buf bytes.Buffer
	if err := CSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := 1
	for _, s := range r.GetSteps() {
		want += len(s.GetReports())
	}
	if len(rows) != want {
		t.Fatalf("%d rows, want a header and one per step and role (%d)", len(rows), want)
	}
	header := strings.Join(rows[0], ",")
	if !strings.HasPrefix(header, "run,experiment,step,variant,repeat,role,node,") || !strings.Contains(header, ",rtt_p50_ns,") {
		t.Errorf("header %s", header)
	}
	col := -1
	for i, h := range rows[0] {
		if h == "rtt_p50_ns" {
			col = i
		}
	}
	for _, row := range rows[1:] {
		if (row[5] == "client") == (row[col] == "") {
			t.Errorf("row %v: rtt_p50_ns %q for role %s", row[:7], row[col], row[5])
		}
	}
}

// TestPacketPathFigure: a run whose packets were traced shows where the
// time went per stage.
func TestPacketPathFigure(t *testing.T) {
	r := recorded(t, "rr")
	r.GetSummary()[0].PacketPath = &experimentv1.PacketPath{Packets: 120, Stages: []*experimentv1.StageTime{
		{From: "net_dev_queue@n1", To: "netif_rx@n2", Packets: 60, P50Ns: 2100, P99Ns: 5000},
		{From: "netif_rx@n2", To: "copy to user@n2", Packets: 60, P50Ns: 6400, P99Ns: 21000}},
		Drops: []*experimentv1.DropCount{{Reason: "NO_SOCKET", Location: "tcp_v4_rcv+0x1a0", Node: "n2", Count: 1}}}
	page := html.UnescapeString(render1(t, inputOf(t, r)))
	for _, want := range []string{">Where the time goes: tcp<", ">net_dev_queue@n1 → netif_rx@n2<", "1 NO_SOCKET at tcp_v4_rcv+0x1a0 (n2)"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestSweepErrorBarsFollowTheirPoints: variants listed out of x order keep
// each point's range with its own point once the line is sorted by x.
func TestSweepErrorBarsFollowTheirPoints(t *testing.T) {
	step := func(variant string, repeat int32, y float64) *experimentv1.StepResult {
		return &experimentv1.StepResult{Step: &experimentv1.Step{Variant: variant, Repeat: repeat},
			Reports: []*experimentv1.RoleReport{{Role: "client", Metrics: map[string]float64{"y": y}}}}
	}
	// 64KiB first, with a wide range; 4KiB second, with none.
	r := &experimentv1.Result{Steps: []*experimentv1.StepResult{
		step("a/64KiB", 0, 10), step("a/4KiB", 0, 5), step("a/64KiB", 1, 30), step("a/4KiB", 1, 5)}}
	pts, err := sweepLines(experiments.Figure{Kind: experiments.Sweep, Title: "t", Metrics: []string{"client.y"},
		Variants: `^a/(?P<x>.+)$`}, []run{{R: r}})
	if err != nil || len(pts) != 1 {
		t.Fatalf("lines %v, %v", pts, err)
	}
	l := pts[0]
	if len(l.points) != 2 || l.points[0].X != 4096 || l.points[1].X != 65536 {
		t.Fatalf("points %v, want 4KiB then 64KiB", l.points)
	}
	if e := l.errs[0]; e.Low != 0 || e.High != 0 {
		t.Errorf("4KiB's range %v, want none", e)
	}
	if e := l.errs[1]; e.Low != 10 || e.High != 10 {
		t.Errorf("64KiB's range %v, want 10 each way around its median 20", e)
	}
}
