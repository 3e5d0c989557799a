package kstat

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// TaskStat is the CPU accounting of one thread from /proc/<pid>/task/<tid>/stat.
type TaskStat struct {
	TID   int    `json:"tid"`
	Comm  string `json:"comm"`
	State string `json:"state"`
	PPID  int    `json:"ppid"`
	// UTime and STime are user and system CPU time in 10 ms ticks (see
	// userHZ); a ksoftirqd thread only has system time.
	UTime time.Duration `json:"utime_ns"`
	STime time.Duration `json:"stime_ns"`
	// CPU is the CPU the thread last ran on, -1 if the kernel did not say.
	CPU int `json:"cpu"`
}

// CPUTime is UTime + STime.
func (t TaskStat) CPUTime() time.Duration { return t.UTime + t.STime }

// Sub returns the CPU time used since prev; the other fields are t's.
func (t TaskStat) Sub(prev TaskStat) TaskStat {
	t.UTime -= prev.UTime
	t.STime -= prev.STime
	return t
}

// ReadTaskStat reads /proc/<pid>/task/<tid>/stat. The thread must be visible
// in this process's PID namespace: ksoftirqd and other kernel threads are
// only visible from the host's.
func ReadTaskStat(pid, tid int) (TaskStat, error) {
	return readFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid), ParseTaskStat)
}

// Fields of proc_pid_stat (fs/proc/array.c), numbered from 1 as in proc(5).
// comm (field 2) may contain spaces and parentheses, so the fields after it
// are counted from its closing parenthesis.
const (
	statState     = 3
	statPPID      = 4
	statUTime     = 14
	statSTime     = 15
	statProcessor = 39
)

// ParseTaskStat parses a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat line.
func ParseTaskStat(r io.Reader) (TaskStat, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return TaskStat{}, err
	}
	line := strings.TrimSpace(string(b))
	lp, rp := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if lp < 0 || rp < lp {
		return TaskStat{}, fmt.Errorf("no \"(comm)\" in %q", line)
	}
	t := TaskStat{Comm: line[lp+1 : rp], CPU: -1}
	if t.TID, err = strconv.Atoi(strings.TrimSpace(line[:lp])); err != nil {
		return TaskStat{}, fmt.Errorf("task id: %w", err)
	}
	// rest[0] is field 3 (state).
	rest := strings.Fields(line[rp+1:])
	field := func(n int) string { return rest[n-statState] }
	if len(rest) < statSTime-statState+1 {
		return TaskStat{}, fmt.Errorf("task %d (%s): %d fields, want at least %d", t.TID, t.Comm, len(rest)+2, statSTime)
	}
	t.State = field(statState)
	if t.PPID, err = strconv.Atoi(field(statPPID)); err != nil {
		return TaskStat{}, fmt.Errorf("task %d (%s) field %d (ppid): %w", t.TID, t.Comm, statPPID, err)
	}
	for _, f := range []struct {
		n   int
		dst *time.Duration
	}{{statUTime, &t.UTime}, {statSTime, &t.STime}} {
		ticks, err := strconv.ParseUint(field(f.n), 10, 63)
		if err != nil {
			return TaskStat{}, fmt.Errorf("task %d (%s) field %d: %w", t.TID, t.Comm, f.n, err)
		}
		*f.dst = time.Duration(ticks) * tick
	}
	if len(rest) > statProcessor-statState {
		if t.CPU, err = strconv.Atoi(field(statProcessor)); err != nil {
			return TaskStat{}, fmt.Errorf("task %d (%s) field %d (processor): %w", t.TID, t.Comm, statProcessor, err)
		}
	}
	return t, nil
}

// Ksoftirqd is the softirq thread of one CPU. It is a kernel thread, so its
// PID is also its only TID: read it with ReadTaskStat(k.PID, k.PID).
type Ksoftirqd struct {
	CPU int `json:"cpu"`
	PID int `json:"pid"`
}

// kthreadd is the PID of the parent of every kernel thread.
const kthreadd = 2

// FindKsoftirqd lists the ksoftirqd/N threads, by CPU, from the stat of every
// process in /proc: named ksoftirqd/N and children of kthreadd, so that a
// user process calling itself "ksoftirqd/0" is not taken for one. It must run
// in the host PID namespace.
func FindKsoftirqd() ([]Ksoftirqd, error) { return findKsoftirqd(os.DirFS("/proc")) }

func findKsoftirqd(proc fs.FS) ([]Ksoftirqd, error) {
	entries, err := fs.ReadDir(proc, ".")
	if err != nil {
		return nil, err
	}
	var ks []Ksoftirqd
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(proc, e.Name()+"/stat")
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // the process exited while we listed /proc
		}
		if err != nil {
			return nil, err
		}
		st, err := ParseTaskStat(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		n, ok := strings.CutPrefix(st.Comm, "ksoftirqd/")
		cpu, err := strconv.Atoi(n)
		if !ok || err != nil || st.PPID != kthreadd {
			continue
		}
		ks = append(ks, Ksoftirqd{CPU: cpu, PID: pid})
	}
	if len(ks) == 0 {
		return nil, errors.New("no ksoftirqd/N thread in /proc: not in the host PID namespace?")
	}
	slices.SortFunc(ks, func(a, b Ksoftirqd) int { return a.CPU - b.CPU })
	return ks, nil
}
