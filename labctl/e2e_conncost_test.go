package main

import (
	"bufio"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
)

// TestConnCostOnQuickstart opens 1,000 and 4,000 connections between the
// nodes of quickstart, idle and with epoll and a byte each, twice (20,000
// connections in all), and checks the stored result: every step's
// evidence says the connections were in the states the snapshots assume,
// the fits per slab line are there for each kind, and the verdict is
// judged.
func TestConnCostOnQuickstart(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	res := c.result("run", "conn-cost", lab, "--client", "n1", "--server", "n2", "-q",
		"-p", "counts=1000,4000", "-p", "variants=idle,epoll+byte", "-p", "repeats=2", "-p", "max_repeats=2", "-p", "hold=0s")
	completed(t, res, 8)
	for _, s := range res.GetSteps() {
		params := s.GetStep().GetParams()
		n, _ := strconv.ParseFloat(params["counts"], 64)
		withExtras := params["variants"] == "epoll+byte"
		want := map[string]float64{
			"client_established": n, "client_fin_wait2": n, "client_time_wait": n, "time_wait_destroyed": n,
			"server_established": n, "server_close_wait": n, "server_left": 0, "server_unread_bytes": 0,
		}
		if withExtras {
			want["server_unread_bytes"] = n
			want["client_epoll_registrations"] = n
			want["server_epoll_registrations"] = n
		}
		for name, w := range want {
			// Either role's report may hold it.
			var v float64
			var ok bool
			for _, r := range s.GetReports() {
				if x, found := report.EvidenceValue(r, name); found {
					v, ok = x, true
				}
			}
			if !ok || v != w {
				t.Errorf("%s: evidence %s = %v (present %v), want %v", s.GetStep().GetVariant(), name, v, ok, w)
			}
		}
	}
	fits := 0
	for _, row := range res.GetSummary() {
		if !strings.HasSuffix(row.GetVariant(), " fit") {
			continue
		}
		fits++
		if row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
			t.Errorf("%s: %s %s", row.GetVariant(), row.GetEngagement(), row.GetNote())
		}
		// Slope, intercept and R² per slab line and kind, over both
		// repeats. What they weigh is host-wide, so measured, not
		// asserted (another test's connections move the same slabs).
		for _, kind := range []string{"pair", "server_end", "client_end", "time_wait"} {
			for _, series := range []string{"TCP", "tw_sock_TCP", "sock_inode_cache", "conn_caches", "all_slab"} {
				for _, suffix := range []string{"_bytes", "_intercept_bytes", "_r2"} {
					key := "fit." + kind + "." + series + suffix
					if m, ok := row.GetMetrics()[key]; !ok || m.GetN() != 2 {
						t.Errorf("%s: %s = %v, want 2 repeats", row.GetVariant(), key, m)
					}
				}
			}
		}
	}
	if fits != 2 {
		t.Errorf("%d fit rows, want 2", fits)
	}
	if v := res.GetVerdict(); v.GetClaim() != "C13" || !strings.Contains(v.GetExplanation(), "per ESTABLISHED socket") ||
		v.GetOutcome() == experimentv1.Outcome_OUTCOME_NOT_ENGAGED || v.GetOutcome() == experimentv1.Outcome_OUTCOME_UNSPECIFIED {
		t.Errorf("verdict %v", v)
	}
	connNoSockets(t, lab)
}

// connNodeSettings reads what conn-limits changes in quickstart's nodes.
func connNodeSettings(t *testing.T, lab string) string {
	t.Helper()
	n1, n2 := topologies.Namespace(lab, "n1"), topologies.Namespace(lab, "n2")
	return strings.Join([]string{
		inNode(t, n1, "cat", "/proc/sys/net/ipv4/ip_local_port_range"),
		inNode(t, n2, "cat", "/proc/sys/net/core/somaxconn"),
		inNode(t, n1, "ip", "-4", "-o", "addr", "show"),
		inNode(t, n2, "ip", "route", "show"),
	}, "\n")
}

// connNoSockets fails if a TCP socket is left in a node (the agents talk
// over Unix sockets: the nodes hold none of their own).
func connNoSockets(t *testing.T, lab string) {
	t.Helper()
	for _, node := range []string{"n1", "n2"} {
		if out := inNode(t, topologies.Namespace(lab, node), "ss", "-Htan", "state", "all"); strings.TrimSpace(out) != "" {
			t.Errorf("node %s: sockets left:\n%.500s", node, out)
		}
	}
}

// TestConnLimitsOnQuickstart brings each limit within reach with small
// values, checks that each refused where the limit in force says, and
// that every setting is back afterwards, also after a run cancelled in
// the middle of a scenario.
func TestConnLimitsOnQuickstart(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	before := connNodeSettings(t, lab)
	res := c.result("run", "conn-limits", lab, "--client", "n1", "--server", "n2", "-q",
		"-p", "scenarios=nofile,ports,sources,backlog", "-p", "max_conns=3000", "-p", "nofile=256", "-p", "port_range=200",
		"-p", "sources=2", "-p", "somaxconn=16", "-p", "repeats=1")
	completed(t, res, 4)
	conns := map[string]float64{}
	for _, s := range res.GetSteps() {
		if r := report.ReportOf(s, "client"); r != nil {
			conns[s.GetStep().GetVariant()] = r.GetMetrics()["conns"]
		}
	}
	// Ports: one per connection to one server port; three source
	// addresses triple that; the backlog queues somaxconn+1.
	if conns["ports"] != 200 || conns["sources"] != 600 || conns["backlog"] != 17 || conns["nofile"] <= 0 || conns["nofile"] >= 256 {
		t.Errorf("connections per scenario: %v", conns)
	}
	for _, row := range res.GetSummary() {
		if row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_ENGAGED {
			t.Errorf("%s: %s %s", row.GetVariant(), row.GetEngagement(), row.GetNote())
		}
	}
	if v := res.GetVerdict(); v.GetClaim() != "C14" || v.GetOutcome() != experimentv1.Outcome_OUTCOME_HOLDS || !strings.Contains(v.GetExplanation(), "3.0-fold") {
		t.Errorf("verdict %v", v)
	}
	if after := connNodeSettings(t, lab); after != before {
		t.Errorf("settings after the run:\n%s\nwant\n%s", after, before)
	}
	connNoSockets(t, lab)

	// Cancel while scenario sources opens connections from five addresses
	// with a wide port range.
	cmd := exec.Command(c.bin, "run", "conn-limits", lab, "-p", "scenarios=sources", "-p", "sources=4", "-p", "port_range=25000",
		"-p", "max_conns=100000", "-p", "repeats=1")
	cmd.Env = c.env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	opening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), "sources: opening up to") {
				seen = true
				opening <- true
			}
		}
		if !seen {
			opening <- false
		}
	}()
	if !<-opening {
		_ = cmd.Wait()
		t.Fatal("the run ended before it opened connections")
	}
	time.Sleep(300 * time.Millisecond)
	if err := interrupt(t, cmd, nil); err == nil {
		t.Fatal("the run survived SIGINT")
	}
	// The CLI is gone once its stream ends; the agents restore the
	// settings when the cancelled roles return, moments later.
	var after string
	poll(10*time.Second, func() bool { after = connNodeSettings(t, lab); return after == before })
	if after != before {
		t.Errorf("settings after the cancelled run:\n%s\nwant\n%s", after, before)
	}
	connNoSockets(t, lab)
}
