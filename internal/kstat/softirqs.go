package kstat

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Softirqs is a snapshot of /proc/softirqs: how many times each softirq type
// ran on each CPU. Host-wide.
type Softirqs struct {
	// CPUs are the CPU numbers of the columns (all possible CPUs).
	CPUs []int `json:"cpus"`
	// Counts maps a softirq type ("NET_RX", "NET_TX", "TIMER", ...) to one
	// count per entry of CPUs.
	Counts map[string][]uint64 `json:"counts"`
}

// ReadSoftirqs reads /proc/softirqs.
func ReadSoftirqs() (Softirqs, error) { return readFile("/proc/softirqs", ParseSoftirqs) }

// ParseSoftirqs parses /proc/softirqs: a header of CPU names, then one row per
// softirq type with one count per CPU.
func ParseSoftirqs(r io.Reader) (Softirqs, error) {
	sc := newScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Softirqs{}, err
		}
		return Softirqs{}, fmt.Errorf("empty input, want a CPU header")
	}
	cpus, err := parseCPUHeader(sc.Text())
	if err != nil {
		return Softirqs{}, err
	}
	s := Softirqs{CPUs: cpus, Counts: map[string][]uint64{}}
	for line := 2; sc.Scan(); line++ {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return Softirqs{}, fmt.Errorf("line %d: no \"NAME:\" prefix in %q", line, sc.Text())
		}
		f := strings.Fields(rest)
		if len(f) != len(cpus) {
			return Softirqs{}, fmt.Errorf("line %d: %s has %d counts for %d CPUs", line, name, len(f), len(cpus))
		}
		counts := make([]uint64, len(f))
		for i, v := range f {
			if counts[i], err = strconv.ParseUint(v, 10, 64); err != nil {
				return Softirqs{}, fmt.Errorf("line %d: %s on CPU%d: %w", line, name, cpus[i], err)
			}
		}
		s.Counts[name] = counts
	}
	if err := sc.Err(); err != nil {
		return Softirqs{}, err
	}
	return s, nil
}

// parseCPUHeader parses "CPU0 CPU1 CPU3" into CPU numbers.
func parseCPUHeader(header string) ([]int, error) {
	f := strings.Fields(header)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty CPU header")
	}
	cpus := make([]int, len(f))
	for i, name := range f {
		n, ok := strings.CutPrefix(name, "CPU")
		cpu, err := strconv.Atoi(n)
		if !ok || err != nil || cpu < 0 {
			return nil, fmt.Errorf("CPU header: %q is not CPU<n>", name)
		}
		cpus[i] = cpu
	}
	return cpus, nil
}

// Sub returns the counts gained since prev for the CPUs present in both
// snapshots. The kernel keeps the counts as 32-bit unsigned ints; one
// wrap-around between the snapshots is accounted for.
func (s Softirqs) Sub(prev Softirqs) Softirqs {
	cpus, cur, old := commonCPUs(s.CPUs, prev.CPUs)
	d := Softirqs{CPUs: cpus, Counts: make(map[string][]uint64, len(s.Counts))}
	for name, counts := range s.Counts {
		p := prev.Counts[name]
		dc := make([]uint64, len(cpus))
		for i := range cpus {
			var before uint64
			if p != nil {
				before = p[old[i]]
			}
			dc[i] = delta32(counts[cur[i]], before)
		}
		d.Counts[name] = dc
	}
	return d
}

// Total is the count of softirq type name summed over all CPUs.
func (s Softirqs) Total(name string) uint64 {
	var t uint64
	for _, c := range s.Counts[name] {
		t += c
	}
	return t
}

// commonCPUs returns the CPUs of cur that are also in prev, in cur's order,
// with their positions in cur and in prev.
func commonCPUs(cur, prev []int) (cpus, curPos, prevPos []int) {
	at := cpuIndex(prev)
	for i, c := range cur {
		if j, ok := at[c]; ok {
			cpus = append(cpus, c)
			curPos = append(curPos, i)
			prevPos = append(prevPos, j)
		}
	}
	return cpus, curPos, prevPos
}
