package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/labctl/labctl/internal/pktpath"
)

// otlpSpan is what the tests read of a span in labctl trace -o json.
type otlpSpan struct {
	Name       string `json:"name"`
	SpanID     string `json:"spanId"`
	ParentID   string `json:"parentSpanId"`
	Start      string `json:"startTimeUnixNano"`
	End        string `json:"endTimeUnixNano"`
	Attributes []struct {
		Key   string         `json:"key"`
		Value map[string]any `json:"value"`
	} `json:"attributes"`
	Events []struct {
		Name       string `json:"name"`
		Time       string `json:"timeUnixNano"`
		Attributes []struct {
			Key   string         `json:"key"`
			Value map[string]any `json:"value"`
		} `json:"attributes"`
	} `json:"events"`
	Status struct {
		Code int `json:"code"`
	} `json:"status"`
}

func (s otlpSpan) attr(key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			for _, v := range a.Value {
				if str, ok := v.(string); ok {
					return str
				}
				b, _ := json.Marshal(v)
				return string(b)
			}
		}
	}
	return ""
}

// stages are a packet span's events as "stage@node", in order.
func (s otlpSpan) stages() []string {
	var out []string
	for _, e := range s.Events {
		node := ""
		for _, a := range e.Attributes {
			if a.Key == "labctl.node" {
				node, _ = a.Value["stringValue"].(string)
			}
		}
		out = append(out, e.Name+"@"+node)
	}
	return out
}

// spans reads a run's local trace.
func (c *cli) spans(runID string) []otlpSpan {
	c.t.Helper()
	var doc struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []otlpSpan `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	out := c.ok("trace", runID, "-o", "json", "--local")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		c.t.Fatalf("trace %s: %v", runID, err)
	}
	var spans []otlpSpan
	for _, rs := range doc.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			spans = append(spans, ss.Spans...)
		}
	}
	return spans
}

// TestPacketsOfCaptureOrder: with --trace-packets, the INPUT drop's
// datagrams reach netif_receive_skb, where taps take their clone, pass
// LOCAL_IN and end there in NETFILTER_DROP; the OUTPUT drop's end at
// LOCAL_OUT and never reach the device queue.
func TestPacketsOfCaptureOrder(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("capture-order")
	res := c.result("run", "capture-order", lab, "--client", "tx", "--server", "rx", "-q", "--trace-packets",
		"-p", "count=50", "-p", "repeats=1", "-p", "tcpdump=false")
	completed(t, res, 2)
	if e := res.GetVerdict().GetExplanation(); !strings.Contains(e, "Packet path: INPUT: ") || !strings.Contains(e, "OUTPUT: ") {
		t.Errorf("the verdict does not say what packet tracing saw: %s", e)
	}
	pt := res.GetPacketTracing()
	if pt.GetError() != "" || pt.GetTraced() == 0 || len(pt.GetMissing()) != 0 || pt.GetLost() != 0 {
		t.Fatalf("packet tracing: %v", pt)
	}
	steps := map[string]string{} // step span id -> variant
	var packets []otlpSpan
	for _, s := range c.spans(res.GetId()) {
		switch s.Name {
		case "step":
			steps[s.SpanID] = s.attr("labctl.variant")
		case "packet":
			packets = append(packets, s)
		}
	}
	input, output := 0, 0
	seen := map[string]int{}
	for _, p := range packets {
		seen[steps[p.ParentID]+" "+p.attr("network.transport")+" "+p.attr("source.address")+" "+p.attr("drop.reason")]++
		if p.attr("network.transport") != "udp" || p.attr("source.address") != "198.18.0.1" {
			continue
		}
		st := p.stages()
		switch steps[p.ParentID] {
		case "input":
			if p.attr("drop.reason") != "NETFILTER_DROP" || p.Status.Code != 2 {
				t.Logf("input packet without its drop: %v %s", st, p.attr("destination.port"))
				continue
			}
			// netif_receive_skb is where the capture's tap takes its
			// clone (the capture's own read of it, "capture copy", comes
			// when the capture reads, after the drop or after the step).
			i := slices.Index(st, "netif_receive_skb@rx")
			j := slices.Index(st, "nf LOCAL_IN@rx")
			drop := slices.Index(st, "drop@rx")
			last := slices.IndexFunc(st[max(drop, 0):], func(s string) bool { return !strings.HasPrefix(s, "capture copy") && s != "drop@rx" })
			if i >= 0 && j > i && drop > j && last < 0 {
				input++
			} else {
				t.Errorf("input drop's stages %v", st)
			}
		case "output":
			if p.attr("drop.reason") != "NETFILTER_DROP" {
				continue
			}
			if slices.Contains(st, "net_dev_queue@tx") || slices.Contains(st, "tc egress@tx") || st[len(st)-1] != "drop@tx" || !slices.Contains(st, "nf LOCAL_OUT@tx") {
				t.Errorf("output drop's stages %v", st)
			} else {
				output++
			}
		}
	}
	// A packet still on its way when its step ends has its last stages
	// in the next one: 95% is the bar, as for rr.
	t.Logf("packets by step, transport, source and drop: %v", seen)
	if input < 48 || output < 48 {
		t.Errorf("%d input and %d output drops traced whole, want 48 of 50 each", input, output)
	}
	for _, row := range res.GetSummary() {
		if d := row.GetPacketPath().GetDrops(); len(d) == 0 || d[0].GetReason() != "NETFILTER_DROP" {
			t.Errorf("%s: drops %v", row.GetVariant(), d)
		}
	}
}

// TestPacketsOfRR: the sampled requests of rr, with every stage traced,
// go through every stage from the client's device egress to the copy in
// the server's, in time order, each in its node; the result has the
// per-stage table; stream offsets join packets to messages. quickstart
// has no firewall rules, so a sampled run traces no netfilter stage
// (runs.startPacketTrace) and later stages find sampled packets through
// the in-flight array. Without --trace-all-stages, a sampled run traces
// the landmarks only and says which stages it left out.
func TestPacketsOfRR(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	rr := []string{"run", "rr", lab, "--client", "n1", "--server", "n2", "-q", "--trace-packets=0.2",
		"-p", "count=2000", "-p", "size=100", "-p", "repeats=1", "-p", "warmup=0s"}
	t.Run("landmarks", func(t *testing.T) {
		res := c.result(rr...)
		completed(t, res, 1)
		pt := res.GetPacketTracing()
		if pt.GetError() != "" || pt.GetLost() != 0 || len(pt.GetMissing()) != 0 || len(pt.GetOmitted()) != 10 {
			t.Fatalf("packet tracing: %v", pt)
		}
		var requests, complete int
		for _, p := range c.spans(res.GetId()) {
			if p.Name != "packet" || !carriesData(p) {
				continue
			}
			st := p.stages()
			if len(st) == 0 || st[0] != "tc egress@n1" {
				continue // not a request from the client
			}
			requests++
			if slices.Equal(st, []string{"tc egress@n1", "copy to user@n2"}) && timesAscend(p) {
				complete++
			} else if requests-complete < 4 {
				t.Logf("incomplete: %v", st)
			}
		}
		if requests < 100 || float64(complete) < 0.95*float64(requests) {
			t.Errorf("%d of %d sampled requests went from the egress hook to the copy", complete, requests)
		}
		if table := c.ok("results", "show", res.GetId()); !strings.Contains(table, "not traced at this rate: ") {
			t.Errorf("results show does not say which stages a sampled run left out:\n%s", table)
		}
	})
	if r := c.run("run", "rr", lab, "--trace-all-stages"); r.code != 2 || !strings.Contains(r.stderr, "--trace-all-stages goes with --trace-packets") {
		t.Errorf("--trace-all-stages alone: exit %d, %s", r.code, r.stderr)
	}
	res := c.result(append(rr, "--trace-all-stages")...)
	completed(t, res, 1)
	pt := res.GetPacketTracing()
	if pt.GetError() != "" || pt.GetLost() != 0 || len(pt.GetMissing()) != 0 {
		t.Fatalf("packet tracing: %v", pt)
	}
	want := []string{"tc egress@n1", "net_dev_queue@n1", "net_dev_start_xmit@n1", "netif_rx@n2", "netif_receive_skb@n2",
		"tcp receive@n2", "sk_data_ready@n2", "copy to user@n2"}
	var requests, complete int
	offsets := map[string]bool{}
	for _, p := range c.spans(res.GetId()) {
		if p.Name != "packet" || p.attr("destination.port") == "" || p.attr("labctl.packet.stream_offset") == "" {
			continue
		}
		st := p.stages()
		if slices.ContainsFunc(st, func(s string) bool { return strings.HasPrefix(s, "nf ") }) {
			t.Fatalf("a netfilter stage in a sampled run of a lab without rules: %v", st)
		}
		if len(st) == 0 || st[0] != "tc egress@n1" || !slices.Contains(st, "copy to user@n2") && !slices.Contains(st, "tcp receive@n2") {
			continue // not a request from the client with data
		}
		requests++
		if inOrder(want, st) && timesAscend(p) {
			complete++
		} else if requests-complete < 4 {
			t.Logf("incomplete: %v", st)
		}
		offsets[p.attr("labctl.packet.stream_offset")] = true
	}
	if requests < 100 || float64(complete) < 0.95*float64(requests) {
		t.Errorf("%d of %d sampled requests have every stage in order", complete, requests)
	}
	// Requests are 100 bytes (the first is rr's phase byte): offsets are
	// multiples of 100.
	for off := range offsets {
		var n int
		if err := json.Unmarshal([]byte(off), &n); err == nil && n%100 != 0 {
			t.Errorf("stream offset %d is no message boundary", n)
			break
		}
	}
	pp := res.GetSummary()[0].GetPacketPath()
	if pp.GetPackets() == 0 || len(pp.GetStages()) < len(want)-1 {
		t.Errorf("per-stage table: %v", pp)
	}
	table := c.ok("results", "show", res.GetId())
	if !strings.Contains(table, "where the time goes") || !strings.Contains(table, "net_dev_queue@n1") {
		t.Errorf("results show lacks the per-stage table:\n%s", table)
	}
	if !strings.Contains(res.GetVerdict().GetExplanation(), "packet path (") {
		t.Errorf("the verdict does not split the round trip: %s", res.GetVerdict().GetExplanation())
	}
}

func inOrder(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// carriesData reports whether a packet span's first stage saw a payload:
// on the device (the egress hook, net_dev_queue) a pure ACK is 66 bytes (Ethernet, IPv4, TCP with
// timestamps).
func carriesData(s otlpSpan) bool {
	if len(s.Events) == 0 {
		return false
	}
	for _, a := range s.Events[0].Attributes {
		if a.Key == "labctl.packet.len" {
			n, _ := strconv.Atoi(fmt.Sprint(a.Value["intValue"]))
			return n > 66
		}
	}
	return false
}

func timesAscend(s otlpSpan) bool {
	for i := 1; i < len(s.Events); i++ {
		if len(s.Events[i].Time) < len(s.Events[i-1].Time) || len(s.Events[i].Time) == len(s.Events[i-1].Time) && s.Events[i].Time < s.Events[i-1].Time {
			return false
		}
	}
	return true
}

// TestPacketsWithAMissingStage: a stage that cannot attach is listed in
// the result, the run completes, and the other stages still appear.
func TestPacketsWithAMissingStage(t *testing.T) {
	c := newCLI(t)
	c.env = append(c.env, pktpath.FailEnv+"=receive")
	lab, _ := c.up("quickstart")
	res := c.result("run", "rr", lab, "-q", "--trace-packets=0.5", "--trace-all-stages", "-p", "count=200", "-p", "repeats=1", "-p", "warmup=0s")
	completed(t, res, 1)
	missing := res.GetPacketTracing().GetMissing()
	if len(missing) != 1 || !strings.HasPrefix(missing[0], "netif_receive_skb") {
		t.Errorf("missing stages %v, want netif_receive_skb", missing)
	}
	seen := map[string]bool{}
	for _, st := range res.GetSummary()[0].GetPacketPath().GetStages() {
		seen[strings.Split(st.GetFrom(), "@")[0]] = true
	}
	if seen["netif_receive_skb"] || !seen["netif_rx"] || !seen["tcp receive"] || !seen["sk_data_ready"] {
		t.Errorf("stages in the table: %v", seen)
	}
}

// TestWatchDrops: labctl watch --drops shows a drop made while it runs,
// and ends cleanly on Ctrl-C.
func TestWatchDrops(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	cmd := exec.Command(c.bin, "watch", lab, "--drops", "-o", "json")
	cmd.Env = c.env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// A TCP SYN to a closed port of n2, again until the watch shows it
	// (it needs a moment to attach).
	var drop map[string]any
	deadline := time.After(20 * time.Second)
	for drop == nil {
		_ = exec.Command("ip", "netns", "exec", "labctl-"+lab+".n1", "bash", "-c", "exec 3<>/dev/tcp/198.18.0.2/9").Run()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended: %v", cmd.Wait())
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err == nil && m["reason"] == "NO_SOCKET" {
				drop = m
			}
		case <-time.After(300 * time.Millisecond):
		case <-deadline:
			t.Fatal("no drop shown within 20 s")
		}
	}
	if drop["node"] != "n2" || !strings.HasPrefix(drop["location"].(string), "tcp_v4_rcv") || drop["protocol"] != "tcp" {
		t.Errorf("drop %v", drop)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watch after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("watch did not stop on Ctrl-C")
	}
}

// TestTraceShape: agents are told apart by service.instance.id; span names
// are stable (no step numbers); the in-process call to the lab service is
// one span, not a client and a server span; the slowest round trips are
// events at the moments they happened; up and down name their lab, and
// down's stopping of agents is a span; read-only calls such as status,
// locally or through labctl serve, leave no trace of their own.
func TestTraceShape(t *testing.T) {
	c := newCLI(t)
	dir := filepath.Join(envValue(c.env, "LABCTL_STATE_DIR"), "traces")
	lab, _ := c.up("quickstart")
	upTrace := traceDirs(t, dir)
	if len(upTrace) != 1 {
		t.Fatalf("traces after up: %v, want one", upTrace)
	}
	if root := rootOf(c.spans(upTrace[0])); root.Name != "labctl up" || root.attr("labctl.lab") != lab {
		t.Errorf("up's root %q names lab %q, want labctl up of %s", root.Name, root.attr("labctl.lab"), lab)
	}

	res := c.result("run", "rr", lab, "-q", "-p", "count=100", "-p", "repeats=2", "-p", "warmup=0s")
	var doc struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []struct {
					Key   string         `json:"key"`
					Value map[string]any `json:"value"`
				} `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []otlpSpan `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal([]byte(c.ok("trace", res.GetId(), "-o", "json", "--local")), &doc); err != nil {
		t.Fatal(err)
	}
	instances := map[string]bool{}
	names := map[string]int{}
	var measures []otlpSpan
	for _, rs := range doc.ResourceSpans {
		attrs := map[string]any{}
		for _, a := range rs.Resource.Attributes {
			attrs[a.Key] = a.Value["stringValue"]
		}
		if attrs["service.name"] == "labctl-agent" {
			instances[fmt.Sprint(attrs["service.instance.id"])] = true
		}
		if attrs["service.version"] == nil || attrs["host.name"] == nil {
			t.Errorf("resource without service.version or host.name: %v", attrs)
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				names[s.Name]++
				if s.Name == "measure" {
					measures = append(measures, s)
				}
			}
		}
	}
	if !instances[lab+"/n1"] || !instances[lab+"/n2"] {
		t.Errorf("agent instances %v, want %s/n1 and %s/n2", instances, lab, lab)
	}
	for name := range names {
		if regexp.MustCompile(`(^| )[0-9]+( |$)`).MatchString(name) {
			t.Errorf("span name %q holds a number", name)
		}
	}
	if names["step"] == 0 {
		t.Errorf("span names %v, want step", names)
	}
	if n := names["labctl.lab.v1.LabService/Run"]; n != 1 {
		t.Errorf("%d spans of LabService/Run, want the server's alone", n)
	}
	slow := 0
	for _, m := range measures {
		slow += slowAtTheirMoments(t, m)
	}
	if slow == 0 {
		t.Errorf("no slow round trip in %d measure spans", len(measures))
	}

	before := traceDirs(t, dir)
	c.ok("status", lab)
	c.ok("status")
	c.ok("run", "--list")
	srv, remote := c.serve()
	c.ok(append(remote, "status", lab)...)
	c.ok(append(remote, "run", "--list")...)
	// Stopped, serve has written every span it kept; agents write theirs
	// in batches.
	_ = srv.Process.Signal(syscall.SIGTERM)
	_ = srv.Wait()
	time.Sleep(2 * time.Second)
	if added := newTraces(before, traceDirs(t, dir)); len(added) > 0 {
		t.Errorf("status and run --list left traces: %v", added)
	}

	before = traceDirs(t, dir)
	c.ok("down", lab)
	down := newTraces(before, traceDirs(t, dir))
	if len(down) != 1 {
		t.Fatalf("traces of down: %v, want one", down)
	}
	spans := c.spans(down[0])
	if root := rootOf(spans); root.Name != "labctl down" || root.attr("labctl.lab") != lab {
		t.Errorf("down's root %q names lab %q, want labctl down of %s", root.Name, root.attr("labctl.lab"), lab)
	}
	if !slices.ContainsFunc(spans, func(s otlpSpan) bool { return s.Name == "agents.stop" }) {
		t.Error("down's trace has no agents.stop span")
	}
}

// slowAtTheirMoments checks that each slow round trip of a measure span is
// an event at the moment it happened: its time less its offset into the
// measurement is the same for every one, within the span. It returns how
// many it checked.
func slowAtTheirMoments(t *testing.T, m otlpSpan) int {
	t.Helper()
	start, _ := strconv.ParseInt(m.Start, 10, 64)
	end, _ := strconv.ParseInt(m.End, 10, 64)
	var begin int64
	n := 0
	for _, e := range m.Events {
		if e.Name != "slow round trip" {
			continue
		}
		at, _ := strconv.ParseInt(e.Time, 10, 64)
		var offset int64
		for _, a := range e.Attributes {
			if a.Key == "labctl.offset_ns" {
				offset, _ = strconv.ParseInt(fmt.Sprint(a.Value["intValue"]), 10, 64)
			}
		}
		if n == 0 {
			begin = at - offset
		}
		if at-offset != begin || at < start || at > end {
			t.Errorf("slow round trip at %d, offset %d: not at its moment (measure %d..%d, began %d)", at, offset, start, end, begin)
		}
		n++
	}
	return n
}

// rootOf is the span of spans without a parent.
func rootOf(spans []otlpSpan) otlpSpan {
	for _, s := range spans {
		if s.ParentID == "" {
			return s
		}
	}
	return otlpSpan{}
}

// traceDirs lists the traces kept locally, by id.
func traceDirs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

func newTraces(before, after []string) []string {
	var added []string
	for _, id := range after {
		if !slices.Contains(before, id) {
			added = append(added, id)
		}
	}
	return added
}

// TestPacketTracingLeavesNothing: the process that runs experiments, here
// labctl serve, which outlives its runs, holds no BPF program, link or map
// of a traced run once the run has ended or been cancelled (by the
// kernel's ids, from the descriptors in /proc/PID/fdinfo); and killed with
// -9 mid-run, the programs and links it loaded are gone from the kernel.
func TestPacketTracingLeavesNothing(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	srv, remote := c.serve()
	pid := srv.Process.Pid
	before := heldBPF(t, pid)
	same := func(when string) {
		t.Helper()
		var now bpfObjects
		if !poll(20*time.Second, func() bool { now = heldBPF(t, pid); return now.equal(before) }) {
			t.Errorf("%s: serve holds %v, before any run %v", when, now, before)
		}
	}
	traced := append(append([]string{}, remote...), "run", "rr", lab, "-q", "--trace-packets=0.01")

	checkRR(t, c.result(append(traced, shortRR...)...))
	same("after a traced run")

	// A long run, started and then cancelled as Ctrl-C does, once the
	// tracer is loaded.
	long := append(traced, "-p", "duration=60s", "-p", "warmup=0s", "-p", "repeats=1")
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(c.bin, long...)
		cmd.Env = c.env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if !poll(30*time.Second, func() bool { return len(heldBPF(t, pid).links) > len(before.links) }) {
			t.Fatal("the traced run's links never appeared in serve")
		}
		return cmd
	}
	cmd := start()
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); exitCode(err) != exitInterrupted {
		t.Errorf("the cancelled run exited with %v, want %d", err, exitInterrupted)
	}
	same("after a cancelled run")

	// kill -9 of serve while it traces a run.
	start()
	loaded := heldBPF(t, pid)
	_ = srv.Process.Signal(syscall.SIGKILL)
	var left []string
	if !poll(30*time.Second, func() bool { left = loaded.stillInKernel(); return len(left) == 0 }) {
		t.Errorf("after kill -9 of serve, still in the kernel: %v", left)
	}
}

// bpfObjects are the ids of the BPF programs, links and maps a process
// holds descriptors of.
type bpfObjects struct{ progs, links, maps []int }

func (a bpfObjects) equal(b bpfObjects) bool {
	return slices.Equal(a.progs, b.progs) && slices.Equal(a.links, b.links) && slices.Equal(a.maps, b.maps)
}

// heldBPF reads the kernel's ids of the BPF objects pid holds from
// /proc/PID/fdinfo: a link's descriptor says link_id (and its program's
// prog_id), a program's prog_id alone, a map's map_id.
func heldBPF(t *testing.T, pid int) bpfObjects {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	var o bpfObjects
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since the listing
		}
		ids := map[string]int{}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if n, err := strconv.Atoi(strings.TrimSpace(v)); ok && err == nil {
				ids[k] = n
			}
		}
		switch {
		case ids["link_id"] != 0:
			o.links = append(o.links, ids["link_id"])
		case ids["prog_id"] != 0:
			o.progs = append(o.progs, ids["prog_id"])
		case ids["map_id"] != 0:
			o.maps = append(o.maps, ids["map_id"])
		}
	}
	slices.Sort(o.progs)
	slices.Sort(o.links)
	slices.Sort(o.maps)
	return o
}

// stillInKernel names the programs and links of o the kernel still has.
func (o bpfObjects) stillInKernel() []string {
	var left []string
	for _, id := range o.progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			p.Close()
			left = append(left, fmt.Sprintf("program %d", id))
		}
	}
	for _, id := range o.links {
		if l, err := link.NewFromID(link.ID(id)); err == nil {
			l.Close()
			left = append(left, fmt.Sprintf("link %d", id))
		}
	}
	return left
}
