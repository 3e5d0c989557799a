package role

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// A pinned thread gets its affinity back before it is unlocked.
func TestLockThreadRestoresAffinity(t *testing.T) {
	runtime.LockOSThread() // hold the thread to look at it after unlock
	defer runtime.UnlockOSThread()
	var orig, pinned, after unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	unlock, err := LockThread(0)
	if err != nil {
		t.Fatal(err)
	}
	_ = unix.SchedGetaffinity(0, &pinned)
	if pinned.Count() != 1 || !pinned.IsSet(0) {
		t.Errorf("pinned affinity has %d CPUs", pinned.Count())
	}
	unlock()
	_ = unix.SchedGetaffinity(0, &after)
	if after != orig {
		t.Errorf("affinity after unlock is not the original (%d CPUs, want %d)", after.Count(), orig.Count())
	}
}
