package experiments

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sock"
)

// LockThread locks the calling goroutine to its OS thread, as every
// measuring role must (RUSAGE_THREAD, CPU pinning and io_uring's task work
// all belong to one thread), and for cpu >= 0 pins that thread to the CPU.
// The returned function puts the thread's CPU affinity back and unlocks
// it; if the affinity cannot be put back, the thread stays locked and Go
// ends it with the goroutine, so no pinned thread ever goes back to the
// scheduler to run other goroutines on one CPU.
func LockThread(cpu int) (unlock func(), err error) {
	runtime.LockOSThread()
	if cpu < 0 {
		return runtime.UnlockOSThread, nil
	}
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	if err := sock.PinThread(cpu); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() {
		if unix.SchedSetaffinity(0, &orig) == nil {
			runtime.UnlockOSThread()
		}
	}, nil
}
