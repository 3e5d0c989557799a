package main

// End-to-end tests of the receive-path experiments paths, capture-order and
// softirq: each runs with small parameters on its example topology, and the
// stored result's evidence must agree with itself and with the kernel.

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
)

// rxCompleted fails the test unless the run completed with as many steps
// as given and every summary row says whether it engaged.
func rxCompleted(t *testing.T, res *experimentv1.Result, steps int) {
	t.Helper()
	completed(t, res, steps)
	for _, row := range res.GetSummary() {
		if row.GetEngagement() == experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED {
			t.Errorf("summary row %s has no engagement", row.GetVariant())
		}
	}
}

// TestPathsEndToEnd runs paths on a copy of the paths example with a
// stand-in NIC of the test's own: own-IP traffic must show on lo and not on
// the node's lab interfaces, each other path on its own device.
func TestPathsEndToEnd(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("paths", standInNIC(t)...)

	res := c.result("run", "paths", lab, "--client", "n1", "-q",
		"-p", "duration=100ms", "-p", "warmup=20ms", "-p", "bulk_duration=100ms", "-p", "repeats=2")
	// loopback, own-ip, veth, bridge, macvlan; no nic path from n1.
	rxCompleted(t, res, 5*2)
	// The device each path must use in the client's node (n1) and the
	// server's.
	want := map[string][2]string{
		"loopback": {"lo", "lo"}, "own-ip": {"lo", "lo"},
		"veth": {"veth0", "veth0"}, "bridge": {"br0", "br0"}, "macvlan": {"mv0", "nic0"},
	}
	for _, s := range res.GetSteps() {
		variant := s.GetStep().GetVariant()
		dev, ok := want[variant]
		if !ok {
			t.Errorf("unexpected variant %s", variant)
			continue
		}
		for j, role := range []string{"client", "server"} {
			r := report.ReportOf(s, role)
			packets := map[string]float64{}
			var total float64
			for _, e := range r.GetEvidence() {
				if name, ok := strings.CutPrefix(e.GetName(), "link_packets:"); ok {
					packets[name] = e.GetValue()
					total += e.GetValue()
				}
			}
			if total == 0 || packets[dev[j]] < 0.99*total {
				t.Errorf("%s %s on %s: %s carried %v of %v packets (%v)", variant, role, r.GetNode(), dev[j], packets[dev[j]], total, packets)
			}
			// The claim's evidence: own-IP packets are not on the veth.
			if variant == "own-ip" && packets["veth0"] > 0.01*packets["lo"] {
				t.Errorf("own-ip: veth0 carried %v packets beside lo's %v", packets["veth0"], packets["lo"])
			}
		}
		rtt := report.ReportOf(s, "client").GetMetrics()["rtt_p50_ns"]
		throughput := report.ReportOf(s, "sink").GetMetrics()["throughput_bps"]
		if rtt <= 0 || throughput <= 0 {
			t.Errorf("%s: rtt_p50_ns %v, throughput_bps %v", variant, rtt, throughput)
		}
	}
	for _, row := range res.GetSummary() {
		if row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
			t.Errorf("%s: %s (%s)", row.GetVariant(), row.GetEngagement(), row.GetNote())
		}
	}
	if v := res.GetVerdict(); v.GetClaim() != "C12" || !strings.Contains(v.GetExplanation(), "went over lo") || !strings.Contains(v.GetExplanation(), "no nic path") {
		t.Errorf("verdict %v", v)
	}
}

// rxTables lists the nftables tables of a node.
func rxTables(t *testing.T, lab, node string) string {
	t.Helper()
	return inNode(t, topologies.Namespace(lab, node), "nft", "list", "tables")
}

// TestCaptureOrderEndToEnd runs capture-order on the capture-order example,
// with the topology's rules and with rules made for the run.
func TestCaptureOrderEndToEnd(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("capture-order")
	_, noTcpdump := exec.LookPath("tcpdump")

	for _, rules := range []string{"topology", "run"} {
		t.Run(rules, func(t *testing.T) {
			res := c.result("run", "capture-order", lab, "--client", "tx", "--server", "rx", "-q",
				"-p", "count=200", "-p", "repeats=1", "-p", "rules="+rules, "-p", "input_port=9000", "-p", "output_port=9001")
			rxCompleted(t, res, 2)
			for _, s := range res.GetSteps() {
				variant := s.GetStep().GetVariant()
				cl, sv := report.ReportOf(s, "client").GetMetrics(), report.ReportOf(s, "server").GetMetrics()
				rule := sv["rule_packets"]
				want := map[string][2]float64{ // metric: got, want
					"sent":      {cl["sent_packets"], 200},
					"delivered": {sv["delivered_packets"], 0},
				}
				switch variant {
				case "input":
					want["captured at rx"] = [2]float64{sv["captured_packets"], 200}
					want["on tx's wire"] = [2]float64{cl["wire_packets"], 200}
					want["sent ok"] = [2]float64{cl["send_ok_packets"], 200}
				case "output":
					rule = cl["rule_packets"]
					want["EPERM"] = [2]float64{cl["send_eperm_packets"], 200}
					want["captured at rx"] = [2]float64{sv["captured_packets"], 0}
					want["on tx's wire"] = [2]float64{cl["wire_packets"], 0}
				}
				want["rule"] = [2]float64{rule, 200}
				if noTcpdump == nil {
					want["tcpdump at rx"] = [2]float64{sv["tcpdump_packets"], want["captured at rx"][1]}
					want["tcpdump at tx"] = [2]float64{cl["tcpdump_packets"], want["on tx's wire"][1]}
				}
				for what, v := range want {
					if v[0] != v[1] {
						t.Errorf("%s drop: %s %v, want %v", variant, what, v[0], v[1])
					}
				}
			}
			if v := res.GetVerdict(); v.GetClaim() != "C7" || v.GetOutcome() != experimentv1.Outcome_OUTCOME_HOLDS {
				t.Errorf("verdict %v", v)
			}
			for _, node := range []string{"tx", "rx"} {
				if tables := rxTables(t, lab, node); strings.Contains(tables, "labctl_capture") {
					t.Errorf("node %s: the run's table is left:\n%s", node, tables)
				}
			}
		})
	}
}

// rxSoftirqSettings is every setting softirq may change: the host's
// netdev_max_backlog, RPS and UDP GRO forwarding of the server's links.
func rxSoftirqSettings(t *testing.T, lab string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
	if err != nil {
		t.Fatal(err)
	}
	parts := []string{"backlog=" + strings.TrimSpace(string(b))}
	ns := topologies.Namespace(lab, "server")
	for _, dev := range []string{"napi0", "plain0"} {
		rps := inNode(t, ns, "sh", "-c", "cat /sys/class/net/"+dev+"/queues/rx-*/rps_cpus")
		fwd := "udp-gro-fwd-off"
		if strings.Contains(inNode(t, ns, "ethtool", "-k", dev), "rx-udp-gro-forwarding: on") {
			fwd = "udp-gro-fwd-on"
		}
		parts = append(parts, dev+":rps="+strings.Join(strings.Fields(rps), ",")+","+fwd)
	}
	return strings.Join(parts, " ")
}

// TestSoftirqEndToEnd runs a reduced softirq on the busy-poll example: the
// counters must have seen the datagrams, napi0 (GRO) its own NAPI and
// plain0 the backlog, and every setting must be back afterwards, also when
// the run is interrupted mid-step.
func TestSoftirqEndToEnd(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("busy-poll")
	before := rxSoftirqSettings(t, lab)

	res := c.result("run", "softirq", lab, "--client", "client", "--server", "server", "-q",
		"-p", "variants=load,rps-backlog", "-p", "rates=20000,0", "-p", "duration=100ms", "-p", "flood_duration=100ms",
		"-p", "baseline=20ms", "-p", "backlog=7", "-p", "repeats=1")
	rxCompleted(t, res, 2*3)
	if after := rxSoftirqSettings(t, lab); after != before {
		t.Errorf("settings changed by the run:\nbefore %s\nafter  %s", before, after)
	}
	for _, s := range res.GetSteps() {
		variant := s.GetStep().GetVariant()
		server := report.ReportOf(s, "server")
		sv, cl := server.GetMetrics(), report.ReportOf(s, "client").GetMetrics()
		// A packet the backlog refuses is counted by the veth as the
		// sender's tx_dropped, not as received.
		sent := cl["sent_packets"]
		if sent == 0 || sv["link_rx_packets"]+cl["link_tx_dropped"] < sent {
			t.Errorf("%s: sent %v, the server's link received %v, the client's dropped %v", variant, sent,
				sv["link_rx_packets"], cl["link_tx_dropped"])
		}
		for _, m := range []string{"net_rx_softirqs", "napi_polls", "softnet_processed"} {
			if sv[m] < sent/64 {
				t.Errorf("%s: %s grew by %v for %v datagrams", variant, m, sv[m], sent)
			}
		}
		if sv["iface_irqs"] != 0 {
			t.Errorf("%s: %v interrupts for a veth", variant, sv["iface_irqs"])
		}
		napi, _ := report.EvidenceValue(server, "napi_id")
		switch {
		case strings.HasPrefix(variant, "napi0/") && !strings.Contains(variant, "rps"):
			if sv["device_polls"] == 0 || napi == 0 {
				t.Errorf("%s: device polls %v, napi_id %v; want napi0's own NAPI", variant, sv["device_polls"], napi)
			}
		case strings.HasPrefix(variant, "plain0/"):
			if sv["device_polls"] != 0 || sv["backlog_polls"] == 0 || napi != 0 {
				t.Errorf("%s: device polls %v, backlog polls %v, napi_id %v; want the backlog", variant,
					sv["device_polls"], sv["backlog_polls"], napi)
			}
		}
		if strings.Contains(variant, "+rps+backlog=7") {
			if b, _ := report.EvidenceValue(server, "netdev_max_backlog"); b != 7 || sv["received_rps"] == 0 {
				t.Errorf("%s: netdev_max_backlog %v, received_rps %v", variant, b, sv["received_rps"])
			}
		}
	}
	if v := res.GetVerdict(); !strings.Contains(v.GetClaim(), "C4") || !strings.Contains(v.GetExplanation(), "plain0: the per-CPU backlog") ||
		!strings.Contains(v.GetExplanation(), "napi0: its own NAPI") {
		t.Errorf("verdict %v", v)
	}

	// An interrupted flood with RPS and a small backlog: every setting is
	// back once the CLI has exited.
	cmd := c.start(nil, "run", "softirq", lab, "--client", "client", "--server", "server", "-q",
		"-p", "variants=rps-backlog", "-p", "flood_duration=1s", "-p", "backlog=13", "-p", "repeats=5", "-p", "baseline=0s")
	if !poll(20*time.Second, func() bool { return strings.HasPrefix(rxSoftirqSettings(t, lab), "backlog=13 ") }) {
		t.Fatal("the run never set netdev_max_backlog to 13")
	}
	if err := cmd.Process.Signal(unix.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the interrupted run exited 0")
	}
	poll(10*time.Second, func() bool { return rxSoftirqSettings(t, lab) == before })
	if after := rxSoftirqSettings(t, lab); after != before {
		t.Errorf("settings after the interrupted run:\nbefore %s\nafter  %s", before, after)
	}
}
