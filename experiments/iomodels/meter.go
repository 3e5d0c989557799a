package iomodels

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Every request starts with a phase byte, as in rr: the server measures over
// the same messages as the client, without a second connection, and learns
// from the last request that the client is done (UDP has no end of stream).
// A response echoes the phase byte, or answers declined when the server
// cannot serve the variant on this kernel.
const (
	phaseWarmup   = 0
	phaseMeasured = 1
	phaseDone     = 2
	phaseDeclined = 0xff
)

// counts are the system calls a server loop made, by kind.
type counts struct {
	wait, recv, send int64 // select/poll/epoll_wait, recv(2), send(2)
	enter            int64 // io_uring_enter
	wakeup           int64 // io_uring_enter calls that only woke the SQPOLL thread
}

func (c counts) sub(p counts) counts {
	return counts{wait: c.wait - p.wait, recv: c.recv - p.recv, send: c.send - p.send, enter: c.enter - p.enter, wakeup: c.wakeup - p.wakeup}
}

func (c counts) total() int64 { return c.wait + c.recv + c.send + c.enter }

// meter measures the server over the measured messages: from the first
// measured request to the done request.
type meter struct {
	// process measures the whole process (RUSAGE_SELF) instead of the
	// calling thread: the netconn model's goroutine moves between threads.
	process bool
	// counts reads the loop's own system call counts; nil when the loop
	// does not count them (netconn).
	counts func() counts
	// sys counts every system call of the process; nil when not counting.
	sys *kstat.TracepointCounter
	// sqTID is the SQPOLL kernel thread of the ring, 0 without one.
	sqTID int

	measured   int64
	started    bool
	start, end snapshot
	errs       []string
}

type snapshot struct {
	usage  measure.Usage
	counts counts
	sys    uint64
	sqCPU  time.Duration
}

func (m *meter) snap() snapshot {
	var s snapshot
	var err error
	if m.process {
		s.usage, err = measure.ProcessUsage()
	} else {
		s.usage, err = measure.ThreadUsage()
	}
	m.note(err)
	if m.counts != nil {
		s.counts = m.counts()
	}
	if m.sys != nil {
		var n kstat.TracepointCount
		n, err = m.sys.Read()
		s.sys = n.Total
		m.note(err)
	}
	if m.sqTID != 0 {
		s.sqCPU, err = threadRuntime(m.sqTID)
		m.note(err)
	}
	return s
}

func (m *meter) note(err error) {
	if err != nil {
		m.errs = append(m.errs, err.Error())
	}
}

// message accounts for one request by its phase byte and reports whether
// it was the last.
func (m *meter) message(phase byte) (done bool) {
	switch phase {
	case phaseMeasured:
		if !m.started {
			// The window runs from after the first measured request was
			// read to after the done request was: M reads and M
			// responses for M measured messages.
			m.start, m.started = m.snap(), true
		}
		m.measured++
	case phaseDone:
		m.end = m.snap()
		if !m.started {
			m.start = m.end
		}
		return true
	}
	return false
}

// report adds the server's measurements to r.
func (m *meter) report(r *experimentv1.RoleReport) {
	n := m.measured
	r.Metrics["messages"] = float64(n)
	for _, e := range m.errs {
		r.Notes = append(r.Notes, "measurement: "+e)
	}
	if n == 0 {
		return
	}
	report.AddUsage(r, m.end.usage.Sub(m.start.usage), n, "msg")
	per := func(x int64) float64 { return float64(x) / float64(n) }
	if m.counts != nil {
		c := m.end.counts.sub(m.start.counts)
		r.Metrics["syscalls_per_msg"] = per(c.total())
		// By kind, the kinds the loop made (a blocking loop has no wait, a
		// ring no recv).
		for name, x := range map[string]int64{"wait_calls_per_msg": c.wait, "recv_calls_per_msg": c.recv,
			"send_calls_per_msg": c.send, "enter_calls_per_msg": c.enter} {
			if x > 0 {
				r.Metrics[name] = per(x)
			}
		}
		if m.sqTID != 0 {
			r.Metrics["sqpoll_wakeups_per_msg"] = per(c.wakeup)
		}
	}
	if m.sys != nil {
		d := int64(m.end.sys - m.start.sys)
		r.Metrics["process_syscalls_per_msg"] = per(d)
		report.AddEvidence(r, "process_syscalls", float64(d), "syscalls",
			"perf counters on raw_syscalls:sys_enter, one per thread of the server's agent (inherited by new threads)",
			"every system call of the serving process over the measured messages, the Go runtime's own included")
	}
	if m.sqTID != 0 {
		d := m.end.sqCPU - m.start.sqCPU
		r.Metrics["sqpoll_cpu_ns_per_msg"] = float64(d) / float64(n)
		report.AddEvidence(r, "sqpoll_thread_cpu", float64(d), "ns",
			fmt.Sprintf("/proc/self/task/%d/schedstat (the ring's iou-sqp thread)", m.sqTID),
			"CPU time of the kernel submission thread, which getrusage of the serving thread does not include")
	}
}

// threads lists the ids of this process's threads.
func threads() (map[int]bool, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	out := map[int]bool{}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			out[tid] = true
		}
	}
	return out, nil
}

// sqpollWait bounds the search for a new ring's submission thread.
const sqpollWait = time.Second

// findSQPollThread finds the submission thread of a ring set up after the
// threads in before were listed: since Linux 5.12 it is an io thread of the
// process, named iou-sqp-<pid> once it first runs (until then it carries
// the name of the thread that created it, so the search waits for that).
// Threads that existed before tell it apart from another ring's.
func findSQPollThread(before map[int]bool) (int, error) {
	for deadline := time.Now().Add(sqpollWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		now, err := threads()
		if err != nil {
			return 0, err
		}
		for tid := range now {
			if before[tid] {
				continue
			}
			comm, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/comm", tid))
			if err == nil && strings.HasPrefix(string(comm), "iou-sqp-") {
				return tid, nil
			}
		}
	}
	return 0, fmt.Errorf("no new iou-sqp thread in /proc/self/task after %v (before Linux 5.12 it is a kernel thread outside the process)", sqpollWait)
}

// threadRuntime reads a thread's time on CPU in ns, the first field of its
// schedstat (CONFIG_SCHED_INFO); unlike stat's utime and stime it is not
// rounded to clock ticks.
func threadRuntime(tid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/self/task/%d/schedstat", tid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", path)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return time.Duration(ns), nil
}
