package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/topologies"
)

// crashTopology has something of every kind up makes: two nodes with
// agents on busy-poll's links (offloads set), and without agents a router
// with a sysctl, a route and an nft rule, and two nodes on a bridge.
func crashTopology(lab string) string {
	return `name: ` + lab + `
nodes:
  client: {}
  server: {}
  r:
    agent: false
    sysctls: {net.ipv4.ip_forward: 1}
    firewall:
      - {chain: input, proto: udp, dport: 9000, action: drop}
  b1: {agent: false}
  b2:
    agent: false
    routes:
      - {dst: 198.18.211.0/24, via: r:br0}
links:
  - endpoints: [client:napi0, server:napi0]
    offloads: {gro: on, tso: off}
  - endpoints: [client:plain0, server:plain0]
  - endpoints:
      - {node: client, interface: eth1, addresses: [198.18.211.2/24]}
      - {node: r, interface: eth1, addresses: [198.18.211.1/24]}
  - type: bridge
    name: br0
    endpoints:
      - {node: r, interface: br0, addresses: [198.18.210.1/24]}
      - {node: b1, interface: eth0, addresses: [198.18.210.2/24]}
      - {node: b2, interface: eth0, addresses: [198.18.210.3/24]}
`
}

// crashSeed fixes the kill points (LABCTL_CRASH_SEED to try others).
func crashSeed(t *testing.T) uint64 {
	seed := uint64(1)
	if s := os.Getenv("LABCTL_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LABCTL_CRASH_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("crash matrix seed %d (LABCTL_CRASH_SEED)", seed)
	return seed
}

// points picks n distinct kill points in [lo, hi], in order.
func points(rng *rand.Rand, n, lo, hi int) []int {
	if hi-lo+1 <= n {
		var all []int
		for i := lo; i <= hi; i++ {
			all = append(all, i)
		}
		return all
	}
	seen := map[int]bool{}
	for len(seen) < n {
		seen[lo+rng.IntN(hi-lo+1)] = true
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// hostSettings are the host-wide settings runs change.
func hostSettings(t *testing.T) string {
	return hostSysctls(t, "busy_read", "busy_poll", "netdev_max_backlog")
}

// hostSysctls reads net.core sysctls of the host, as "key=value ...".
func hostSysctls(t *testing.T, keys ...string) string {
	t.Helper()
	var out []string
	for _, k := range keys {
		b, err := os.ReadFile("/proc/sys/net/core/" + k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(out, " ")
}

// lines counts the records of a journal file.
func lines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte("\n"))
}

// killAt starts labctl with args and kills it with SIGKILL once at(cmd)
// says so (polled every millisecond, 30 s at most); it returns whether the
// command was still running when it was killed.
func (c *cli) killAt(at func() bool, args ...string) bool {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		select {
		case <-exited:
			return false
		default:
		}
		if at() {
			break
		}
	}
	_ = cmd.Process.Signal(unix.SIGKILL)
	<-exited
	return true
}

// assertClean checks that nothing of lab is left and the host's settings
// are as before: namespaces, interfaces, mounts and agents (assertGone),
// settings journals in the run directory, leases still holding a change,
// and pinned BPF objects.
func (c *cli) assertClean(lab, before string) {
	c.t.Helper()
	assertGone(c.t, lab)
	if got := hostSettings(c.t); got != before {
		c.t.Errorf("host settings %s, before %s", got, before)
	}
	if j, _ := filepath.Glob(filepath.Join(envValue(c.env, "LABCTL_RUN_DIR"), lab, "settings", "*", "*.settings.jsonl")); len(j) > 0 {
		c.t.Errorf("settings journals left: %v", j)
	}
	leases, _ := filepath.Glob("/run/labctl/leases/*.lease")
	for _, l := range leases {
		if b, _ := os.ReadFile(l); len(bytes.TrimSpace(b)) > 0 && bytes.Contains(b, []byte(lab)) {
			c.t.Errorf("lease %s still records a change: %s", l, b)
		}
	}
	if pins, _ := os.ReadDir("/sys/fs/bpf"); len(pins) > 0 {
		for _, p := range pins {
			if strings.Contains(p.Name(), "labctl") {
				c.t.Errorf("pinned BPF object left: %s", p.Name())
			}
		}
	}
}

// TestCrashMatrix kills labctl with SIGKILL at points of up, down and run
// (while host and node settings are changed), and an agent in the middle of
// a role, at points a fixed seed picks; after each, up and down converge
// and nothing is left.
func TestCrashMatrix(t *testing.T) {
	c := newCLI(t)
	rng := rand.New(rand.NewPCG(crashSeed(t), 0))
	before := hostSettings(t)
	file := func(lab string) string {
		path := filepath.Join(t.TempDir(), lab+".yaml")
		if err := os.WriteFile(path, []byte(crashTopology(lab)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.run("down", lab, "-q") })
		return path
	}
	journal := func(lab string) string {
		return filepath.Join(envValue(c.env, "LABCTL_STATE_DIR"), "labs", lab, "journal.jsonl")
	}
	agentPids := func(lab string) int {
		m, _ := filepath.Glob(filepath.Join(envValue(c.env, "LABCTL_RUN_DIR"), lab, "*.pid"))
		return len(m)
	}

	// How many records a whole up writes, to spread the kills over.
	probe := labtest.Lab()
	c.ok("up", file(probe), "-q")
	records := lines(journal(probe))
	// And a whole down: it appends to the journal, then removes it.
	most, stop := records, make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			most = max(most, lines(journal(probe)))
			time.Sleep(200 * time.Microsecond)
		}
	}()
	c.ok("down", probe, "-q")
	close(stop)
	<-watched
	downRecords := most - records
	c.assertClean(probe, before)
	t.Logf("a whole up writes %d journal records, a down %d or more", records, downRecords)

	t.Run("up", func(t *testing.T) {
		// 18 kills while up makes objects, 2 while it starts agents.
		var at []string
		for _, n := range points(rng, 18, 1, records) {
			at = append(at, fmt.Sprint(n))
		}
		at = append(at, "agents 0", "agents 1")
		for _, point := range at {
			t.Run(point, func(t *testing.T) {
				lab := labtest.Lab()
				path := file(lab)
				cond := func() bool { n, _ := strconv.Atoi(point); return lines(journal(lab)) >= n }
				if k, ok := strings.CutPrefix(point, "agents "); ok {
					want, _ := strconv.Atoi(k)
					cond = func() bool { return lines(journal(lab)) >= records && agentPids(lab) >= want }
				}
				if !c.killAt(cond, "up", path, "-q") {
					t.Logf("up ended before the kill point")
				}
				// Converge: down alone, or up again (which must give a
				// working lab) and then down.
				if rng.IntN(2) == 0 {
					c.ok("up", path, "-q")
					if st := c.status(lab); len(st.GetDrift()) > 0 {
						t.Errorf("drift after up converged: %v", st.GetDrift())
					}
					inNode(t, topologies.Namespace(lab, "b2"), "ping", "-c1", "-W5", "198.18.211.1") // r's eth1, across the bridge, by the route
				}
				c.ok("down", lab, "-q")
				c.assertClean(lab, before)
			})
		}
	})

	t.Run("down", func(t *testing.T) {
		for _, n := range points(rng, 10, 0, max(downRecords-1, 1)) {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				lab := labtest.Lab()
				c.ok("up", file(lab), "-q")
				upRecords := lines(journal(lab))
				if !c.killAt(func() bool { return lines(journal(lab)) >= upRecords+n }, "down", lab, "-q") {
					t.Logf("down ended before the kill point")
				}
				c.ok("down", lab, "-q")
				c.assertClean(lab, before)
			})
		}
	})

	// One lab for the runs: each is killed while its roles have changed
	// host and node settings; the agents put them back when their calls
	// are cut, and up and down still converge.
	lab := labtest.Lab()
	path := file(lab)
	c.ok("up", path, "-q")
	nodesBefore := settingsState(t, lab)
	set := func() bool {
		return strings.Count(settingsState(t, lab), ",xdp,") == 2 && hostSettings(t) != before
	}
	settled := func() bool {
		j, _ := filepath.Glob(filepath.Join(envValue(c.env, "LABCTL_RUN_DIR"), lab, "settings", "*", "*.settings.jsonl"))
		return len(j) == 0 && settingsState(t, lab) == nodesBefore && hostSettings(t) == before
	}
	runArgs := []string{"run", "busy-poll", lab, "--client", "client", "--server", "server", "-q",
		"-p", "devices=veth-xdp", "-p", "mechanisms=busy_read,busy_poll", "-p", "timeouts=40us",
		"-p", "repeats=3", "-p", "duration=400ms", "-p", "warmup=0s"}

	t.Run("run", func(t *testing.T) {
		for i := range 10 {
			delay := time.Duration(rng.IntN(1200)) * time.Millisecond
			t.Run(fmt.Sprintf("%d after %v", i, delay), func(t *testing.T) {
				var since time.Time
				if !c.killAt(func() bool {
					if since.IsZero() && set() {
						since = time.Now()
					}
					return !since.IsZero() && time.Since(since) >= delay
				}, runArgs...) {
					t.Logf("the run ended before the kill point")
				}
				if !poll(20*time.Second, settled) {
					t.Fatalf("settings not restored after the kill:\nbefore %s %s\nafter  %s %s", before, nodesBefore, hostSettings(t), settingsState(t, lab))
				}
				c.ok("up", path, "-q")
				if st := c.status(lab); len(st.GetDrift()) > 0 {
					t.Errorf("drift: %v", st.GetDrift())
				}
			})
		}
	})

	t.Run("agent", func(t *testing.T) {
		for range 4 {
			role := []string{"server", "client"}[rng.IntN(2)]
			delay := time.Duration(rng.IntN(800)) * time.Millisecond
			t.Run(fmt.Sprintf("%s after %v", role, delay), func(t *testing.T) {
				cmd := c.start(nil, runArgs...)
				if !poll(20*time.Second, set) {
					t.Fatal("timed out waiting for the run's settings")
				}
				time.Sleep(delay)
				pid := 0
				for _, n := range c.status(lab).GetNodes() {
					if n.GetName() == role {
						pid = int(n.GetAgent().GetPid())
					}
				}
				if pid <= 0 {
					t.Fatalf("no pid for the %s's agent", role)
				}
				if err := unix.Kill(pid, unix.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				// The dead agent's journal waits for the next agent of its
				// node, which up starts.
				c.ok("up", path, "-q")
				if !poll(20*time.Second, settled) {
					t.Fatalf("settings not restored after up restarted the agent:\nbefore %s %s\nafter  %s %s", before, nodesBefore, hostSettings(t), settingsState(t, lab))
				}
			})
		}
	})

	c.ok("down", lab, "-q")
	c.assertClean(lab, before)
}
