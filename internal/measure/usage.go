package measure

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Usage is a snapshot of the getrusage(2) counters an experiment reports:
// CPU time and context switches. Take one before and one after a phase and
// use Sub.
//
// The kernel reports CPU time in µs. The sum User+System follows the
// scheduler's precise runtime, but unless the kernel is built with
// VIRT_CPU_ACCOUNTING the split between user and system is estimated from
// timer-tick samples (cputime_adjust in kernel/sched/cputime.c), so over a
// short phase trust CPU() more than either half.
type Usage struct {
	User   time.Duration `json:"user_ns"`
	System time.Duration `json:"system_ns"`
	// Voluntary counts context switches where the thread gave up the CPU,
	// typically to sleep in a blocking syscall (nvcsw).
	Voluntary int64 `json:"voluntary_ctxsw"`
	// Involuntary counts preemptions (nivcsw).
	Involuntary int64 `json:"involuntary_ctxsw"`
}

// ThreadUsage reads getrusage(RUSAGE_THREAD) for the calling OS thread.
//
// The numbers only describe the measured work when the goroutine has called
// runtime.LockOSThread before the first snapshot and stays locked until the
// last: otherwise the Go scheduler may move it to another thread in between
// and the delta mixes two threads (or other goroutines' work).
func ThreadUsage() (Usage, error) {
	return getrusage(unix.RUSAGE_THREAD, "RUSAGE_THREAD")
}

// ProcessUsage reads getrusage(RUSAGE_SELF): all threads of this process,
// including the Go runtime's own (GC, scheduler).
func ProcessUsage() (Usage, error) {
	return getrusage(unix.RUSAGE_SELF, "RUSAGE_SELF")
}

func getrusage(who int, name string) (Usage, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return Usage{}, fmt.Errorf("getrusage(%s): %w", name, err)
	}
	return Usage{
		User:        time.Duration(ru.Utime.Nano()),
		System:      time.Duration(ru.Stime.Nano()),
		Voluntary:   ru.Nvcsw,
		Involuntary: ru.Nivcsw,
	}, nil
}

// Sub returns the usage between prev and u (u - prev).
func (u Usage) Sub(prev Usage) Usage {
	return Usage{
		User:        u.User - prev.User,
		System:      u.System - prev.System,
		Voluntary:   u.Voluntary - prev.Voluntary,
		Involuntary: u.Involuntary - prev.Involuntary,
	}
}

// CPU is the total CPU time, User + System.
func (u Usage) CPU() time.Duration { return u.User + u.System }

// UsagePerOp is a Usage divided by a number of operations (messages, bytes).
// Fields are float64 because per-op values are fractions: 0.02 context
// switches per message, 0.3 ns of CPU per byte.
type UsagePerOp struct {
	CPUNs       float64 `json:"cpu_ns"`
	UserNs      float64 `json:"user_ns"`
	SystemNs    float64 `json:"system_ns"`
	Voluntary   float64 `json:"voluntary_ctxsw"`
	Involuntary float64 `json:"involuntary_ctxsw"`
}

// PerOp divides u (normally a delta from Sub) by n operations; n <= 0 gives
// the zero UsagePerOp.
func (u Usage) PerOp(n int64) UsagePerOp {
	if n <= 0 {
		return UsagePerOp{}
	}
	f := float64(n)
	return UsagePerOp{
		CPUNs:       float64(u.CPU()) / f,
		UserNs:      float64(u.User) / f,
		SystemNs:    float64(u.System) / f,
		Voluntary:   float64(u.Voluntary) / f,
		Involuntary: float64(u.Involuntary) / f,
	}
}
