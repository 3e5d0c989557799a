package main

// End-to-end tests of io-models, tcp-low-latency and sndbuf on the
// quickstart lab (two nodes, one veth pair), with small parameters.

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// median of a summary metric of a variant, failing when it is missing.
func median(t *testing.T, res *experimentv1.Result, variant, metric string) float64 {
	t.Helper()
	m, ok := report.Row(res.GetSummary(), variant).GetMetrics()[metric]
	if !ok {
		t.Fatalf("result %s has no %s for %s", res.GetId(), metric, variant)
	}
	return m.GetMedian()
}

func TestIOModelsEndToEnd(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")

	t.Run("io-models", func(t *testing.T) {
		res := c.result("run", "io-models", lab, "--client", "n1", "--server", "n2", "-q",
			"-p", "models=blocking,spin,poll,epoll-lt,epoll-et,uring", "-p", "protocols=tcp,udp", "-p", "idle=0,100",
			"-p", "repeats=2", "-p", "duration=150ms", "-p", "warmup=20ms")
		variants := report.Variants(res.GetSteps())
		if res.GetState() != experimentv1.RunState_RUN_STATE_COMPLETED || len(variants) != 15 {
			t.Fatalf("result %s: state %s, %d variants, want 15", res.GetId(), res.GetState(), len(variants))
		}
		for _, s := range res.GetSteps() {
			v := s.GetStep().GetVariant()
			server, client := report.ReportOf(s, "server"), report.ReportOf(s, "client")
			if ok, _ := report.EvidenceValue(server, "supported"); ok != 1 {
				t.Errorf("%s: the server did not serve the model: %v", v, server.GetNotes())
				continue
			}
			sm, cm := server.GetMetrics(), client.GetMetrics()
			// Both sides counted the same measured messages.
			if sm["messages"] == 0 || sm["messages"] != cm["messages"] {
				t.Errorf("%s: server measured %v messages, client %v", v, sm["messages"], cm["messages"])
			}
			// The agent's process makes at least the calls the loop counts.
			if own, proc := sm["syscalls_per_msg"], sm["process_syscalls_per_msg"]; own <= 0 || proc < own {
				t.Errorf("%s: loop counted %.2f syscalls per message, the process %.2f", v, own, proc)
			}
			want := 1.0
			if strings.Contains(v, "/idle=") {
				want = 101
			}
			if n, _ := report.EvidenceValue(server, "watched_descriptors"); n != want {
				t.Errorf("%s: the server watched %v descriptors, want %v", v, n, want)
			}
		}
		// C8 as the verdict says it must agree with the blocking server's
		// switches. How often recv sleeps depends on the load: with the
		// CPUs busy (CI beside other jobs, scripts/stress.sh) the next
		// request is often queued before recv is called, so recv does not
		// sleep, and the verdict must then not say C8 holds.
		blocking, spin := median(t, res, "blocking/tcp", "server.vcsw_per_msg"), median(t, res, "spin/tcp", "server.vcsw_per_msg")
		switch explanation := res.GetVerdict().GetExplanation(); {
		case strings.Contains(explanation, "C8 HOLDS"):
			if blocking < 0.9 || blocking <= 2*spin {
				t.Errorf("C8 holds with the blocking server at %.3f voluntary switches per message and spin at %.3f", blocking, spin)
			}
		case blocking >= 0.9:
			t.Errorf("the blocking server slept on %.3f of messages, yet C8 does not hold: %s", blocking, explanation)
		case !strings.Contains(explanation, "recv did not sleep") && !strings.Contains(explanation, "recv almost never slept"):
			t.Errorf("C8 does not hold without saying why: %s", explanation)
		}
		for _, proto := range []string{"tcp", "udp"} {
			// System calls per message follow from the loops: one
			// io_uring_enter; recv+send; a wait more for level-triggered
			// epoll. Edge-triggered epoll's recv that drains the socket
			// often finds the next request and saves the wait, so it only
			// has recv+send for sure.
			calls := map[string]float64{}
			for _, m := range []string{"uring", "blocking", "epoll-lt", "epoll-et"} {
				calls[m] = median(t, res, m+"/"+proto, "server.syscalls_per_msg")
			}
			if !(calls["uring"] < calls["blocking"] && calls["blocking"] < calls["epoll-lt"] && calls["blocking"] <= calls["epoll-et"]) {
				t.Errorf("%s: syscalls per message %v", proto, calls)
			}
		}
		for _, m := range []string{"poll", "epoll-lt"} {
			if median(t, res, m+"/tcp/idle=100", "server.wait_ns_per_call") <= 0 {
				t.Errorf("%s with 100 idle connections reports no cost per readiness check", m)
			}
		}
		if v := res.GetVerdict(); !strings.Contains(v.GetClaim(), "C8") || !strings.Contains(v.GetClaim(), "C9") || !strings.Contains(v.GetClaim(), "C15") {
			t.Errorf("verdict on %q: %s", v.GetClaim(), v.GetExplanation())
		}
	})

	t.Run("tcp-low-latency", func(t *testing.T) {
		orig := hostTCPLowLatency(t)
		res := c.result("run", "tcp-low-latency", lab, "-q", "-p", "repeats=2", "-p", "duration=300ms", "-p", "warmup=50ms")
		completed(t, res, 4)
		if res.GetVerdict().GetClaim() != "C3" {
			t.Fatalf("result %s: verdict %v", res.GetId(), res.GetVerdict())
		}
		for _, s := range res.GetSteps() {
			v := s.GetStep().GetVariant()
			if got, ok := report.EvidenceValue(report.ReportOf(s, "server"), "tcp_low_latency"); !ok || "tcp_low_latency="+strconv.Itoa(int(got)) != v {
				t.Errorf("%s: the server read back %v", v, got)
			}
		}
		if got := hostTCPLowLatency(t); got != orig {
			t.Errorf("net.ipv4.tcp_low_latency is %s after the run, was %s", got, orig)
		}
	})

	t.Run("tcp-low-latency cancelled", func(t *testing.T) {
		orig := hostTCPLowLatency(t)
		var out bytes.Buffer
		cmd := c.start(&out, "run", "tcp-low-latency", lab, "-q", "-p", "repeats=2", "-p", "duration=3s", "-p", "warmup=0s")
		// The steps alternate 0 and 1: wait for the one that changes the
		// host's value, then interrupt the CLI in the middle of it.
		changed := poll(20*time.Second, func() bool { return hostTCPLowLatency(t) != orig })
		if err := interrupt(t, cmd, &out); err == nil {
			t.Errorf("run survived SIGINT:\n%s", out.String())
		}
		if !changed {
			t.Fatalf("the run never changed net.ipv4.tcp_low_latency from %s:\n%s", orig, out.String())
		}
		// The agent restores the setting when the cancelled role returns,
		// which may be just after the CLI exits.
		if !poll(10*time.Second, func() bool { return hostTCPLowLatency(t) == orig }) {
			t.Errorf("net.ipv4.tcp_low_latency is %s after the cancelled run, was %s", hostTCPLowLatency(t), orig)
		}
	})

	t.Run("sndbuf", func(t *testing.T) {
		res := c.result("run", "sndbuf", lab, "-q", "-p", "repeats=2", "-p", "stall=150ms")
		completed(t, res, 4)
		if res.GetVerdict().GetClaim() != "C17" {
			t.Fatalf("result %s: verdict %v", res.GetId(), res.GetVerdict())
		}
		for _, s := range res.GetSteps() {
			server, client := report.ReportOf(s, "server"), report.ReportOf(s, "client")
			sm, cm := server.GetMetrics(), client.GetMetrics()
			switch s.GetStep().GetVariant() {
			case "nonblocking":
				if errno, _ := report.EvidenceValue(client, "send_errno"); syscall.Errno(errno) != syscall.EAGAIN {
					t.Errorf("non-blocking send stopped with errno %v, want EAGAIN", syscall.Errno(errno))
				}
				if sm["bytes_read"] != cm["accepted_bytes"] || cm["first_eagain_bytes"] <= 0 {
					t.Errorf("accepted %v (first EAGAIN after %v), the reader read %v", cm["accepted_bytes"], cm["first_eagain_bytes"], sm["bytes_read"])
				}
			case "blocking":
				if cm["blocked_ns"] <= 0 || cm["bytes_before_block"] <= 0 || sm["bytes_read"] != cm["sent_bytes"] {
					t.Errorf("blocking send: %v; reader: %v", cm, sm)
				}
			}
		}
		if median(t, res, "blocking", "client.blocked_until_release_ns") <= 0 {
			t.Error("no send was found asleep when the reader began reading")
		}
	})
}

// hostTCPLowLatency reads the global sysctl in the host's namespace (the
// test's own), the only one that has it.
func hostTCPLowLatency(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_low_latency")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
