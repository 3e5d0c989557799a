package kstat

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/stat and /proc/<pid>/stat
// (clock_t, sysconf(_SC_CLK_TCK)). The kernel fixes USER_HZ at 100 on every
// architecture Linux supports for userspace ABI reasons, whatever its
// internal HZ, so it is a constant here rather than a cgo sysconf call.
const userHZ = 100

const tick = time.Second / userHZ

// CPUTimes is where one CPU (or all of them) spent its time since boot, in
// 10 ms ticks: a phase should last seconds for these to mean much. For the
// CPU time of one thread use measure.ThreadUsage, which is precise.
type CPUTimes struct {
	// CPU is the CPU number, -1 for the sum over all CPUs.
	CPU     int           `json:"cpu"`
	User    time.Duration `json:"user_ns"`
	Nice    time.Duration `json:"nice_ns"`
	System  time.Duration `json:"system_ns"`
	Idle    time.Duration `json:"idle_ns"`
	IOWait  time.Duration `json:"iowait_ns"`
	IRQ     time.Duration `json:"irq_ns"`
	SoftIRQ time.Duration `json:"softirq_ns"`
	// Steal is time the hypervisor ran something else while this vCPU
	// wanted to run.
	Steal time.Duration `json:"steal_ns"`
	// Guest and GuestNice are time spent running a guest; the kernel
	// already counts them in User and Nice.
	Guest     time.Duration `json:"guest_ns"`
	GuestNice time.Duration `json:"guest_nice_ns"`
}

// Busy is the time the CPU did work: user, nice, system, hard and soft
// interrupts. Idle and iowait are not work; steal is left out because it is
// another VM's work, which would make a noisy neighbour look like our load;
// guest time is already inside user and nice.
func (c CPUTimes) Busy() time.Duration {
	return c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ
}

// Sub returns c - prev, field by field.
func (c CPUTimes) Sub(prev CPUTimes) CPUTimes {
	return CPUTimes{
		CPU:       c.CPU,
		User:      c.User - prev.User,
		Nice:      c.Nice - prev.Nice,
		System:    c.System - prev.System,
		Idle:      c.Idle - prev.Idle,
		IOWait:    c.IOWait - prev.IOWait,
		IRQ:       c.IRQ - prev.IRQ,
		SoftIRQ:   c.SoftIRQ - prev.SoftIRQ,
		Steal:     c.Steal - prev.Steal,
		Guest:     c.Guest - prev.Guest,
		GuestNice: c.GuestNice - prev.GuestNice,
	}
}

// CPUStat is the CPU time part of /proc/stat. Host-wide.
type CPUStat struct {
	// All is the "cpu" line, the sum over all CPUs: All.Busy() is the CPU
	// busy time of the whole host and All.SoftIRQ its softirq time.
	All CPUTimes `json:"all"`
	// CPUs has one entry per online CPU, in the kernel's order.
	CPUs []CPUTimes `json:"cpus"`
}

// ReadCPUStat reads /proc/stat.
func ReadCPUStat() (CPUStat, error) { return readFile("/proc/stat", ParseCPUStat) }

// ParseCPUStat parses the "cpu" and "cpuN" lines of /proc/stat and ignores
// the others. Kernels before 2.6.33 print fewer columns (steal since 2.6.11,
// guest 2.6.24, guest_nice 2.6.33); missing ones are 0.
func ParseCPUStat(r io.Reader) (CPUStat, error) {
	var s CPUStat
	seenAll := false
	sc := newScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		cpu := -1
		if f[0] != "cpu" {
			n, err := strconv.Atoi(f[0][len("cpu"):])
			if err != nil || n < 0 {
				return CPUStat{}, fmt.Errorf("line %d: %q is not cpu<n>", line, f[0])
			}
			cpu = n
		}
		if len(f) < 5 {
			return CPUStat{}, fmt.Errorf("line %d: %s has %d times, want at least 4 (user nice system idle)", line, f[0], len(f)-1)
		}
		var v [10]time.Duration
		for i, field := range f[1:min(len(f), 1+len(v))] {
			n, err := strconv.ParseUint(field, 10, 63)
			if err != nil {
				return CPUStat{}, fmt.Errorf("line %d: %s column %d: %w", line, f[0], i+1, err)
			}
			v[i] = time.Duration(n) * tick
		}
		t := CPUTimes{
			CPU: cpu, User: v[0], Nice: v[1], System: v[2], Idle: v[3], IOWait: v[4],
			IRQ: v[5], SoftIRQ: v[6], Steal: v[7], Guest: v[8], GuestNice: v[9],
		}
		if cpu == -1 {
			s.All, seenAll = t, true
		} else {
			s.CPUs = append(s.CPUs, t)
		}
	}
	if err := sc.Err(); err != nil {
		return CPUStat{}, err
	}
	if !seenAll {
		return CPUStat{}, fmt.Errorf("no \"cpu\" line")
	}
	return s, nil
}

// Sub returns s - prev: All, and every CPU present in both snapshots.
func (s CPUStat) Sub(prev CPUStat) CPUStat {
	d := CPUStat{All: s.All.Sub(prev.All)}
	at := make(map[int]CPUTimes, len(prev.CPUs))
	for _, c := range prev.CPUs {
		at[c.CPU] = c
	}
	for _, c := range s.CPUs {
		if p, ok := at[c.CPU]; ok {
			d.CPUs = append(d.CPUs, c.Sub(p))
		}
	}
	return d
}
