package sock

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PinThread restricts the calling OS thread to CPU cpu with
// sched_setaffinity(2) (pid 0 is the calling thread, not the whole process).
// The caller must hold the thread with runtime.LockOSThread, or the goroutine
// may move to an unpinned thread and leave the pin on a thread that then runs
// other goroutines. A goroutine that exits without UnlockOSThread takes its
// pinned thread with it, which is the simple way to undo the pin. EINVAL means
// cpu is offline or outside the process's cpuset.
func PinThread(cpu int) error {
	var set unix.CPUSet
	if cpu < 0 || cpu >= len(set)*int(unsafe.Sizeof(set[0]))*8 {
		return fmt.Errorf("pin thread to CPU %d: outside the CPU set of this build", cpu)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// CurrentCPU returns the CPU the calling thread runs on at the moment of the
// call, from getcpu(2) (a real system call: Go does not use the vDSO here).
// Without PinThread the answer may be stale by the time it is used.
func CurrentCPU() int {
	var cpu uint32
	// getcpu can only fail with EFAULT, which a pointer to a local rules out.
	unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	return int(cpu)
}
