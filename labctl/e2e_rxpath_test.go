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

	"github.com/labctl/labctl/topologies"
)

// rxResult is the part of a stored result these tests read.
type rxResult struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Steps []struct {
		Step struct {
			Variant string `json:"variant"`
		} `json:"step"`
		Reports []rxReport `json:"reports"`
	} `json:"steps"`
	Summary []struct {
		Variant    string `json:"variant"`
		Engagement string `json:"engagement"`
		Note       string `json:"note"`
	} `json:"summary"`
	Verdict struct {
		Claim       string `json:"claim"`
		Outcome     string `json:"outcome"`
		Explanation string `json:"explanation"`
	} `json:"verdict"`
}

type rxReport struct {
	Role     string             `json:"role"`
	Node     string             `json:"node"`
	Metrics  map[string]float64 `json:"metrics"`
	Notes    []string           `json:"notes"`
	Evidence []struct {
		Name  string  `json:"name"`
		Value float64 `json:"value"`
	} `json:"evidence"`
}

func (r rxReport) evidence(name string) (float64, bool) {
	for _, e := range r.Evidence {
		if e.Name == name {
			return e.Value, true
		}
	}
	return 0, false
}

// reports maps each role of a step to its report.
func (r rxResult) reports(step int) map[string]rxReport {
	m := map[string]rxReport{}
	for _, rep := range r.Steps[step].Reports {
		m[rep.Role] = rep
	}
	return m
}

func (r rxResult) completed(t *testing.T, steps int) {
	t.Helper()
	if r.State != "RUN_STATE_COMPLETED" || len(r.Steps) != steps {
		t.Fatalf("result %s: state %s, %d steps, want %d", r.ID, r.State, len(r.Steps), steps)
	}
	for _, row := range r.Summary {
		if row.Engagement == "" || row.Engagement == "ENGAGEMENT_UNSPECIFIED" {
			t.Errorf("summary row %s has no engagement", row.Variant)
		}
	}
}

// TestPathsEndToEnd runs paths on a copy of the paths example with a
// stand-in NIC of the test's own: own-IP traffic must show on lo and not on
// the node's lab interfaces, each other path on its own device.
func TestPathsEndToEnd(t *testing.T) {
	c := newCLI(t)
	nic := "lt" + randomHex(3)
	standIn(t, nic+"a", nic+"b", "198.19.254.1/24")
	lab, file := c.labFile(examplePath("paths"), "labnic0p", nic+"b", "labnic0", nic+"a")
	c.ok("up", file, "-q")

	var res rxResult
	c.json(&res, "run", "paths", lab, "--client", "n1", "-q",
		"-p", "duration=100ms", "-p", "warmup=20ms", "-p", "bulk_duration=100ms", "-p", "repeats=2")
	// loopback, own-ip, veth, bridge, macvlan; no nic path from n1.
	res.completed(t, 5*2)
	// The device each path must use in the client's node (n1) and the
	// server's.
	want := map[string][2]string{
		"loopback": {"lo", "lo"}, "own-ip": {"lo", "lo"},
		"veth": {"veth0", "veth0"}, "bridge": {"br0", "br0"}, "macvlan": {"mv0", "nic0"},
	}
	for i, s := range res.Steps {
		dev, ok := want[s.Step.Variant]
		if !ok {
			t.Errorf("unexpected variant %s", s.Step.Variant)
			continue
		}
		reps := res.reports(i)
		for j, role := range []string{"client", "server"} {
			r := reps[role]
			packets := map[string]float64{}
			var total float64
			for _, e := range r.Evidence {
				if name, ok := strings.CutPrefix(e.Name, "link_packets:"); ok {
					packets[name] = e.Value
					total += e.Value
				}
			}
			if total == 0 || packets[dev[j]] < 0.99*total {
				t.Errorf("%s %s on %s: %s carried %v of %v packets (%v)", s.Step.Variant, role, r.Node, dev[j], packets[dev[j]], total, packets)
			}
			// The claim's evidence: own-IP packets are not on the veth.
			if s.Step.Variant == "own-ip" && packets["veth0"] > 0.01*packets["lo"] {
				t.Errorf("own-ip: veth0 carried %v packets beside lo's %v", packets["veth0"], packets["lo"])
			}
		}
		if reps["client"].Metrics["rtt_p50_ns"] <= 0 || reps["sink"].Metrics["throughput_bps"] <= 0 {
			t.Errorf("%s: rtt_p50_ns %v, throughput_bps %v", s.Step.Variant, reps["client"].Metrics["rtt_p50_ns"], reps["sink"].Metrics["throughput_bps"])
		}
	}
	for _, row := range res.Summary {
		if row.Engagement != "ENGAGEMENT_ENGAGED" {
			t.Errorf("%s: %s (%s)", row.Variant, row.Engagement, row.Note)
		}
	}
	if res.Verdict.Claim != "C12" || !strings.Contains(res.Verdict.Explanation, "went over lo") || !strings.Contains(res.Verdict.Explanation, "no nic path") {
		t.Errorf("verdict %+v", res.Verdict)
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
	lab, file := c.labFile(examplePath("capture-order"))
	c.ok("up", file, "-q")
	_, noTcpdump := exec.LookPath("tcpdump")

	for _, rules := range []string{"topology", "run"} {
		t.Run(rules, func(t *testing.T) {
			var res rxResult
			c.json(&res, "run", "capture-order", lab, "--client", "tx", "--server", "rx", "-q",
				"-p", "count=200", "-p", "repeats=1", "-p", "rules="+rules, "-p", "input_port=9000", "-p", "output_port=9001")
			res.completed(t, 2)
			for i, s := range res.Steps {
				reps := res.reports(i)
				cl, sv := reps["client"].Metrics, reps["server"].Metrics
				rule := sv["rule_packets"]
				want := map[string][2]float64{ // metric: got, want
					"sent":      {cl["sent_packets"], 200},
					"delivered": {sv["delivered_packets"], 0},
				}
				switch s.Step.Variant {
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
						t.Errorf("%s drop: %s %v, want %v", s.Step.Variant, what, v[0], v[1])
					}
				}
			}
			if res.Verdict.Claim != "C7" || res.Verdict.Outcome != "OUTCOME_HOLDS" {
				t.Errorf("verdict %+v", res.Verdict)
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
	lab, file := c.labFile(examplePath("busy-poll"))
	c.ok("up", file, "-q")
	before := rxSoftirqSettings(t, lab)

	var res rxResult
	c.json(&res, "run", "softirq", lab, "--client", "client", "--server", "server", "-q",
		"-p", "variants=load,rps-backlog", "-p", "rates=20000,0", "-p", "duration=100ms", "-p", "flood_duration=100ms",
		"-p", "baseline=20ms", "-p", "backlog=7", "-p", "repeats=1")
	res.completed(t, 2*3)
	if after := rxSoftirqSettings(t, lab); after != before {
		t.Errorf("settings changed by the run:\nbefore %s\nafter  %s", before, after)
	}
	for i, s := range res.Steps {
		reps := res.reports(i)
		sv, cl := reps["server"], reps["client"]
		// A packet the backlog refuses is counted by the veth as the
		// sender's tx_dropped, not as received.
		sent := cl.Metrics["sent_packets"]
		if sent == 0 || sv.Metrics["link_rx_packets"]+cl.Metrics["link_tx_dropped"] < sent {
			t.Errorf("%s: sent %v, the server's link received %v, the client's dropped %v", s.Step.Variant, sent,
				sv.Metrics["link_rx_packets"], cl.Metrics["link_tx_dropped"])
		}
		for _, m := range []string{"net_rx_softirqs", "napi_polls", "softnet_processed"} {
			if sv.Metrics[m] < sent/64 {
				t.Errorf("%s: %s grew by %v for %v datagrams", s.Step.Variant, m, sv.Metrics[m], sent)
			}
		}
		if sv.Metrics["iface_irqs"] != 0 {
			t.Errorf("%s: %v interrupts for a veth", s.Step.Variant, sv.Metrics["iface_irqs"])
		}
		napi, _ := sv.evidence("napi_id")
		switch {
		case strings.HasPrefix(s.Step.Variant, "napi0/") && !strings.Contains(s.Step.Variant, "rps"):
			if sv.Metrics["device_polls"] == 0 || napi == 0 {
				t.Errorf("%s: device polls %v, napi_id %v; want napi0's own NAPI", s.Step.Variant, sv.Metrics["device_polls"], napi)
			}
		case strings.HasPrefix(s.Step.Variant, "plain0/"):
			if sv.Metrics["device_polls"] != 0 || sv.Metrics["backlog_polls"] == 0 || napi != 0 {
				t.Errorf("%s: device polls %v, backlog polls %v, napi_id %v; want the backlog", s.Step.Variant,
					sv.Metrics["device_polls"], sv.Metrics["backlog_polls"], napi)
			}
		}
		if strings.Contains(s.Step.Variant, "+rps+backlog=7") {
			if b, _ := sv.evidence("netdev_max_backlog"); b != 7 || sv.Metrics["received_rps"] == 0 {
				t.Errorf("%s: netdev_max_backlog %v, received_rps %v", s.Step.Variant, b, sv.Metrics["received_rps"])
			}
		}
	}
	if !strings.Contains(res.Verdict.Claim, "C4") || !strings.Contains(res.Verdict.Explanation, "plain0: the per-CPU backlog") ||
		!strings.Contains(res.Verdict.Explanation, "napi0: its own NAPI") {
		t.Errorf("verdict %+v", res.Verdict)
	}

	// An interrupted flood with RPS and a small backlog: every setting is
	// back once the CLI has exited.
	cmd := exec.Command(c.bin, "run", "softirq", lab, "--client", "client", "--server", "server", "-q",
		"-p", "variants=rps-backlog", "-p", "flood_duration=1s", "-p", "backlog=13", "-p", "repeats=5", "-p", "baseline=0s")
	cmd.Env = c.env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasPrefix(rxSoftirqSettings(t, lab), "backlog=13 ") {
		if time.Now().After(deadline) {
			t.Fatal("the run never set netdev_max_backlog to 13")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(unix.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the interrupted run exited 0")
	}
	for deadline := time.Now().Add(10 * time.Second); rxSoftirqSettings(t, lab) != before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if after := rxSoftirqSettings(t, lab); after != before {
		t.Errorf("settings after the interrupted run:\nbefore %s\nafter  %s", before, after)
	}
}
