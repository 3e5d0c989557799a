package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
)

// TestZerocopyOnQuickstart runs a reduced sweep over quickstart's veth pair
// and over loopback inside n1, and checks that the stored evidence is
// consistent: the kernel completed every zero-copy send and flagged every
// one copied (both links deliver to a local socket), the rows say so, the
// egress device is the one the link implies, and the receiver's byte
// accounting adds up.
func TestZerocopyOnQuickstart(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	res := c.result("run", "zerocopy", lab, "--client", "n1", "--server", "n2", "-q",
		"-p", "send=write,msg_zerocopy,sendfile,uring_send_zc", "-p", "recv=read,tcp_zerocopy", "-p", "sizes=64KiB",
		"-p", "link=lab,loopback", "-p", "repeats=2", "-p", "duration=150ms", "-p", "warmup=30ms", "-p", "file_size=4MiB")
	completed(t, res, 2*4*2*2)
	for _, s := range res.GetSteps() {
		variant := s.GetStep().GetVariant()
		link, rest, _ := strings.Cut(variant, "/")
		send, recv, _ := strings.Cut(rest, "/")
		recv, _, _ = strings.Cut(recv, "/")
		for _, r := range s.GetReports() {
			ev := func(name string) float64 {
				v, _ := report.EvidenceValue(r, name)
				return v
			}
			// What the evidence names (a device, a reason) is in its detail.
			detail := func(name string) string {
				for _, e := range r.GetEvidence() {
					if e.GetName() == name {
						return e.GetDetail()
					}
				}
				return ""
			}
			m := r.GetMetrics()
			if _, ok := report.EvidenceValue(r, "unsupported"); ok {
				if send == "uring_send_zc" {
					continue // the unit tests report io_uring's absence
				}
				t.Fatalf("%s %s: unsupported: %s", variant, r.GetRole(), detail("unsupported"))
			}
			switch r.GetRole() {
			case "client":
				if m["sent_bytes"] <= 0 || m["throughput_bps"] <= 0 || m["cpu_ns_per_byte"] <= 0 {
					t.Errorf("%s: client metrics %v", variant, m)
				}
				wantDev := map[string]string{"veth": "eth0", "lo": "lo"}[link]
				if !strings.HasSuffix(detail("egress_tx_bytes"), ": "+wantDev) || ev("egress_sg") != 1 {
					t.Errorf("%s: egress %q, scatter-gather %v; want %s with scatter-gather", variant, detail("egress_tx_bytes"), ev("egress_sg"), wantDev)
				}
				if send == "msg_zerocopy" || send == "uring_send_zc" {
					// The kernel's completions against the sends: all
					// completed, all copied, over veth and loopback alike.
					if ev("zc_sends") == 0 || ev("zc_completed") != ev("zc_sends") || ev("zc_copied") != ev("zc_completed") || m["copied_ratio"] != 1 {
						t.Errorf("%s: sends %v, completed %v, copied %v, copied_ratio %v", variant, ev("zc_sends"), ev("zc_completed"), ev("zc_copied"), m["copied_ratio"])
					}
				}
			case "server":
				got := m["received_bytes"]
				if got <= 0 {
					t.Errorf("%s: server received %v bytes", variant, got)
				}
				if recv == "tcp_zerocopy" && ev("mapped_bytes")+ev("copied_bytes") != got {
					t.Errorf("%s: mapped %v + copied %v != received %v", variant, ev("mapped_bytes"), ev("copied_bytes"), got)
				}
			}
		}
	}
	for _, row := range res.GetSummary() {
		if strings.Contains(row.GetVariant(), "/msg_zerocopy/read/") &&
			(row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED || !strings.Contains(row.GetNote(), "zero-copy not achieved on this path")) {
			t.Errorf("%s: %s, %q; want not engaged, zero-copy not achieved", row.GetVariant(), row.GetEngagement(), row.GetNote())
		}
	}
	for _, v := range []string{"veth/sendfile/read/64KiB", "lo/sendfile/read/64KiB"} {
		if e := report.Row(res.GetSummary(), v).GetEngagement(); e != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
			t.Errorf("%s: %s, want engaged (scatter-gather on the egress device)", v, e)
		}
	}
	if v := res.GetVerdict(); v.GetClaim() != "C11" || !strings.Contains(v.GetExplanation(), "MSG_ZEROCOPY: zero-copy not achieved on this path") {
		t.Errorf("verdict %v", v)
	}
	leftovers(t)
}

// TestZerocopyCancel interrupts a long run in the middle of a zero-copy
// step: the run is stored as cancelled, the agents still serve (no role
// hangs waiting for completions) and no file is left.
func TestZerocopyCancel(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	var out bytes.Buffer
	cmd := c.start(&out, "run", "zerocopy", lab, "-q", "-o", "json",
		"-p", "send=msg_zerocopy,uring_send_zc", "-p", "sizes=1MiB", "-p", "duration=1m", "-p", "warmup=0s", "-p", "repeats=1")
	time.Sleep(1500 * time.Millisecond)
	if err := interrupt(t, cmd, &out); err == nil {
		t.Fatalf("run survived SIGINT:\n%s", out.String())
	}
	list := &labv1.ListResultsResponse{}
	c.message(list, "results", "list")
	found := false
	for _, r := range list.GetResults() {
		if r.GetExperiment() == "zerocopy" {
			found = true
			if r.GetState() != experimentv1.RunState_RUN_STATE_CANCELLED {
				t.Errorf("result %s: %s, want cancelled", r.GetId(), r.GetState())
			}
		}
	}
	if !found {
		t.Errorf("no zerocopy result stored: %v", list)
	}
	for _, n := range c.status(lab).GetNodes() {
		if h := n.GetAgent().GetHealth(); h != "SERVING" {
			t.Errorf("node %s: agent %s after the cancel", n.GetName(), h)
		}
	}
	leftovers(t)
}

// leftovers fails if a client's file is still in the temp directory (the
// agents share the host's).
func leftovers(t *testing.T) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(os.TempDir(), "labctl-zerocopy-*"))
	if len(left) > 0 {
		t.Errorf("files left behind: %v", left)
	}
}
