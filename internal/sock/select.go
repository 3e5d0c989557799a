package sock

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrSelectLimit is returned by Select.Add for a descriptor select(2) cannot
// watch: an fd_set is a fixed bitmap of FD_SETSIZE (1024) bits, and glibc and
// the kernel alike give no way past it. Poll and Epoll have no such limit.
var ErrSelectLimit = errors.New("descriptor not below FD_SETSIZE (1024), the limit of select")

// Select watches descriptors for readability with select(2). It keeps the set
// of descriptors to watch apart from the set the kernel returns, because the
// kernel overwrites the set it is given with the ready subset.
type Select struct {
	watch, ready unix.FdSet
	nfd          int // highest watched descriptor + 1
}

// Add watches fd for readability, or returns an error wrapping
// ErrSelectLimit if fd is FD_SETSIZE or above.
func (s *Select) Add(fd FD) error {
	if fd < 0 || fd >= unix.FD_SETSIZE {
		return fmt.Errorf("select: watch fd %d: %w", fd, ErrSelectLimit)
	}
	s.watch.Set(int(fd))
	s.nfd = max(s.nfd, int(fd)+1)
	return nil
}

// Wait waits until a watched descriptor is readable or timeout passes
// (negative: without limit; 0: not at all) and returns how many are; Ready
// then tells which. The kernel scans the set bit by bit up to the highest
// descriptor, so the cost grows with it. It uses pselect6(2) without a signal
// mask and does not allocate; EINTR is retried with the time left, which the
// kernel writes back.
func (s *Select) Wait(timeout time.Duration) (int, error) {
	var ts unix.Timespec
	tsp := timespec(&ts, timeout)
	for {
		s.ready = s.watch
		n, _, e := unix.Syscall6(unix.SYS_PSELECT6, uintptr(s.nfd), uintptr(unsafe.Pointer(&s.ready)), 0, 0, uintptr(unsafe.Pointer(tsp)), 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
		default:
			return 0, fmt.Errorf("select over %d descriptors: %w", s.nfd, e)
		}
	}
}

// Ready reports whether fd was readable at the last Wait.
func (s *Select) Ready(fd FD) bool {
	return fd >= 0 && fd < unix.FD_SETSIZE && s.ready.IsSet(int(fd))
}
