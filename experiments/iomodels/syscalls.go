package iomodels

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

// processSyscalls counts the system calls of every thread of this process:
// one counting perf event per thread on the raw_syscalls:sys_enter
// tracepoint, with inherit set so that threads started later are counted
// too. Unlike kstat.TracepointCounter, which counts a tracepoint on whole
// CPUs (every process of the host), it sees only this agent, which is what
// "system calls per message of the server" means; a thread that starts
// between the listing of /proc/self/task and the opening is missed (the Go
// runtime rarely starts threads in a steady loop).
//
// The observer is not free: while any perf event is attached to the
// raw_syscalls tracepoints, every system call of the host takes the tracing
// slow path (TIF_SYSCALL_TRACEPOINT), about 0.1 µs more each. The
// count_syscalls parameter turns it off.
type processSyscalls struct {
	fds []int
}

// tracefs is where tracefs belongs since Linux 4.1.
const tracefs = "/sys/kernel/tracing"

func openProcessSyscalls() (*processSyscalls, error) {
	id, err := sysEnterID()
	if err != nil {
		return nil, err
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_TRACEPOINT,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Config: id,
		Bits:   unix.PerfBitInherit,
	}
	p := &processSyscalls{}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if errors.Is(err, unix.ESRCH) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("perf_event_open raw_syscalls:sys_enter for thread %d: %w", tid, err)
		}
		p.fds = append(p.fds, fd)
	}
	return p, nil
}

// Read returns the system calls counted so far. An inherited counter's
// value includes its child threads (perf sums the child events on read).
func (p *processSyscalls) Read() (uint64, error) {
	var total uint64
	var buf [8]byte
	for _, fd := range p.fds {
		if _, err := unix.Read(fd, buf[:]); err != nil {
			return 0, fmt.Errorf("read raw_syscalls:sys_enter counter fd %d: %w", fd, err)
		}
		total += binary.NativeEndian.Uint64(buf[:])
	}
	return total, nil
}

// Close releases the perf events.
func (p *processSyscalls) Close() {
	for _, fd := range p.fds {
		unix.Close(fd)
	}
	p.fds = nil
}

// sysEnterID reads the id of raw_syscalls:sys_enter from tracefs, mounting
// tracefs first where it is missing: an agent mounts a fresh sysfs, under
// which /sys/kernel/tracing is an empty directory, and the mount then lives
// in the agent's private mount namespace and goes with it. Elsewhere (a
// test on a host without tracefs) it stays, as kstat.OpenTracepoint's does.
func sysEnterID() (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(tracefs, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", tracefs, err)
	}
	if st.Type != unix.TRACEFS_MAGIC {
		if err := unix.Mount("tracefs", tracefs, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return 0, fmt.Errorf("mount tracefs on %s: %w", tracefs, err)
		}
	}
	path := filepath.Join(tracefs, "events", "raw_syscalls", "sys_enter", "id")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}
