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

// TracepointCounter counts the hits of one kernel tracepoint on every online
// CPU, with one counting perf event per CPU (perf_event_open with pid -1).
// There is no ring buffer, sampling or BPF, but every hit still runs the
// tracepoint's perf handler, which fills the event record before counting
// it: on an event that fires millions of times a second the observer is not
// free, so report that the counter was open.
//
// A tracepoint counts events of the whole host, every namespace included:
// napi:napi_poll counts the polls of the host's NICs too, so compare a delta
// against a quiet baseline or against counters of the node itself.
// Opening needs root (CAP_PERFMON, or CAP_SYS_ADMIN before Linux 5.8).
// Read may be called from any goroutine; Close once, after the last Read.
type TracepointCounter struct {
	name string
	cpus []int
	fds  []int
}

// TracepointCount is a reading of a TracepointCounter.
type TracepointCount struct {
	// Name is "group:event", e.g. "napi:napi_poll".
	Name string `json:"name"`
	// CPUs are the CPU numbers of PerCPU.
	CPUs   []int    `json:"cpus"`
	PerCPU []uint64 `json:"per_cpu"`
	Total  uint64   `json:"total"`
}

// OpenTracepoint starts counting tracepoint group:event ("napi",
// "napi_poll"; "irq", "softirq_entry"; "sock", "inet_sock_set_state") on
// every CPU online now. It reads the tracepoint's id from
// /sys/kernel/tracing/events/<group>/<event>/id and, when tracefs is not
// mounted there, mounts it. The mount is left in place on purpose: it is
// harmless, other tools (perf, bpftrace) expect it there, and another
// counter or tool may be using it, so only whoever mounts it by hand should
// unmount it. An existing mount is never touched.
func OpenTracepoint(group, event string) (*TracepointCounter, error) {
	name := group + ":" + event
	id, err := tracepointID(group, event)
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s: %w", name, err)
	}
	cpus, err := ReadOnlineCPUs()
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s: %w", name, err)
	}
	c := &TracepointCounter{name: name, cpus: cpus}
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_TRACEPOINT,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Config: id,
		// Sample period 0, no sample type, enabled from the start: a pure
		// counter, read with read(2).
	}
	for _, cpu := range cpus {
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("tracepoint %s: perf_event_open on CPU %d: %w", name, cpu, err)
		}
		c.fds = append(c.fds, fd)
	}
	return c, nil
}

// Read returns the hits counted so far on each CPU and in total.
func (c *TracepointCounter) Read() (TracepointCount, error) {
	n := TracepointCount{Name: c.name, CPUs: c.cpus, PerCPU: make([]uint64, len(c.fds))}
	var buf [8]byte
	for i, fd := range c.fds {
		if _, err := unix.Read(fd, buf[:]); err != nil {
			return TracepointCount{}, fmt.Errorf("tracepoint %s: read counter of CPU %d: %w", c.name, c.cpus[i], err)
		}
		n.PerCPU[i] = binary.NativeEndian.Uint64(buf[:])
		n.Total += n.PerCPU[i]
	}
	return n, nil
}

// Close stops counting and releases the perf events.
func (c *TracepointCounter) Close() error {
	var errs []error
	for _, fd := range c.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, fmt.Errorf("tracepoint %s: close: %w", c.name, err))
		}
	}
	c.fds = nil
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
// VM or container leaves the directory empty.
func ensureTracefs() error {
	mounted, err := tracefsMounted()
	if err != nil || mounted {
		return err
	}
	err = unix.Mount("tracefs", tracefsDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil {
		// Lost a race with another mounter? Then it is there now.
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
