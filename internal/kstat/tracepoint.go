package kstat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tracefsDir is where tracefs belongs since Linux 4.1.
const tracefsDir = "/sys/kernel/tracing"

// TracepointCounter counts the hits of one kernel tracepoint with counting
// perf events: by default one per online CPU (perf_event_open with pid -1),
// which counts the whole host; ForThread and ForProcess count tasks
// instead. There is no ring buffer, sampling or BPF, but every hit still
// runs the tracepoint's perf handler, which fills the event record (and
// runs the filter, if any) before counting it: on an event that fires
// millions of times a second the observer is not free, so report that the
// counter was open. Counting raw_syscalls at all moves every system call of
// the host onto the tracing slow path (TIF_SYSCALL_TRACEPOINT).
//
// A counter of the whole host counts events of every namespace: napi:napi_poll
// counts the polls of the host's NICs too, so compare a delta against a
// quiet baseline, filter (WithFilter), or count a task instead.
// Opening needs root (CAP_PERFMON, or CAP_SYS_ADMIN before Linux 5.8).
// Read may be called from any goroutine; Close once, after the last Read.
type TracepointCounter struct {
	name  string // group:event
	label string // name and filter, for errors
	cpus  []int  // the CPU of each slot of a count
	evs   []perfEvent
}

// perfEvent is one perf event of a counter and the slot of the count it adds to.
type perfEvent struct {
	fd   int
	slot int
	what string // "CPU 3", "thread 4242", for errors
}

// TracepointCount is a reading of a TracepointCounter.
type TracepointCount struct {
	// Name is "group:event", e.g. "napi:napi_poll".
	Name string `json:"name"`
	// CPUs are the CPU numbers of PerCPU: the CPUs online when a counter of
	// the whole host was opened, or the single slot -1 of a counter of a
	// thread or a process, which counts on whichever CPU its tasks run
	// (perf's cpu -1).
	CPUs   []int    `json:"cpus"`
	PerCPU []uint64 `json:"per_cpu"`
	Total  uint64   `json:"total"`
}

// TracepointOption changes what OpenTracepoint counts.
type TracepointOption func(*tracepointConfig)

type tracepointConfig struct {
	filter string
	scope  tracepointScope
	pid    int // of scopeProcess
}

type tracepointScope int

const (
	scopeHost    tracepointScope = iota // every CPU, every task
	scopeThread                         // the calling thread
	scopeProcess                        // every thread of a process
)

// WithFilter counts only the hits that match expr, a tracepoint filter over
// the event's fields as in tracefs ("dev_name == \"eth0\" && work > 0"; see
// the format file of the event for the fields). The kernel evaluates it
// (PERF_EVENT_IOC_SET_FILTER), so no record leaves it; it is set before the
// counter is enabled, so nothing unfiltered is ever counted. Strings go in
// double quotes without escapes. An empty expr counts every hit.
func WithFilter(expr string) TracepointOption {
	return func(c *tracepointConfig) { c.filter = expr }
}

// ForThread counts the hits while the calling thread runs, on whichever CPU
// (pid 0, cpu -1), and nothing else on the host: for a tracepoint of the
// softirqs, the softirqs that ran in the thread's context. The calling
// goroutine must be locked to its thread (runtime.LockOSThread) from before
// the open until the last Read, or the count follows an OS thread that
// other goroutines share. Threads the thread starts are not counted.
func ForThread() TracepointOption {
	return func(c *tracepointConfig) { c.scope = scopeThread }
}

// ForProcess counts the hits in every thread of process pid, with one perf
// event per thread listed in /proc/<pid>/task (cpu -1), inherited by the
// tasks those threads start later: Go's runtime starts threads as it needs
// them. Inheritance follows every clone, so child processes are counted too
// (perf's inherit bit, without inherit_thread). A thread that ends before
// its event is opened is skipped. A thread started during the open by a
// thread not counted yet is missed, and so are the threads it starts in
// turn: rare once a Go process has its threads (the runtime may start one
// while a thread blocks in a system call), but not impossible.
func ForProcess(pid int) TracepointOption {
	return func(c *tracepointConfig) { c.scope, c.pid = scopeProcess, pid }
}

// OpenTracepoint starts counting tracepoint group:event ("napi",
// "napi_poll"; "irq", "softirq_entry"; "sock", "inet_sock_set_state"): by
// default on every CPU online now, or as the options say; of ForThread and
// ForProcess the last one given applies.
//
// It reads the tracepoint's id from
// /sys/kernel/tracing/events/<group>/<event>/id and, when tracefs is not
// mounted there, mounts it. An agent mounts a fresh sysfs of its own, on
// which /sys/kernel/tracing is an empty directory; the mount then lives in
// the agent's mount namespace and goes with it. Elsewhere the mount is left
// in place on purpose: it is harmless, other tools (perf, bpftrace) expect it
// there, and another counter or tool may be using it, so only whoever mounts
// it by hand should unmount it. An existing mount is never touched.
func OpenTracepoint(group, event string, opts ...TracepointOption) (*TracepointCounter, error) {
	var cfg tracepointConfig
	for _, o := range opts {
		o(&cfg)
	}
	name := group + ":" + event
	c := &TracepointCounter{name: name, label: name}
	if cfg.filter != "" {
		c.label = fmt.Sprintf("%s (filter %q)", name, cfg.filter)
	}
	id, err := tracepointID(group, event)
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s: %w", c.label, err)
	}
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_TRACEPOINT,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Config: id,
		// Sample period 0, no sample type: a pure counter, read with
		// read(2). Enabled once its filter is set.
		Bits: unix.PerfBitDisabled,
	}
	type target struct {
		pid, cpu, slot int
		what           string
	}
	var targets []target
	switch cfg.scope {
	case scopeHost:
		if c.cpus, err = ReadOnlineCPUs(); err != nil {
			return nil, fmt.Errorf("tracepoint %s: %w", c.label, err)
		}
		for i, cpu := range c.cpus {
			targets = append(targets, target{pid: -1, cpu: cpu, slot: i, what: "CPU " + strconv.Itoa(cpu)})
		}
	case scopeThread:
		c.cpus = []int{-1}
		targets = []target{{pid: 0, cpu: -1, what: "thread " + strconv.Itoa(unix.Gettid())}}
	case scopeProcess:
		c.cpus = []int{-1}
		tids, err := processThreads(cfg.pid)
		if err != nil {
			return nil, fmt.Errorf("tracepoint %s: %w", c.label, err)
		}
		for _, tid := range tids {
			targets = append(targets, target{pid: tid, cpu: -1, what: "thread " + strconv.Itoa(tid)})
		}
		// Child events keep the filter of their parent
		// (perf_tp_filter_match reads the top-level event's).
		attr.Bits |= unix.PerfBitInherit
	}
	for _, t := range targets {
		fd, err := unix.PerfEventOpen(&attr, t.pid, t.cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if cfg.scope == scopeProcess && errors.Is(err, unix.ESRCH) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("tracepoint %s: perf_event_open on %s: %w", c.label, t.what, err)
		}
		c.evs = append(c.evs, perfEvent{fd: fd, slot: t.slot, what: t.what})
		if cfg.filter != "" {
			if err := unix.IoctlSetString(fd, unix.PERF_EVENT_IOC_SET_FILTER, cfg.filter); err != nil {
				c.Close()
				return nil, fmt.Errorf("tracepoint %s: set filter: %w", c.label, err)
			}
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			c.Close()
			return nil, fmt.Errorf("tracepoint %s: enable on %s: %w", c.label, t.what, err)
		}
	}
	return c, nil
}

// processThreads lists the thread ids of process pid.
func processThreads(pid int) ([]int, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("ForProcess: invalid pid %d", pid)
	}
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err) // names the directory
	}
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// Read returns the hits counted so far in each slot (CPU) and in total. A
// counter of a process adds up its threads' events, each of which includes
// the tasks it was inherited by (perf sums the child events on read).
func (c *TracepointCounter) Read() (TracepointCount, error) {
	n := TracepointCount{Name: c.name, CPUs: c.cpus, PerCPU: make([]uint64, len(c.cpus))}
	var buf [8]byte
	for _, ev := range c.evs {
		if _, err := unix.Read(ev.fd, buf[:]); err != nil {
			return TracepointCount{}, fmt.Errorf("tracepoint %s: read counter of %s: %w", c.label, ev.what, err)
		}
		v := binary.NativeEndian.Uint64(buf[:])
		n.PerCPU[ev.slot] += v
		n.Total += v
	}
	return n, nil
}

// Close stops counting and releases the perf events.
func (c *TracepointCounter) Close() error {
	var errs []error
	for _, ev := range c.evs {
		if err := unix.Close(ev.fd); err != nil {
			errs = append(errs, fmt.Errorf("tracepoint %s: close counter of %s: %w", c.label, ev.what, err))
		}
	}
	c.evs = nil
	return errors.Join(errs...)
}

// Sub returns the hits since prev. Both must come from the same counter.
func (n TracepointCount) Sub(prev TracepointCount) TracepointCount {
	d := TracepointCount{Name: n.Name, CPUs: n.CPUs, PerCPU: make([]uint64, len(n.PerCPU))}
	for i, v := range n.PerCPU {
		if i < len(prev.PerCPU) {
			v -= prev.PerCPU[i]
		}
		d.PerCPU[i] = v
		d.Total += v
	}
	return d
}

// tracepointID reads the id perf_event_open needs for group:event.
func tracepointID(group, event string) (uint64, error) {
	for _, part := range []string{group, event} {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, '/') {
			return 0, fmt.Errorf("invalid tracepoint name part %q", part)
		}
	}
	if err := ensureTracefs(); err != nil {
		return 0, err
	}
	path := filepath.Join(tracefsDir, "events", group, event, "id")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err // names the path; ENOENT: no such tracepoint in this kernel
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

// ensureTracefs mounts tracefs on /sys/kernel/tracing unless it is mounted
// there already. On many systems it is mounted at boot by systemd; a minimal
// VM or container leaves the directory empty, and so does a fresh sysfs.
func ensureTracefs() error {
	mounted, err := tracefsMounted()
	if err != nil || mounted {
		return err
	}
	err = unix.Mount("tracefs", tracefsDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil {
		// Lost a race with another mounter (EBUSY)? Then it is there now.
		if again, _ := tracefsMounted(); again {
			return nil
		}
		return fmt.Errorf("mount tracefs on %s: %w", tracefsDir, err)
	}
	return nil
}

func tracefsMounted() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(tracefsDir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", tracefsDir, err)
	}
	return st.Type == unix.TRACEFS_MAGIC, nil
}
