package iomodels

import (
	"os"

	"github.com/labctl/labctl/internal/kstat"
)

// openProcessSyscalls counts the system calls of every thread of this
// process, threads started later included, on the raw_syscalls:sys_enter
// tracepoint (kstat.ForProcess). Unlike a counter of the whole host it sees
// only this agent, which is what "system calls per message of the server"
// means.
//
// The observer is not free: while any perf event is attached to the
// raw_syscalls tracepoints, every system call of the host takes the tracing
// slow path (TIF_SYSCALL_TRACEPOINT), about 0.1 µs more each. The
// count_syscalls parameter turns it off.
func openProcessSyscalls() (*kstat.TracepointCounter, error) {
	return kstat.OpenTracepoint("raw_syscalls", "sys_enter", kstat.ForProcess(os.Getpid()))
}
