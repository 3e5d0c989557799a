package sock

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poll is the descriptor list of poll(2): Add appends a descriptor and the
// events of interest (unix.POLLIN, unix.POLLOUT, ...), Wait fills in each
// entry's Revents. The kernel walks the whole list on every call, which is
// what makes poll's cost grow with the number of descriptors.
type Poll []unix.PollFd

// Add appends fd with the events to watch.
func (p *Poll) Add(fd FD, events int16) {
	*p = append(*p, unix.PollFd{Fd: int32(fd), Events: events})
}

// Wait waits until a descriptor in p is ready or timeout passes (negative:
// without limit; 0: not at all) and returns the number of entries with
// non-zero Revents. POLLERR, POLLHUP and POLLNVAL are reported without being
// asked for. It uses ppoll(2) without a signal mask and does not allocate.
// EINTR is retried with the time left, which ppoll writes back.
func (p Poll) Wait(timeout time.Duration) (int, error) {
	var ts unix.Timespec
	tsp := timespec(&ts, timeout)
	for {
		n, _, e := unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), uintptr(unsafe.Pointer(tsp)), 0, 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
		default:
			return 0, fmt.Errorf("poll over %d descriptors: %w", len(p), e)
		}
	}
}

// timespec sets ts to a wait's timeout for ppoll and pselect6 and returns
// it, or nil (no limit) for a negative timeout. The kernel writes the time
// left back into it, so a retry after EINTR waits only for the rest. The
// caller owns ts, so that a wait does not allocate.
func timespec(ts *unix.Timespec, timeout time.Duration) *unix.Timespec {
	if timeout < 0 {
		return nil
	}
	*ts = unix.NsecToTimespec(int64(timeout))
	return ts
}
