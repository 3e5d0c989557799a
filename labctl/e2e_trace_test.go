package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/privtest"
)

// jaeger starts the Jaeger built from tools/jaeger on ports of its own and
// returns its OTLP gRPC endpoint and query URL; it is stopped at cleanup.
func jaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	bin := os.Getenv("LABCTL_JAEGER_BIN")
	if bin == "" {
		bin, _ = filepath.Abs("../bin/jaeger")
	}
	if _, err := os.Stat(bin); err != nil {
		privtest.Unavailable(t, "no Jaeger binary at "+bin+" (scripts/jaeger.sh build; scripts/test.sh builds it)")
	}
	dir := t.TempDir()
	grpcPort, httpPort, queryPort, queryGRPC := freePort(t), freePort(t), freePort(t), freePort(t)
	port := func(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
	env := append(os.Environ(), "LABCTL_JAEGER_BIN="+bin, "LABCTL_JAEGER_DIR="+dir,
		"LABCTL_JAEGER_OTLP_GRPC_PORT="+port(grpcPort), "LABCTL_JAEGER_OTLP_HTTP_PORT="+port(httpPort),
		"LABCTL_JAEGER_QUERY_HTTP_PORT="+port(queryPort), "LABCTL_JAEGER_QUERY_GRPC_PORT="+port(queryGRPC))
	script, _ := filepath.Abs("../scripts/jaeger.sh")
	start := exec.Command(script, "start")
	start.Env = env
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("jaeger start: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		stop := exec.Command(script, "stop")
		stop.Env = env
		_ = stop.Run()
	})
	return "http://" + grpcPort, "http://" + queryPort
}

// otlpTrace is the part of Jaeger's /api/v3/traces answer the test reads.
type otlpTrace struct {
	Result struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []struct {
					Key   string `json:"key"`
					Value struct {
						StringValue string `json:"stringValue"`
					} `json:"value"`
				} `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []struct {
					SpanID       string `json:"spanId"`
					ParentSpanID string `json:"parentSpanId"`
					Name         string `json:"name"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	} `json:"result"`
}

type jspan struct{ service, name, parent string }

// getJSON decodes what url answers into v; false when it answers other
// than 200 OK (Jaeger has no such trace yet).
func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", url, err, body)
	}
	return true
}

func fetchJaeger(t *testing.T, query, id string) map[string]jspan {
	t.Helper()
	spans := map[string]jspan{}
	var tr otlpTrace
	if !getJSON(t, query+"/api/v3/traces/"+id, &tr) {
		return spans
	}
	for _, rs := range tr.Result.ResourceSpans {
		service := ""
		for _, a := range rs.Resource.Attributes {
			if a.Key == "service.name" {
				service = a.Value.StringValue
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				spans[s.SpanID] = jspan{service, s.Name, s.ParentSpanID}
			}
		}
	}
	return spans
}

// TestTracesInJaeger: up and an rr run are traces in a real Jaeger, with
// spans of the CLI and of the agents linked parent to child across the
// gRPC hop, and the run's traced packets; labctl trace renders the run
// from Jaeger.
func TestTracesInJaeger(t *testing.T) {
	c := newCLI(t)
	otlp, query := jaeger(t)
	c.env = append(c.env, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp, "LABCTL_JAEGER_URL="+query)
	lab, file := c.labFile("quickstart")
	r := c.run("up", file)
	if r.code != 0 || !strings.Contains(r.stderr, query+"/trace/") {
		t.Fatalf("up: exit %d; stderr does not link the trace in Jaeger:\n%s", r.code, r.stderr)
	}
	res := c.result(append([]string{"run", "rr", lab, "-q", "--trace-packets=0.01"}, shortRR...)...)
	traceID := res.GetTraceId()
	if traceID == "" {
		t.Fatal("the stored result has no trace id")
	}
	// Agents export on their own schedule (half a second): wait for them.
	var spans map[string]jspan
	var services map[string]bool
	exported := poll(20*time.Second, func() bool {
		spans = fetchJaeger(t, query, traceID)
		services = map[string]bool{}
		for _, s := range spans {
			services[s.service] = true
		}
		return services["labctl"] && services["labctl-agent"] && countNamed(spans, "role rr") == 4 && countNamed(spans, "packet") > 0
	})
	if !exported {
		t.Fatalf("Jaeger has %d spans of trace %s, services %v", len(spans), traceID, services)
	}
	for _, s := range spans {
		if !strings.HasPrefix(s.name, "role rr") {
			continue
		}
		// role (agent) <- RunRole server span (agent) <- RunRole client span (labctl)
		srv, ok := spans[s.parent]
		if !ok || srv.service != "labctl-agent" {
			t.Fatalf("%s has no parent in the agent: %+v", s.name, srv)
		}
		cli, ok := spans[srv.parent]
		if !ok || cli.service != "labctl" {
			t.Errorf("the agent's server span is not a child of a labctl span: %+v", cli)
		}
	}
	out := c.ok("trace", res.GetId())
	for _, want := range []string{"from Jaeger at " + query, "run rr", "role rr client", "labctl-agent/n1", query + "/trace/" + traceID} {
		if !strings.Contains(out, want) {
			t.Errorf("labctl trace lacks %q:\n%s", want, out)
		}
	}
}

func countNamed(spans map[string]jspan, prefix string) int {
	n := 0
	for _, s := range spans {
		if strings.HasPrefix(s.name, prefix) {
			n++
		}
	}
	return n
}

// TestTracesWithoutCollector: with nothing listening at the OTLP endpoint,
// up and run finish normally, the local copy exists, and labctl trace
// renders it.
func TestTracesWithoutCollector(t *testing.T) {
	c := newCLI(t)
	closed := freePort(t) // nothing listens there any more
	c.env = append(c.env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+closed, "LABCTL_JAEGER_URL=http://"+closed)
	lab, file := c.labFile("quickstart")
	r := c.run("up", file)
	if r.code != 0 || !strings.Contains(r.stderr, "kept locally") {
		t.Fatalf("up: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	res := c.result(append([]string{"run", "rr", lab, "-q"}, shortRR...)...)
	dir := filepath.Join(envValue(c.env, "LABCTL_STATE_DIR"), "traces", res.GetTraceId())
	// The agents' spans come in their own time; the checks below say what
	// is missing if they never do.
	var out string
	poll(10*time.Second, func() bool { out = c.ok("trace", res.GetId()); return strings.Count(out, "role rr") == 4 })
	if files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl")); len(files) < 3 {
		t.Errorf("local copy in %s: %v; want the CLI's and both agents'", dir, files)
	}
	for _, want := range []string{"from the local copy", "run rr", "role rr server", "role rr client", "measure"} {
		if !strings.Contains(out, want) {
			t.Errorf("labctl trace lacks %q:\n%s", want, out)
		}
	}
}

// uiTrace is the part of Jaeger's /api/traces/ID answer the test reads:
// the JSON the Jaeger UI fetches and draws a trace page from.
type uiTrace struct {
	Data []struct {
		Spans []struct {
			SpanID        string `json:"spanID"`
			OperationName string `json:"operationName"`
			References    []struct {
				RefType string `json:"refType"`
				SpanID  string `json:"spanID"`
			} `json:"references"`
			Tags      []uiTag                    `json:"tags"`
			Logs      []struct{ Fields []uiTag } `json:"logs"`
			ProcessID string                     `json:"processID"`
		} `json:"spans"`
		Processes map[string]struct {
			ServiceName string  `json:"serviceName"`
			Tags        []uiTag `json:"tags"`
		} `json:"processes"`
	} `json:"data"`
}

type uiTag struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func tagValue(tags []uiTag, key string) string {
	for _, t := range tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// uiSpan is a span as the Jaeger UI shows it: its service and instance
// (the process), name, parent, tags and the fields of its events.
type uiSpan struct {
	service, instance, name, parent string
	tags                            []uiTag
	events                          [][]uiTag
}

// fetchUITrace reads a trace as the Jaeger UI does, by span id; none
// while Jaeger does not have it.
func fetchUITrace(t *testing.T, query, id string) map[string]uiSpan {
	t.Helper()
	spans := map[string]uiSpan{}
	var tr uiTrace
	if !getJSON(t, query+"/api/traces/"+id, &tr) {
		return spans
	}
	for _, d := range tr.Data {
		for _, s := range d.Spans {
			p := d.Processes[s.ProcessID]
			u := uiSpan{service: p.ServiceName, instance: tagValue(p.Tags, "service.instance.id"), name: s.OperationName, tags: s.Tags}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" {
					u.parent = r.SpanID
				}
			}
			for _, l := range s.Logs {
				u.events = append(u.events, l.Fields)
			}
			spans[s.SpanID] = u
		}
	}
	return spans
}

// TestJaegerUIShowsRun checks a run's trace as the Jaeger UI gets it
// (/api/traces/ID, the JSON its trace page is drawn from): the agents are
// two services instances, one a node; each role nests under the agent's
// server span, itself under the CLI's call; the run's id and the traced
// packets' nodes are attributes. Where a built jaeger-ui is given
// (LABCTL_JAEGER_UI_ASSETS), it also opens the page in headless Chromium,
// checks what it shows and keeps a screenshot: the Go module Jaeger is
// built from ships a placeholder instead of the UI (Jaeger's releases add
// it from the jaeger-ui repository, which is not reachable from here and
// not published to npm), so CI checks the UI's data and not its page.
func TestJaegerUIShowsRun(t *testing.T) {
	c := newCLI(t)
	otlp, query := jaeger(t)
	c.env = append(c.env, "OTEL_EXPORTER_OTLP_ENDPOINT="+otlp, "LABCTL_JAEGER_URL="+query)
	lab, _ := c.up("quickstart")
	res := c.result(append([]string{"run", "rr", lab, "-q", "--trace-packets=0.01"}, shortRR...)...)
	traceID := res.GetTraceId()
	var spans map[string]uiSpan
	// Agents export on their own schedule (half a second): wait for them.
	poll(20*time.Second, func() bool {
		spans = fetchUITrace(t, query, traceID)
		roles, packets := 0, 0
		for _, s := range spans {
			roles += boolInt(strings.HasPrefix(s.name, "role rr"))
			packets += boolInt(s.name == "packet")
		}
		return roles == 4 && packets > 0
	})
	instances := map[string]bool{}
	var runs, roles, packets int
	for _, s := range spans {
		if s.service == "labctl-agent" {
			instances[s.instance] = true
		}
		switch {
		case s.name == "run rr":
			runs++
			if got := tagValue(s.tags, "labctl.run.id"); got != res.GetId() {
				t.Errorf("run rr: labctl.run.id %q, want %q", got, res.GetId())
			}
		case strings.HasPrefix(s.name, "role rr"):
			roles++
			// role (agent) <- RunRole server span (same agent) <- RunRole client span (labctl)
			srv, ok := spans[s.parent]
			if !ok || srv.service != "labctl-agent" || srv.instance != s.instance {
				t.Errorf("%s of %s: parent %+v, want a span of the same agent", s.name, s.instance, srv)
			}
			if cli, ok := spans[srv.parent]; !ok || cli.service != "labctl" {
				t.Errorf("%s of %s: the agent's server span's parent is %+v, want a span of labctl", s.name, s.instance, cli)
			}
		case s.name == "packet":
			packets++
			if _, ok := spans[s.parent]; !ok {
				t.Errorf("a packet span without its parent in the trace")
			}
			for _, ev := range s.events {
				if node := tagValue(ev, "labctl.node"); node != "n1" && node != "n2" {
					t.Errorf("a packet's stage in node %q, want n1 or n2", node)
				}
			}
		}
	}
	if !instances[lab+"/n1"] || !instances[lab+"/n2"] || len(instances) != 2 {
		t.Errorf("labctl-agent instances %v, want %s/n1 and %s/n2", instances, lab, lab)
	}
	if runs != 1 || roles != 4 || packets == 0 {
		t.Errorf("the UI's data holds %d run, %d role and %d packet spans, want 1, 4 and some", runs, roles, packets)
	}

	if os.Getenv("LABCTL_JAEGER_UI_ASSETS") == "" {
		t.Log("the page itself is not checked: that needs a built jaeger-ui in LABCTL_JAEGER_UI_ASSETS (the Jaeger Go module ships only a placeholder page)")
		return
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		privtest.Unavailable(t, "chromium is not installed (scripts/deps.sh installs it)")
	}
	artifacts := os.Getenv("LABCTL_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	shot := filepath.Join(artifacts, "jaeger-ui-"+traceID+".png")
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--no-first-run", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=15000", "--window-size=1600,1200"}
	url := query + "/trace/" + traceID
	dom, err := exec.Command(chromium, append(flags, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	for _, name := range []string{"labctl-agent", "role rr client", "role rr server", "packet"} {
		if !strings.Contains(string(dom), name) {
			t.Errorf("the Jaeger UI page does not show %q", name)
		}
	}
	if out, err := exec.Command(chromium, append(flags, "--screenshot="+shot, url)...).CombinedOutput(); err != nil {
		t.Errorf("screenshot: %v\n%s", err, out)
	}
	t.Logf("screenshot: %s", shot)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
