package conns

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// nrOpen reads fs.nr_open, the ceiling of RLIMIT_NOFILE (setrlimit above
// it fails with EPERM, even for root).
func nrOpen() (uint64, error) {
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/sys/fs/nr_open: %w", err)
	}
	return n, nil
}

// tableFDs counts the descriptors of the calling thread's descriptor
// table (a shard has its own), not counting the one it reads them with.
func tableFDs() (int, error) {
	entries, err := os.ReadDir("/proc/thread-self/fd")
	if err != nil {
		return 0, err
	}
	return len(entries) - 1, nil
}

// lowerNofile sets the soft RLIMIT_NOFILE to soft for the conn-limits
// scenario that runs into it, and returns the function that restores it.
// The limit belongs to the whole agent process: while it is low, the
// agent's other work cannot open descriptors either, so the role holds it
// low only while it opens connections.
func lowerNofile(soft uint64) (restore func() error, err error) {
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		return nil, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	want := unix.Rlimit{Cur: min(soft, cur.Max), Max: cur.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return nil, fmt.Errorf("set RLIMIT_NOFILE to %d: %w", want.Cur, err)
	}
	return func() error {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
			return fmt.Errorf("restore RLIMIT_NOFILE to %d/%d: %w", cur.Cur, cur.Max, err)
		}
		return nil
	}, nil
}
