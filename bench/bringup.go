package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/topologies/examples"
)

// bringup compares building and removing Mininet's linear,N (N hosts, N
// Linux bridges, 2N-1 links) with labctl's same shape, with and without
// agents.
func bringup(ctx context.Context, b *bench) (string, error) {
	both, alone := []int{50, 200}, []int{1000, 2000}
	if b.quick {
		both, alone = []int{20}, []int{200}
	}
	_, mnErr := exec.LookPath("mn")
	var rows [][]string
	var ratios [][]string
	for _, n := range append(both, alone...) {
		withPeer := contains(intsToStrings(both), strconv.Itoa(n)) && mnErr == nil
		var mn, plain, agents run3
		for rep := range b.reps {
			b.log("bringup N=%d rep %d", n, rep+1)
			if withPeer {
				if err := mn.add(mininet(ctx, n)); err != nil {
					return "", err
				}
				settle()
			}
			if err := plain.add(b.linear(ctx, n, false)); err != nil {
				return "", err
			}
			settle()
			if err := agents.add(b.linear(ctx, n, true)); err != nil {
				return "", err
			}
			settle()
		}
		if withPeer {
			rows = append(rows, mn.row(n, "Mininet (lxbr, no controller)"))
		}
		rows = append(rows, plain.row(n, "labctl, no agents"), agents.row(n, "labctl, an agent per node"))
		if withPeer {
			ratios = append(ratios,
				[]string{strconv.Itoa(n), "no agents", ratio(plain.up, mn.up).cell(times), ratio(plain.down, mn.down).cell(times), ratio(mn.total(), plain.total()).cell(times)},
				[]string{strconv.Itoa(n), "with agents", ratio(agents.up, mn.up).cell(times), ratio(agents.down, mn.down).cell(times), ratio(mn.total(), agents.total()).cell(times)})
		}
	}
	var s strings.Builder
	s.WriteString("## Bring-up: labctl vs Mininet\n\n`mn --topo linear,N --switch lxbr --controller none --test none` against labctl's `linear` topology of the same shape (N nodes each on its own bridge, bridges chained; topologies/examples.Linear), up then down, alternating. Mininet's up is the time to its first `*** Stopping` line, its down the rest. Peak RSS is the CLI's (Mininet's Python process); agent memory is per agent: RSS, and PSS (which shares the binary's pages among the agents that map them); agent CPU is the CPU time an agent has used when up returns (its start-up), per agent, from every thread's schedstat.\n\n")
	s.WriteString(table([]string{"N", "tool", "up", "down", "CLI peak RSS", "agent RSS", "agent PSS", "agent CPU"}, rows))
	if len(ratios) > 0 {
		s.WriteString("\nRatios, pair by pair (labctl/Mininet for times, so below 1× is faster; the last column is how many times faster labctl is end to end):\n\n")
		s.WriteString(table([]string{"N", "labctl", "up ratio", "down ratio", "speed-up (up+down)"}, ratios))
	}
	if mnErr != nil {
		s.WriteString("\nMininet is not installed (scripts/deps.sh --bench installs it); labctl alone.\n")
	}
	s.WriteString("\n")
	return s.String(), nil
}

func intsToStrings(xs []int) []string {
	var out []string
	for _, x := range xs {
		out = append(out, strconv.Itoa(x))
	}
	return out
}

// run3 collects the figures of one tool at one size.
type run3 struct {
	up, down, rss, agentRSS, agentPSS, agentCPU figure
}

type sample struct {
	up, down, rss, agentRSS, agentPSS, agentCPU float64
}

func (r *run3) add(s sample, err error) error {
	if err != nil {
		return err
	}
	r.up, r.down, r.rss = append(r.up, s.up), append(r.down, s.down), append(r.rss, s.rss)
	if s.agentRSS > 0 {
		r.agentRSS, r.agentPSS, r.agentCPU = append(r.agentRSS, s.agentRSS), append(r.agentPSS, s.agentPSS), append(r.agentCPU, s.agentCPU)
	}
	return nil
}

func (r *run3) total() figure {
	var t figure
	for i := range r.up {
		t = append(t, r.up[i]+r.down[i])
	}
	return t
}

func (r *run3) row(n int, tool string) []string {
	return []string{strconv.Itoa(n), tool, r.up.cell(secs), r.down.cell(secs), r.rss.cell(mib), r.agentRSS.cell(mib), r.agentPSS.cell(mib), r.agentCPU.cell(msecs)}
}

// mininet runs linear,n up and down once.
func mininet(ctx context.Context, n int) (sample, error) {
	cmd := exec.CommandContext(ctx, "mn", "--topo", fmt.Sprintf("linear,%d", n), "--switch", "lxbr", "--controller", "none", "--test", "none")
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	var stopping time.Time
	var tail []string
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		line := sc.Text()
		if stopping.IsZero() && strings.HasPrefix(line, "*** Stopping") {
			stopping = time.Now()
		}
		tail = append(tail, line)
		if len(tail) > 20 {
			tail = tail[1:]
		}
	}
	err = cmd.Wait()
	end := time.Now()
	if err != nil || stopping.IsZero() {
		_ = exec.Command("mn", "-c").Run()
		return sample{}, fmt.Errorf("mininet linear,%d: %v\n%s", n, err, strings.Join(tail, "\n"))
	}
	return sample{up: stopping.Sub(start).Seconds(), down: end.Sub(stopping).Seconds(), rss: maxRSS(cmd.ProcessState)}, nil
}

func maxRSS(ps *os.ProcessState) float64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) // KiB
	}
	return 0
}

// linear brings labctl's linear,n up and down once.
func (b *bench) linear(ctx context.Context, n int, agents bool) (sample, error) {
	lab := fmt.Sprintf("bench-%d", n)
	dir, err := os.MkdirTemp("", "bench-topo")
	if err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, lab+".yaml")
	if err := os.WriteFile(file, examples.Linear(lab, n, agents), 0o644); err != nil {
		return sample{}, err
	}
	var s sample
	up, ps, err := b.timed(ctx, "up", file, "-q")
	if err != nil {
		b.timed(context.Background(), "down", lab, "-q")
		return s, err
	}
	s.up, s.rss = up.Seconds(), maxRSS(ps)
	if agents {
		s.agentRSS, s.agentPSS, s.agentCPU = agentMemory(lab)
	}
	down, _, err := b.timed(ctx, "down", lab, "-q")
	if err != nil {
		return s, err
	}
	s.down = down.Seconds()
	return s, nil
}

// timed runs labctl and returns its wall time.
func (b *bench) timed(ctx context.Context, args ...string) (time.Duration, *os.ProcessState, error) {
	cmd := exec.CommandContext(ctx, b.labctl, args...)
	cmd.Env = b.env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, cmd.ProcessState, fmt.Errorf("labctl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return d, cmd.ProcessState, nil
}

// agentMemory returns the mean RSS and PSS of a lab's agents, in KiB, and
// the mean CPU time each has used so far (right after up: its start-up),
// in ms, from schedstat (nanoseconds, where stat counts 10 ms ticks).
func agentMemory(lab string) (rss, pss, cpuMs float64) {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), "agent\x00--lab\x00"+lab+"\x00") {
			continue
		}
		rollup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		rss += field(string(rollup), "Rss:")
		pss += field(string(rollup), "Pss:")
		cpuMs += processCPU(pid) / 1e6
		n++
	}
	if n == 0 {
		return 0, 0, 0
	}
	return rss / float64(n), pss / float64(n), cpuMs / float64(n)
}

// processCPU is the CPU time (ns) every thread of pid has run.
func processCPU(pid int) float64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var ns float64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			ns += v
		}
	}
	return ns
}

func field(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			v, _ := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return v
		}
	}
	return 0
}

// settle waits until the kernel has finished freeing the namespaces of the
// last run (it does so in the background, holding the RTNL, for seconds
// after a large down): until a link dump answers within 5 ms for a second.
func settle() {
	time.Sleep(100 * time.Millisecond)
	quiet := time.Now()
	for deadline := time.Now().Add(2 * time.Minute); time.Since(quiet) < time.Second && time.Now().Before(deadline); {
		t := time.Now()
		if _, err := netlink.LinkList(); err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return
		}
		if time.Since(t) > 5*time.Millisecond {
			quiet = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
}
