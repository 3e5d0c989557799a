package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
)

// hostBusyRead reads net.core.busy_read of the host, which the experiment
// changes host-wide.
func hostBusyRead(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/busy_read")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// nodeState is what the experiment may change on the interfaces of a node,
// read with the real tools.
func nodeState(t *testing.T, lab, node string) string {
	t.Helper()
	ns := topologies.Namespace(lab, node)
	var parts []string
	for _, dev := range []string{"napi0", "plain0"} {
		k := inNode(t, ns, "ethtool", "-k", dev)
		tso := "tso-off"
		if strings.Contains(k, "tcp-segmentation-offload: on") {
			tso = "tso-on"
		}
		xdp := "no-xdp"
		if strings.Contains(inNode(t, ns, "ip", "-d", "link", "show", "dev", dev), "prog/xdp") {
			xdp = "xdp"
		}
		attrs := inNode(t, ns, "cat", "/sys/class/net/"+dev+"/napi_defer_hard_irqs", "/sys/class/net/"+dev+"/gro_flush_timeout")
		parts = append(parts, dev+":"+tso+","+xdp+",defer/flush="+strings.Join(strings.Fields(attrs), "/"))
	}
	return strings.Join(parts, " ")
}

// settingsState is every setting busy-poll touches, on both nodes and the
// host.
func settingsState(t *testing.T, lab string) string {
	return "busy_read=" + hostBusyRead(t) + " client[" + nodeState(t, lab, "client") + "] server[" + nodeState(t, lab, "server") + "]"
}

func journals(t *testing.T, c *cli, lab string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(envValue(c.env, "LABCTL_RUN_DIR"), lab, "settings", "*", "*.settings.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBusyPollEndToEnd runs busy-poll on the busy-poll example: busy
// polling must be reported not engaged on loopback and plain veth, engaged
// with NAPI ids on veth with GRO and with the XDP program, and every
// setting must be back afterwards, also when the server's agent is killed
// mid-run (restored by the next up) or the run is interrupted.
func TestBusyPollEndToEnd(t *testing.T) {
	c := newCLI(t)
	lab, file := c.up("busy-poll")
	before := settingsState(t, lab)

	res := c.result("run", "busy-poll", lab, "--client", "client", "--server", "server", "-q",
		"-p", "devices=loopback,veth,veth-gro,veth-xdp", "-p", "mechanisms=blocking,busy_read,epoll_params",
		"-p", "timeouts=100us", "-p", "repeats=3", "-p", "duration=100ms", "-p", "warmup=10ms")
	completed(t, res, 4*3*3)
	if after := settingsState(t, lab); after != before {
		t.Errorf("settings changed by the run:\nbefore %s\nafter  %s", before, after)
	}

	napiDevice := map[string]bool{"loopback": false, "veth": false, "veth-gro": true, "veth-xdp": true}
	for _, s := range res.GetSteps() {
		variant := s.GetStep().GetVariant()
		device, mech, _ := strings.Cut(variant, "/")
		for _, r := range s.GetReports() {
			ev := func(name string) float64 {
				v, _ := report.EvidenceValue(r, name)
				return v
			}
			if (ev("napi_id") != 0) != napiDevice[device] {
				t.Errorf("%s %s: napi_id %v", variant, r.GetRole(), ev("napi_id"))
			}
			if !napiDevice[device] && ev("busy_poll_rx_packets") != 0 {
				t.Errorf("%s %s: %v packets busy polled without a NAPI id", variant, r.GetRole(), ev("busy_poll_rx_packets"))
			}
			if device == "veth-gro" && (ev("gro_on") != 1 || ev("tso_on") != 0) {
				t.Errorf("%s %s: gro_on %v tso_on %v; the condition wants GRO on and TSO off", variant, r.GetRole(), ev("gro_on"), ev("tso_on"))
			}
			if messages := r.GetMetrics()["messages"]; device == "veth-xdp" && ev("xdp_packets") < messages {
				t.Errorf("%s %s: the XDP program saw %v packets for %v messages", variant, r.GetRole(), ev("xdp_packets"), messages)
			}
			if mech == "busy_read-100us" && ev("socket_busy_poll_us") != 100 {
				t.Errorf("%s %s: the socket's SO_BUSY_POLL is %v µs, want busy_read's 100", variant, r.GetRole(), ev("socket_busy_poll_us"))
			}
		}
	}
	for _, row := range res.GetSummary() {
		device, mech, _ := strings.Cut(row.GetVariant(), "/")
		if !slices.Contains([]string{"busy_read-100us", "epoll_params-100us"}, mech) {
			continue
		}
		switch e := row.GetEngagement(); {
		case !napiDevice[device] && (e != experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED || !strings.Contains(row.GetNote(), "busy polling not engaged")):
			t.Errorf("%s: %s (%s); want not engaged, said so", row.GetVariant(), e, row.GetNote())
		case napiDevice[device] && e != experimentv1.Engagement_ENGAGEMENT_ENGAGED:
			t.Errorf("%s: %s (%s); want engaged", row.GetVariant(), e, row.GetNote())
		}
	}
	if v := res.GetVerdict(); v.GetClaim() != "C1" || v.GetOutcome() == experimentv1.Outcome_OUTCOME_NOT_ENGAGED ||
		!strings.Contains(v.GetExplanation(), "not engaged on loopback, veth") {
		t.Errorf("verdict %v", v)
	}

	// Traced, each packet says who took it from its queue: on veth with
	// GRO, the receive softirq when the reader blocks, the reading thread
	// when it busy polls.
	t.Run("packets", func(t *testing.T) {
		res := c.result("run", "busy-poll", lab, "--client", "client", "--server", "server", "-q", "--trace-packets=0.2",
			"-p", "devices=veth-gro", "-p", "mechanisms=blocking,busy_read", "-p", "timeouts=100us",
			"-p", "repeats=1", "-p", "duration=100ms", "-p", "warmup=10ms")
		seen := map[string]bool{}
		for _, row := range res.GetSummary() {
			pp := row.GetPacketPath()
			busy, softirq := pp.GetPolledByBusyPoll(), pp.GetPolledInSoftirq()
			seen[row.GetVariant()] = pp.GetPackets() > 0
			t.Logf("%s: %d busy polled, %d in softirq, of %d packets", row.GetVariant(), busy, softirq, pp.GetPackets())
			if pp.GetPackets() > 0 && !slices.ContainsFunc(pp.GetStages(), func(st *experimentv1.StageTime) bool {
				return strings.HasPrefix(st.GetFrom(), "napi_gro_receive@") && strings.HasPrefix(st.GetTo(), "netif_receive_skb@")
			}) {
				t.Errorf("%s: no packet went from napi_gro_receive to netif_receive_skb: %v", row.GetVariant(), pp.GetStages())
			}
			switch _, mech, _ := strings.Cut(row.GetVariant(), "/"); mech {
			case "blocking":
				if busy != 0 || softirq == 0 {
					t.Errorf("%s: %d receptions busy polled, %d in softirq; a blocking reader polls nothing", row.GetVariant(), busy, softirq)
				}
			case "busy_read-100us":
				if busy == 0 {
					t.Errorf("%s: no reception busy polled (%d in softirq)", row.GetVariant(), softirq)
				}
			}
		}
		if !seen["veth-gro/blocking"] || !seen["veth-gro/busy_read-100us"] {
			t.Errorf("traced variants %v, want veth-gro/blocking and veth-gro/busy_read-100us", seen)
		}
		if !strings.Contains(res.GetVerdict().GetExplanation(), "busy polled") {
			t.Errorf("the verdict does not say who polled the packets: %s", res.GetVerdict().GetExplanation())
		}
	})

	// A long busy_read step on veth-gro: the server's agent sets the
	// host's busy_read and both agents take TSO off napi0.
	longRun := func(variant ...string) *exec.Cmd {
		return c.start(nil, append([]string{"run", "busy-poll", lab, "--client", "client", "--server", "server", "-q",
			"-p", "duration=5m", "-p", "warmup=0s", "-p", "repeats=1"}, variant...)...)
	}

	t.Run("SIGKILL of the server's agent", func(t *testing.T) {
		cmd := longRun("-p", "devices=veth-gro", "-p", "mechanisms=busy_read", "-p", "timeouts=77us")
		set := poll(20*time.Second, func() bool {
			s := settingsState(t, lab)
			return strings.HasPrefix(s, "busy_read=77 ") && strings.Count(s, "napi0:tso-off") == 2
		})
		if !set {
			t.Fatal("timed out waiting for busy_read=77 and TSO off on both napi0")
		}
		st := c.status(lab)
		var pid int
		for _, n := range st.GetNodes() {
			if n.GetName() == "server" {
				pid = int(n.GetAgent().GetPid())
			}
		}
		if pid <= 0 {
			t.Fatalf("no pid for the server's agent: %v", st.GetNodes())
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Error("the run succeeded though its server's agent was killed")
		}
		// What the dead agent changed is still changed, and its journal
		// says how to undo it; the client's agent, whose role was
		// cancelled, restores its own end.
		if got := hostBusyRead(t); got != "77" {
			t.Errorf("busy_read is %s right after the kill; the test expects the dead agent's change to be left for its journal", got)
		}
		if !poll(20*time.Second, func() bool { return len(journals(t, c, lab)) == 1 }) {
			t.Fatal("timed out waiting for the client's journal to be restored")
		}
		if j := journals(t, c, lab); !strings.Contains(j[0], "/server/") {
			t.Errorf("journal left after the kill: %v, want the server's", j)
		}
		c.ok("up", file, "-q") // restarts the agent, which restores the journal
		if after := settingsState(t, lab); after != before {
			t.Errorf("settings after up restarted the killed agent:\nbefore %s\nafter  %s", before, after)
		}
		if j := journals(t, c, lab); len(j) != 0 {
			t.Errorf("journals left after the restore: %v", j)
		}
	})

	// A run of busy_read on veth-xdp: the server's agent sets the host's
	// busy_read, both attach XDP.
	xdpRun := func(out *bytes.Buffer) *exec.Cmd {
		return c.start(out, "run", "busy-poll", lab, "--client", "client", "--server", "server",
			"-p", "duration=5m", "-p", "warmup=0s", "-p", "repeats=1", "-p", "devices=veth-xdp", "-p", "mechanisms=busy_read", "-p", "timeouts=66us")
	}
	xdpSet := func() bool {
		s := settingsState(t, lab)
		return strings.HasPrefix(s, "busy_read=66 ") && strings.Count(s, ",xdp,") == 2
	}

	t.Run("SIGINT of the CLI", func(t *testing.T) {
		var out bytes.Buffer
		cmd := xdpRun(&out)
		if !poll(20*time.Second, xdpSet) {
			t.Fatal("timed out waiting for busy_read=66 and XDP on both nodes")
		}
		err := interrupt(t, cmd, &out)
		if code := exitCode(err); code != exitInterrupted {
			t.Errorf("exit %d after SIGINT, want %d:\n%s", code, exitInterrupted, out.String())
		}
		// Back when the CLI exits, not some time later: it waited.
		if after := settingsState(t, lab); after != before {
			t.Errorf("settings when the CLI exited:\nbefore %s\nafter  %s", before, after)
		}
		if j := journals(t, c, lab); len(j) != 0 {
			t.Errorf("journals left: %v", j)
		}
		for _, want := range []string{"cancelling run", "stopped and restored what it changed", "every role stopped and restored what it changed"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
	})

	t.Run("a second SIGINT", func(t *testing.T) {
		var out bytes.Buffer
		cmd := xdpRun(&out)
		if !poll(20*time.Second, xdpSet) {
			t.Fatal("timed out waiting for busy_read=66 and XDP on both nodes")
		}
		if err := cmd.Process.Signal(unix.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := interrupt(t, cmd, &out)
		if code := exitCode(err); code != exitInterrupted {
			t.Errorf("exit %d after two SIGINTs, want %d:\n%s", code, exitInterrupted, out.String())
		}
		// It left at once, saying what may be left and how to restore it;
		// the agents restore as their roles stop.
		if text := out.String(); !strings.Contains(text, "labctl down "+lab) && !strings.Contains(text, "every role stopped") {
			t.Errorf("output says nothing of what is left to restore:\n%s", text)
		}
		if !poll(20*time.Second, func() bool { return settingsState(t, lab) == before && len(journals(t, c, lab)) == 0 }) {
			t.Fatalf("settings not restored after the agents stopped their roles:\nbefore %s\nafter  %s", before, settingsState(t, lab))
		}
	})
}

// TestConcurrentHostSettings: two busy-poll runs on two labs change the
// host's busy_read and busy_poll at the same time. Each change waits for
// the other's lease, and says so; afterwards both hold their values of
// before.
func TestConcurrentHostSettings(t *testing.T) {
	c := newCLI(t)
	lab1, _ := c.up("busy-poll")
	lab2, _ := c.up("busy-poll")
	before := readHostSysctls(t)
	outs := make([]bytes.Buffer, 2)
	cmds := []*exec.Cmd{}
	for i, lab := range []string{lab1, lab2} {
		cmds = append(cmds, c.start(&outs[i], "run", "busy-poll", lab, "--client", "client", "--server", "server",
			"-p", "devices=veth-gro", "-p", "mechanisms=busy_read,busy_poll", "-p", "timeouts=50us",
			"-p", "repeats=3", "-p", "duration=300ms", "-p", "warmup=10ms"))
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("run %d: %v\n%s", i+1, err, outs[i].String())
		}
	}
	if after := readHostSysctls(t); after != before {
		t.Errorf("host sysctls before %s, after %s", before, after)
	}
	waited := 0
	for i := range outs {
		if strings.Contains(outs[i].String(), "waiting for net.core.busy_") {
			waited++
		}
	}
	if waited == 0 {
		t.Errorf("neither run waited for the other's change:\n%s\n%s", outs[0].String(), outs[1].String())
	}
}

// readHostSysctls is what busy-poll runs change on the host.
func readHostSysctls(t *testing.T) string { return hostSysctls(t, "busy_read", "busy_poll") }

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
