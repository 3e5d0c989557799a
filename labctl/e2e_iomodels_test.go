package main

// End-to-end tests of io-models, tcp-low-latency and sndbuf on the
// quickstart lab (two nodes, one veth pair), with small parameters.

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// iomResult is the part of a stored result these tests read.
type iomResult struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Steps []struct {
		Step struct {
			Variant string `json:"variant"`
		} `json:"step"`
		Reports []iomReport `json:"reports"`
	} `json:"steps"`
	Summary []struct {
		Variant    string `json:"variant"`
		Engagement string `json:"engagement"`
		Note       string `json:"note"`
		Metrics    map[string]struct {
			N      int     `json:"n"`
			Median float64 `json:"median"`
			Max    float64 `json:"max"`
		} `json:"metrics"`
	} `json:"summary"`
	Verdict struct {
		Claim       string `json:"claim"`
		Outcome     string `json:"outcome"`
		Explanation string `json:"explanation"`
	} `json:"verdict"`
}

type iomReport struct {
	Role     string             `json:"role"`
	Metrics  map[string]float64 `json:"metrics"`
	Notes    []string           `json:"notes"`
	Evidence []struct {
		Name  string  `json:"name"`
		Value float64 `json:"value"`
	} `json:"evidence"`
}

func (r iomReport) evidence(name string) (float64, bool) {
	for _, e := range r.Evidence {
		if e.Name == name {
			return e.Value, true
		}
	}
	return 0, false
}

// reports returns the server and client reports of each step, by variant.
func (r iomResult) reports(t *testing.T) map[string][][2]iomReport {
	t.Helper()
	out := map[string][][2]iomReport{}
	for _, s := range r.Steps {
		var pair [2]iomReport
		for _, rep := range s.Reports {
			switch rep.Role {
			case "server":
				pair[0] = rep
			case "client":
				pair[1] = rep
			}
		}
		out[s.Step.Variant] = append(out[s.Step.Variant], pair)
	}
	return out
}

// median of a summary metric of a variant, failing when it is missing.
func (r iomResult) median(t *testing.T, variant, metric string) float64 {
	t.Helper()
	for _, row := range r.Summary {
		if row.Variant == variant {
			if m, ok := row.Metrics[metric]; ok {
				return m.Median
			}
		}
	}
	t.Fatalf("result %s has no %s for %s", r.ID, metric, variant)
	return 0
}

func TestIOModelsEndToEnd(t *testing.T) {
	c := newCLI(t)
	lab, file := c.labFile(examplePath("quickstart"))
	c.ok("up", file, "-q")

	t.Run("io-models", func(t *testing.T) {
		var res iomResult
		c.json(&res, "run", "io-models", lab, "--client", "n1", "--server", "n2", "-q",
			"-p", "models=blocking,spin,poll,epoll-lt,epoll-et,uring", "-p", "protocols=tcp,udp", "-p", "idle=0,100",
			"-p", "repeats=2", "-p", "duration=150ms", "-p", "warmup=20ms")
		variants := res.reports(t)
		if res.State != "RUN_STATE_COMPLETED" || len(variants) != 15 {
			t.Fatalf("result %s: state %s, %d variants, want 15", res.ID, res.State, len(variants))
		}
		for v, steps := range variants {
			for _, s := range steps {
				server, client := s[0], s[1]
				if ok, _ := server.evidence("supported"); ok != 1 {
					t.Errorf("%s: the server did not serve the model: %v", v, server.Notes)
					continue
				}
				// Both sides counted the same measured messages.
				if server.Metrics["messages"] == 0 || server.Metrics["messages"] != client.Metrics["messages"] {
					t.Errorf("%s: server measured %v messages, client %v", v, server.Metrics["messages"], client.Metrics["messages"])
				}
				// The agent's process makes at least the calls the loop counts.
				if own, proc := server.Metrics["syscalls_per_msg"], server.Metrics["process_syscalls_per_msg"]; own <= 0 || proc < own {
					t.Errorf("%s: loop counted %.2f syscalls per message, the process %.2f", v, own, proc)
				}
				want := 1.0
				if strings.Contains(v, "/idle=") {
					want = 101
				}
				if n, _ := server.evidence("watched_descriptors"); n != want {
					t.Errorf("%s: the server watched %v descriptors, want %v", v, n, want)
				}
			}
		}
		for _, proto := range []string{"tcp", "udp"} {
			// Relationships that hold whatever the load: a blocking recv
			// sleeps far more often than a spinning one, which never does
			// unless preempted for a page fault or the like.
			blocking, spin := res.median(t, "blocking/"+proto, "server.vcsw_per_msg"), res.median(t, "spin/"+proto, "server.vcsw_per_msg")
			if blocking <= 2*spin || blocking < 0.2 {
				t.Errorf("%s: blocking server %.3f voluntary switches per message, spin %.3f", proto, blocking, spin)
			}
			// System calls per message follow from the loops: one
			// io_uring_enter; recv+send; a wait more for level-triggered
			// epoll. Edge-triggered epoll's recv that drains the socket
			// often finds the next request and saves the wait, so it only
			// has recv+send for sure.
			calls := map[string]float64{}
			for _, m := range []string{"uring", "blocking", "epoll-lt", "epoll-et"} {
				calls[m] = res.median(t, m+"/"+proto, "server.syscalls_per_msg")
			}
			if !(calls["uring"] < calls["blocking"] && calls["blocking"] < calls["epoll-lt"] && calls["blocking"] <= calls["epoll-et"]) {
				t.Errorf("%s: syscalls per message %v", proto, calls)
			}
		}
		for _, m := range []string{"poll", "epoll-lt"} {
			if res.median(t, m+"/tcp/idle=100", "server.wait_ns_per_call") <= 0 {
				t.Errorf("%s with 100 idle connections reports no cost per readiness check", m)
			}
		}
		if !strings.Contains(res.Verdict.Claim, "C8") || !strings.Contains(res.Verdict.Claim, "C9") || !strings.Contains(res.Verdict.Claim, "C15") {
			t.Errorf("verdict on %q: %s", res.Verdict.Claim, res.Verdict.Explanation)
		}
	})

	t.Run("tcp-low-latency", func(t *testing.T) {
		orig := hostTCPLowLatency(t)
		var res iomResult
		c.json(&res, "run", "tcp-low-latency", lab, "-q", "-p", "repeats=2", "-p", "duration=300ms", "-p", "warmup=50ms")
		if res.State != "RUN_STATE_COMPLETED" || len(res.Steps) != 4 || res.Verdict.Claim != "C3" {
			t.Fatalf("result %s: state %s, %d steps, verdict %+v", res.ID, res.State, len(res.Steps), res.Verdict)
		}
		for v, steps := range res.reports(t) {
			for _, s := range steps {
				if got, ok := s[0].evidence("tcp_low_latency"); !ok || "tcp_low_latency="+strconv.Itoa(int(got)) != v {
					t.Errorf("%s: the server read back %v", v, got)
				}
			}
		}
		if got := hostTCPLowLatency(t); got != orig {
			t.Errorf("net.ipv4.tcp_low_latency is %s after the run, was %s", got, orig)
		}
	})

	t.Run("tcp-low-latency cancelled", func(t *testing.T) {
		orig := hostTCPLowLatency(t)
		cmd := exec.Command(c.bin, "run", "tcp-low-latency", lab, "-q", "-p", "repeats=2", "-p", "duration=3s", "-p", "warmup=0s")
		cmd.Env = c.env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The steps alternate 0 and 1: wait for the one that changes the
		// host's value, then interrupt the CLI in the middle of it.
		changed := iomPoll(20*time.Second, func() bool { return hostTCPLowLatency(t) != orig })
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("run survived SIGINT:\n%s", out.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("run still going 20s after SIGINT:\n%s", out.String())
		}
		if !changed {
			t.Fatalf("the run never changed net.ipv4.tcp_low_latency from %s:\n%s", orig, out.String())
		}
		// The agent restores the setting when the cancelled role returns,
		// which may be just after the CLI exits.
		if !iomPoll(10*time.Second, func() bool { return hostTCPLowLatency(t) == orig }) {
			t.Errorf("net.ipv4.tcp_low_latency is %s after the cancelled run, was %s", hostTCPLowLatency(t), orig)
		}
	})

	t.Run("sndbuf", func(t *testing.T) {
		var res iomResult
		c.json(&res, "run", "sndbuf", lab, "-q", "-p", "repeats=2", "-p", "stall=150ms")
		if res.State != "RUN_STATE_COMPLETED" || len(res.Steps) != 4 || res.Verdict.Claim != "C17" {
			t.Fatalf("result %s: state %s, %d steps, verdict %+v", res.ID, res.State, len(res.Steps), res.Verdict)
		}
		variants := res.reports(t)
		for _, s := range variants["nonblocking"] {
			server, client := s[0], s[1]
			if errno, _ := client.evidence("send_errno"); syscall.Errno(errno) != syscall.EAGAIN {
				t.Errorf("non-blocking send stopped with errno %v, want EAGAIN", syscall.Errno(errno))
			}
			if server.Metrics["bytes_read"] != client.Metrics["accepted_bytes"] || client.Metrics["first_eagain_bytes"] <= 0 {
				t.Errorf("accepted %v (first EAGAIN after %v), the reader read %v", client.Metrics["accepted_bytes"],
					client.Metrics["first_eagain_bytes"], server.Metrics["bytes_read"])
			}
		}
		for _, s := range variants["blocking"] {
			server, client := s[0], s[1]
			if client.Metrics["blocked_ns"] <= 0 || client.Metrics["bytes_before_block"] <= 0 || server.Metrics["bytes_read"] != client.Metrics["sent_bytes"] {
				t.Errorf("blocking send: %v; reader: %v", client.Metrics, server.Metrics)
			}
		}
		if res.median(t, "blocking", "client.blocked_until_release_ns") <= 0 {
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

// iomPoll polls cond every 10 ms until it holds or limit passes.
func iomPoll(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
