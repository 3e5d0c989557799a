package main

// End-to-end tests: the built labctl binary against the real kernel. Each
// test uses its own state and runtime directories and lab names of its own,
// and removes everything in t.Cleanup.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/netns"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/topologies/examples"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain sweeps away what test processes that died left behind, and
// removes the binaries the tests built.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		swept, err := labtest.Sweep(func(lab string) error {
			_, err := netns.Destroy(context.Background(), lab, nil, netns.Options{})
			return err
		})
		for _, s := range swept {
			fmt.Fprintln(os.Stderr, "swept, left by a test process that died:", s)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sweep:", err)
		}
	}
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// labctlBinary builds the binary once per test run.
func labctlBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "labctl-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "labctl")
		// Static, as the scripts build it: no libc mapped into 1,000 agents.
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cli runs labctl with the test's own state directories.
type cli struct {
	t     *testing.T
	bin   string
	env   []string
	state string // LABCTL_STATE_DIR
}

func newCLI(t *testing.T) *cli {
	privtest.Root(t)
	state := t.TempDir()
	// Agent sockets live under the run directory; keep its path short, far
	// below the 108 bytes of a Unix socket path.
	run, err := os.MkdirTemp("/tmp", "lt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	return &cli{t: t, bin: labctlBinary(t), env: append(os.Environ(), "LABCTL_STATE_DIR="+state, "LABCTL_RUN_DIR="+run), state: state}
}

// ran is what a finished labctl printed and how it exited.
type ran struct {
	stdout, stderr string
	code           int
}

func (c *cli) run(args ...string) ran {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("labctl %v: %v", args, err)
	}
	return ran{out.String(), errb.String(), code}
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("labctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// json decodes the -o json output of a command that prints a Go value
// (plan); API messages go through message.
func (c *cli) json(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("labctl %v: %v\n%s", args, err, out)
	}
}

// message decodes the -o json output of a command that prints an API
// message (labctl writes those with protojson) into m.
func (c *cli) message(m proto.Message, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := decodeMessage(out, m); err != nil {
		c.t.Fatalf("labctl %v: %v\n%s", args, err, out)
	}
}

// decodeMessage decodes protojson output. The tests read only what they
// check, so a field the test binary does not know is no failure.
func decodeMessage(out string, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal([]byte(out), m)
}

// result runs a command that prints a stored result (run, results show).
func (c *cli) result(args ...string) *experimentv1.Result {
	c.t.Helper()
	res := &experimentv1.Result{}
	c.message(res, args...)
	return res
}

// status is the lab's status as GetStatus answers it.
func (c *cli) status(lab string) *labv1.LabStatus {
	c.t.Helper()
	st := &labv1.LabStatus{}
	c.message(st, "status", lab)
	return st
}

// completed fails the test unless the run completed with as many steps as
// given, and whatever steps beyond them the run added to decide undecided
// comparisons (later repeats of its variants), and its verdict decided or
// said why not (decidedOrSaysWhy).
func completed(t *testing.T, res *experimentv1.Result, steps int) {
	t.Helper()
	if res.GetState() != experimentv1.RunState_RUN_STATE_COMPLETED || len(res.GetSteps()) < steps {
		t.Fatalf("result %s: state %s, %d steps, want %d", res.GetId(), res.GetState(), len(res.GetSteps()), steps)
	}
	first, _ := strconv.Atoi(res.GetParams()["repeats"])
	for _, s := range res.GetSteps()[steps:] {
		if int(s.GetStep().GetRepeat()) < first {
			t.Errorf("result %s: step %s repeat %d beyond the first %d steps is not an added round", res.GetId(), s.GetStep().GetVariant(), s.GetStep().GetRepeat()+1, steps)
		}
	}
	decidedOrSaysWhy(t, res)
}

// decidedOrSaysWhy fails the test when a verdict is inconclusive without
// naming what the machine lacks, or undecided without saying how many more
// repeats would decide it.
func decidedOrSaysWhy(t *testing.T, res *experimentv1.Result) {
	t.Helper()
	v := res.GetVerdict()
	switch v.GetOutcome() {
	case experimentv1.Outcome_OUTCOME_UNDECIDED:
		if !strings.Contains(v.GetExplanation(), "more") {
			t.Errorf("result %s: undecided without saying what would decide it: %s", res.GetId(), v.GetExplanation())
		}
	case experimentv1.Outcome_OUTCOME_INCONCLUSIVE:
		t.Errorf("result %s: inconclusive: %s", res.GetId(), v.GetExplanation())
	}
	t.Logf("%s: %s: %s", res.GetExperiment(), v.GetOutcome(), v.GetExplanation())
}

// poll checks cond every 20 ms until it holds or limit has passed, and
// says whether it held at the last check.
func poll(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// start runs labctl in the background with the test's directories, its
// stdout and stderr to out (which may be nil); it is killed at cleanup if
// still running.
func (c *cli) start(out io.Writer, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// interrupt sends SIGINT to a background run and returns how it exited; a
// run still going 20 s later is killed and fails the test, with its output
// when out is not nil.
func interrupt(t *testing.T, cmd *exec.Cmd, out fmt.Stringer) error {
	t.Helper()
	if err := cmd.Process.Signal(unix.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		msg := "the run still going 20s after SIGINT"
		if out != nil {
			msg += ":\n" + out.String()
		}
		t.Fatal(msg)
		return nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// labFile copies an example topology under a name of the test's own, with
// the replacements given (old, new, ...), and brings the lab down at
// cleanup (and checks it is gone).
func (c *cli) labFile(example string, replace ...string) (lab, path string) {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "topologies", "examples", example+".yaml"))
	if err != nil {
		c.t.Fatal(err)
	}
	lab = labtest.Lab()
	text := regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllString(string(data), "name: "+lab)
	for i := 0; i+1 < len(replace); i += 2 {
		text = strings.ReplaceAll(text, replace[i], replace[i+1])
	}
	dir := c.t.TempDir()
	path = filepath.Join(dir, lab+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
	// The files it refers to (a conflist) go beside it.
	others, _ := filepath.Glob(filepath.Join("..", "topologies", "examples", example+".*"))
	for _, f := range others {
		if filepath.Ext(f) == ".yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	c.t.Cleanup(func() {
		c.run("down", lab)
		assertGone(c.t, lab)
	})
	return lab, path
}

// up brings up a lab of the test's own from an example (see labFile).
func (c *cli) up(example string, replace ...string) (lab, path string) {
	c.t.Helper()
	lab, path = c.labFile(example, replace...)
	c.ok("up", path, "-q")
	return lab, path
}

// assertGone checks that nothing carrying the lab's marker is left.
func assertGone(t *testing.T, lab string) {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if l, _, ok := topologies.ParseNamespace(name); ok && l == lab {
			t.Errorf("namespace %s is left after down", name)
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	if bytes.Contains(links, []byte("labctl:"+lab)) {
		t.Errorf("an interface with the marker of lab %s is left in the host:\n%s", lab, links)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mounts, []byte("/run/netns/"+topologies.NamespacePrefix+lab+".")) {
		t.Errorf("a namespace mount of lab %s is left", lab)
	}
	procs, _ := exec.Command("pgrep", "-f", "agent --lab "+lab+" ").Output()
	if len(bytes.TrimSpace(procs)) > 0 {
		t.Errorf("agent processes of lab %s are left: %s", lab, procs)
	}
}

// inNode runs a command in a node's namespace with the real tools.
func inNode(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %v: %v\n%s", ns, args, err, out)
	}
	return string(out)
}

// TestExamplesUpVerifyDown brings each example up and checks with ip,
// ethtool, tc, sysctl and nft, inside the namespaces, that everything the
// plan declares is in place; then that traffic passes, that a second up
// changes nothing, and that down leaves nothing behind.
func TestExamplesUpVerifyDown(t *testing.T) {
	for _, ex := range []string{"quickstart", "routed", "capture-order", "busy-poll", "paths"} {
		t.Run(ex, func(t *testing.T) {
			c := newCLI(t)
			var replace []string
			if ex == "paths" {
				replace = standInNIC(t)
			}
			lab, file := c.labFile(ex, replace...)
			var plan topologies.Plan
			c.json(&plan, "plan", file)
			c.ok("up", file, "-q")
			verifyPlan(t, &plan)
			for _, p := range pings[ex] {
				inNode(t, topologies.Namespace(lab, p.from), "ping", "-c1", "-W2", p.to)
			}
			if out := c.ok("up", file, "-q"); !strings.Contains(out, "no changes") {
				t.Errorf("second up changed something:\n%s", out)
			}
			if drift := c.status(lab).GetDrift(); len(drift) > 0 {
				t.Errorf("drift right after up: %v", drift)
			}
			for _, f := range []string{"mermaid", "dot"} {
				if out := c.ok("graph", lab, "-f", f); !strings.Contains(out, plan.Nodes[0].Name) {
					t.Errorf("graph -f %s does not show node %s", f, plan.Nodes[0].Name)
				}
			}
			c.ok("down", lab, "-q")
			assertGone(t, lab)
			if ex == "paths" {
				// The moved NIC is back in the host with its address.
				out, _ := exec.Command("ip", "-br", "addr", "show", replace[1]).CombinedOutput()
				if !strings.Contains(string(out), "198.19.254.1/24") {
					t.Errorf("stand-in NIC not restored: %s", out)
				}
			}
		})
	}
}

type ping struct{ from, to string }

// pings cross each kind of path of the examples: veth, router, bridge,
// macvlan to a moved NIC.
var pings = map[string][]ping{
	"quickstart":    {{"n1", "198.18.0.2"}},
	"routed":        {{"h1", "198.18.2.2"}, {"h1", "2001:db8:2::2"}},
	"capture-order": {{"tx", "198.18.0.2"}},
	"busy-poll":     {{"client", "198.18.0.2"}, {"client", "198.18.0.6"}},
	"paths":         {{"n1", "198.18.0.2"}, {"n1", "198.18.0.6"}, {"n1", "198.19.255.4"}},
}

// standInNIC makes a veth pair in the host as a stand-in for the paths
// example's NIC (there is no dummy or netdevsim here), under names of the
// test's own, with an address on the end the lab moves that a move must
// restore. It returns the replacements for labFile; replace[1] is the end
// with the address.
func standInNIC(t *testing.T) (replace []string) {
	t.Helper()
	nic := "lt" + randomHex(3)
	a, b, addr := nic+"a", nic+"b", "198.19.254.1/24"
	for _, args := range [][]string{
		{"link", "add", a, "type", "veth", "peer", "name", b},
		{"link", "set", a, "alias", labtest.Marker()}, // for the sweep, if the test dies
		{"addr", "add", addr, "dev", b},
		{"link", "set", a, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", a).Run() })
	return []string{"labnic0p", b, "labnic0", a}
}

// verifyPlan checks the kernel against every address, MTU, offload, qdisc,
// route, sysctl and firewall rule of the plan, with the real tools.
func verifyPlan(t *testing.T, p *topologies.Plan) {
	t.Helper()
	for _, l := range p.Links {
		for _, e := range l.Ends {
			if e.Node == "" {
				continue
			}
			out := inNode(t, e.Namespace, "ip", "-o", "addr", "show", "dev", e.Name)
			for _, a := range e.Addresses {
				if !strings.Contains(out, a.String()) {
					t.Errorf("%s %s: address %s missing:\n%s", e.Namespace, e.Name, a, out)
				}
			}
			if e.MTU != 0 {
				if link := inNode(t, e.Namespace, "ip", "-o", "link", "show", "dev", e.Name); !strings.Contains(link, fmt.Sprintf("mtu %d ", e.MTU)) {
					t.Errorf("%s %s: mtu %d missing:\n%s", e.Namespace, e.Name, e.MTU, link)
				}
			}
			if len(e.Offloads) > 0 {
				k := inNode(t, e.Namespace, "ethtool", "-k", e.Name)
				for _, o := range e.Offloads {
					long := map[string]string{"gro": "generic-receive-offload", "gso": "generic-segmentation-offload", "tso": "tcp-segmentation-offload"}[o.Name]
					want := fmt.Sprintf("%s: %s", long, map[bool]string{true: "on", false: "off"}[o.On])
					if long != "" && !strings.Contains(k, want) {
						t.Errorf("%s %s: offload %q not set", e.Namespace, e.Name, want)
					}
				}
			}
			if e.Qdisc != nil {
				if q := inNode(t, e.Namespace, "tc", "qdisc", "show", "dev", e.Name); !strings.Contains(q, "qdisc "+e.Qdisc.Kind) {
					t.Errorf("%s %s: qdisc %s missing:\n%s", e.Namespace, e.Name, e.Qdisc.Kind, q)
				}
			}
		}
	}
	for _, n := range p.Nodes {
		for _, r := range n.Routes {
			fam := "-4"
			if r.Dst.Addr().Is6() {
				fam = "-6"
			}
			out := inNode(t, n.Namespace, "ip", fam, "route", "show")
			dst := r.Dst.String()
			if r.Dst.Bits() == 0 {
				dst = "default"
			}
			if !strings.Contains(out, dst+" via "+r.Via.String()) {
				t.Errorf("node %s: route %s via %s missing:\n%s", n.Name, dst, r.Via, out)
			}
		}
		for _, s := range n.Sysctls {
			if got := strings.TrimSpace(inNode(t, n.Namespace, "sysctl", "-n", s.Key)); got != s.Value {
				t.Errorf("node %s: sysctl %s = %q, want %q", n.Name, s.Key, got, s.Value)
			}
		}
		if len(n.Firewall) > 0 {
			rules := inNode(t, n.Namespace, "nft", "list", "table", "inet", "labctl")
			for _, r := range n.Firewall {
				want := fmt.Sprintf("dport %s", r.Dport)
				if !strings.Contains(rules, want) || !strings.Contains(rules, r.Action) {
					t.Errorf("node %s: rule %s %s %s missing:\n%s", n.Name, r.Chain, want, r.Action, rules)
				}
			}
		}
	}
}

// TestFailedUpLeavesNothing: the sysctl net.core.busy_read is global, so
// it does not exist in a node's namespace; up fails after it has made the
// namespaces and links, and must roll all of them back.
func TestFailedUpLeavesNothing(t *testing.T) {
	c := newCLI(t)
	lab, file := c.labFile("quickstart", "  n2: {}", "  n2:\n    sysctls: {net.core.busy_read: 50}")
	r := c.run("up", file, "-q")
	if r.code != 1 || !strings.Contains(r.stderr, "busy_read") {
		t.Fatalf("up: exit %d, stderr %q; want exit 1 naming the sysctl", r.code, r.stderr)
	}
	assertGone(t, lab)
	if out := c.ok("status"); strings.Contains(out, lab) {
		t.Errorf("status lists the failed lab:\n%s", out)
	}
}

// TestBadTopologyChangesNothing: exit 2, the place in the file, no state.
func TestBadTopologyChangesNothing(t *testing.T) {
	c := newCLI(t)
	lab, file := c.labFile("quickstart", "[n1:eth0, n2:eth0]", "[n1:eth0, n3:eth0]")
	r := c.run("up", file)
	if r.code != 2 || !regexp.MustCompile(`\.yaml:\d+:\d+: links\[0\]\.endpoints\[1\]\.node`).MatchString(r.stderr) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	assertGone(t, lab)
}

// TestKilledUpIsCleanedByDown kills up with SIGKILL at several points of a
// 30-node linear lab and checks that down removes everything.
func TestKilledUpIsCleanedByDown(t *testing.T) {
	c := newCLI(t)
	for _, after := range []int{1, 40, 120} {
		t.Run(fmt.Sprintf("after %d journal records", after), func(t *testing.T) {
			lab := labtest.Lab()
			file := filepath.Join(t.TempDir(), "linear.yaml")
			if err := os.WriteFile(file, examples.Linear(lab, 30, false), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(c.bin, "up", file, "-q")
			cmd.Env = c.env
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			journal := filepath.Join(envValue(c.env, "LABCTL_STATE_DIR"), "labs", lab, "journal.jsonl")
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if b, err := os.ReadFile(journal); err == nil && bytes.Count(b, []byte("\n")) >= after {
					break
				}
				time.Sleep(time.Millisecond)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			c.ok("down", lab, "-q")
			assertGone(t, lab)
		})
	}
}

func envValue(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

// TestDownWithoutState: down --lab finds a lab by its markers when the
// state directory is gone.
func TestDownWithoutState(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	if err := os.RemoveAll(envValue(c.env, "LABCTL_STATE_DIR")); err != nil {
		t.Fatal(err)
	}
	c.ok("down", "--lab", lab, "-q")
	assertGone(t, lab)
}

// TestConcurrentUpOfOneLabIsLocked: while another labctl holds the lab's
// lock (here the test, as a second process would), up fails at once with a
// lock error and changes nothing.
func TestConcurrentUpOfOneLabIsLocked(t *testing.T) {
	c := newCLI(t)
	lab, file := c.labFile("quickstart")
	dir := filepath.Join(envValue(c.env, "LABCTL_STATE_DIR"), "labs", lab)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	r := c.run("up", file, "-q")
	f.Close()
	if r.code == 0 || !strings.Contains(r.stderr, "locked") {
		t.Errorf("up under another's lock: exit %d, stderr %q; want a lock error", r.code, r.stderr)
	}
	assertGone(t, lab)
	c.ok("up", file, "-q") // and once the lock is free, up works
}

var shortRR = []string{"-p", "duration=300ms", "-p", "warmup=50ms", "-p", "repeats=2"}

func checkRR(t *testing.T, r *experimentv1.Result) {
	t.Helper()
	completed(t, r, 2)
	want := map[string][]string{
		"client": {"rtt_p50_ns", "rtt_p90_ns", "rtt_p99_ns", "rtt_p999_ns", "rtt_p9999_ns", "msgs_per_s", "cpu_ns_per_msg", "vcsw_per_msg", "ivcsw_per_msg"},
		"server": {"cpu_ns_per_msg", "vcsw_per_msg", "ivcsw_per_msg"},
	}
	for _, s := range r.GetSteps() {
		if len(s.GetReports()) != 2 {
			t.Fatalf("step has %d reports", len(s.GetReports()))
		}
		for _, rep := range s.GetReports() {
			for _, m := range want[rep.GetRole()] {
				if _, ok := rep.GetMetrics()[m]; !ok {
					t.Errorf("%s report lacks %s", rep.GetRole(), m)
				}
			}
		}
	}
}

// TestAgentsServeRunAndRecover: up starts agents that serve at once; rr
// runs through them and stores a complete result; a killed agent shows in
// status, makes runs fail with Unavailable naming its node, and is
// restarted by up; down leaves no agent and no socket.
func TestAgentsServeRunAndRecover(t *testing.T) {
	c := newCLI(t)
	lab, file := c.up("quickstart")
	st := c.status(lab)
	for _, n := range st.GetNodes() {
		if a := n.GetAgent(); a.GetHealth() != "SERVING" || a.GetVersion() != "e2e" {
			t.Fatalf("node %s: agent %v right after up", n.GetName(), a)
		}
		info, err := os.Stat(n.GetAgent().GetSocket())
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("node %s: socket %s: %v, mode %v; want 0600", n.GetName(), n.GetAgent().GetSocket(), err, info.Mode().Perm())
		}
	}
	t.Run("reflection", func(t *testing.T) {
		out, err := exec.Command(grpcurl(t), "-plaintext", "-unix", st.GetNodes()[0].GetAgent().GetSocket(), "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "labctl.agent.v1.AgentService") || !strings.Contains(string(out), "grpc.health.v1.Health") {
			t.Errorf("grpcurl list: %v\n%s", err, out)
		}
	})

	res := c.result(append([]string{"run", "rr", lab, "--client", "n1", "--server", "n2", "-q"}, shortRR...)...)
	checkRR(t, res)
	if shown := c.result("results", "show", res.GetId()); shown.GetId() != res.GetId() {
		t.Errorf("results show %s gave %s", res.GetId(), shown.GetId())
	}
	if out := c.ok("results", "list"); !strings.Contains(out, res.GetId()) {
		t.Errorf("results list lacks %s:\n%s", res.GetId(), out)
	}

	// Kill n2's agent.
	pid := int(st.GetNodes()[1].GetAgent().GetPid())
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for unix.Kill(pid, 0) == nil {
		time.Sleep(5 * time.Millisecond)
	}
	killed := time.Now()
	st = c.status(lab)
	t.Logf("status after the kill answered in %v", time.Since(killed))
	if h := st.GetNodes()[1].GetAgent().GetHealth(); h == "SERVING" {
		t.Errorf("status shows the killed agent %s", h)
	}
	if len(st.GetDrift()) == 0 {
		t.Error("status shows no drift with a dead agent")
	}
	r := c.run(append([]string{"run", "rr", lab, "-q"}, shortRR...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "node n2") || !strings.Contains(r.stderr, "Unavailable") {
		t.Errorf("run with a dead agent: exit %d, stderr %q; want Unavailable naming n2", r.code, r.stderr)
	}
	if out := c.ok("up", file); !strings.Contains(out, "agents started") || !strings.Contains(out, "n2") {
		t.Errorf("up did not restart the agent:\n%s", out)
	}
	if h := c.status(lab).GetNodes()[1].GetAgent().GetHealth(); h != "SERVING" {
		t.Errorf("after up: agent of n2 is %s", h)
	}
	c.ok("down", lab, "-q")
	assertGone(t, lab)
	entries, _ := os.ReadDir(filepath.Join(envValue(c.env, "LABCTL_RUN_DIR"), lab))
	if len(entries) > 0 {
		t.Errorf("down left files in the run directory: %v", entries)
	}
}

// grpcurl builds the grpcurl pinned in tools/proto once.
func grpcurl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(labctlBinary(t)), "grpcurl")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	out, err := exec.Command("go", "build", "-C", "../tools/proto", "-o", bin, "github.com/fullstorydev/grpcurl/cmd/grpcurl").CombinedOutput()
	if err != nil {
		t.Fatalf("build grpcurl: %v\n%s", err, out)
	}
	return bin
}

// serve starts labctl serve with a token of its own, stopped at cleanup,
// and returns it with the flags that reach it.
func (c *cli) serve() (srv *exec.Cmd, remote []string) {
	t := c.t
	t.Helper()
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(randomHex(24)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	srv = exec.Command(c.bin, "serve", "--listen", addr, "--token-file", token)
	srv.Env = c.env
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(unix.SIGTERM)
		_ = srv.Wait()
		t.Logf("serve log:\n%s", log.String())
	})
	waitPort(t, addr)
	return srv, []string{"--server", addr, "--token-file", token}
}

// TestRemoteAPI: labctl serve with a token; without it or with a wrong one
// every call is refused; with it, runs stream and store their results, for
// 20 clients at once.
func TestRemoteAPI(t *testing.T) {
	c := newCLI(t)
	lab, file := c.up("quickstart")
	_, remote := c.serve()
	addr := remote[1]
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte(randomHex(24)), 0o600); err != nil {
		t.Fatal(err)
	}

	calls := [][]string{{"status"}, {"status", lab}, {"results", "list"}, {"run", "--list"}, append([]string{"run", "rr", lab}, shortRR...), {"down", lab}, {"up", file}}
	for _, creds := range [][]string{nil, {"--token-file", wrong}} {
		for _, call := range calls {
			args := append(append([]string{"--server", addr}, creds...), call...)
			r := c.run(args...)
			if r.code == 0 || !strings.Contains(r.stderr, "Unauthenticated") {
				t.Errorf("labctl %v: exit %d, stderr %q; want Unauthenticated", args, r.code, r.stderr)
			}
		}
	}
	checkRR(t, c.result(append(append(remote, "run", "rr", lab, "--server", "n2", "-q"), shortRR...)...))

	const clients = 20
	var wg sync.WaitGroup
	results := make([]ran, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.run(append(remote, "run", "rr", lab, "-q", "-o", "json", "-p", "duration=200ms", "-p", "warmup=20ms", "-p", "repeats=1")...)
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	for i, r := range results {
		rr := &experimentv1.Result{}
		if r.code != 0 || decodeMessage(r.stdout, rr) != nil || rr.GetState() != experimentv1.RunState_RUN_STATE_COMPLETED ||
			len(rr.GetSteps()) != 1 || len(rr.GetSteps()[0].GetReports()) != 2 {
			t.Errorf("client %d: exit %d, state %q, stderr %q", i, r.code, rr.GetState(), r.stderr)
			continue
		}
		ids[rr.GetId()] = true
	}
	if len(ids) != clients {
		t.Errorf("%d distinct results for %d clients", len(ids), clients)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitPort(t *testing.T, addr string) {
	t.Helper()
	listens := poll(5*time.Second, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if !listens {
		t.Fatalf("nothing listens on %s", addr)
	}
}
