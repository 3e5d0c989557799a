package sock

import (
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/labctl/labctl/internal/kernel"
	"golang.org/x/sys/unix"
)

// Epoll is an epoll instance. Events are unix.EPOLL* masks as in C:
// EPOLLIN|EPOLLOUT|EPOLLRDHUP for interest, plus unix.EPOLLET for edge
// triggering (report a descriptor once per new arrival, so the reader must
// drain it to EAGAIN) instead of the default level triggering (report it as
// long as it is ready), or EPOLLEXCLUSIVE, EPOLLONESHOT. EPOLLERR and
// EPOLLHUP are always reported. An event's Fd field is the descriptor.
type Epoll struct {
	fd FD
}

// NewEpoll creates an epoll instance with epoll_create1(EPOLL_CLOEXEC).
func NewEpoll() (*Epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &Epoll{fd: FD(fd)}, nil
}

// FD returns the epoll descriptor itself (it can be watched by another epoll,
// poll or select).
func (e *Epoll) FD() FD { return e.fd }

// Close closes the epoll instance; the descriptors it watched stay open.
func (e *Epoll) Close() error { return e.fd.Close() }

// Add starts watching fd for events.
func (e *Epoll) Add(fd FD, events uint32) error { return e.ctl(unix.EPOLL_CTL_ADD, "add", fd, events) }

// Mod replaces the events watched on fd (and re-arms an EPOLLONESHOT watch).
func (e *Epoll) Mod(fd FD, events uint32) error { return e.ctl(unix.EPOLL_CTL_MOD, "mod", fd, events) }

// Del stops watching fd. Closing fd also removes it, once no other
// descriptor refers to the same open file.
func (e *Epoll) Del(fd FD) error { return e.ctl(unix.EPOLL_CTL_DEL, "del", fd, 0) }

func (e *Epoll) ctl(op int, name string, fd FD, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(int(e.fd), op, int(fd), &ev); err != nil {
		return fmt.Errorf("epoll %d: %s fd %d events %#x: %w", e.fd, name, fd, events, err)
	}
	return nil
}

// Wait fills events with ready descriptors and returns how many, waiting at
// most timeout (negative: without limit; 0: not at all) with epoll_wait(2).
// A timeout is rounded up to whole milliseconds, the kernel's unit. EINTR is
// retried with the full timeout again, so a wait with a limit can last longer
// when signals arrive (Go's runtime preempts goroutines with SIGURG). It does
// not allocate.
func (e *Epoll) Wait(events []unix.EpollEvent, timeout time.Duration) (int, error) {
	if len(events) == 0 {
		return 0, fmt.Errorf("epoll %d: wait: no room for events", e.fd)
	}
	ms := millis(timeout)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT, uintptr(e.fd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(ms), 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
		default:
			return 0, fmt.Errorf("epoll %d: wait: %w", e.fd, errno)
		}
	}
}

// millis converts a timeout for epoll_wait and poll: -1 waits forever, and a
// positive duration is rounded up so that a short wait does not become a
// non-blocking check.
func millis(d time.Duration) int {
	switch {
	case d < 0:
		return -1
	case d > time.Duration(math.MaxInt32)*time.Millisecond:
		return math.MaxInt32
	default:
		return int((d + time.Millisecond - 1) / time.Millisecond)
	}
}

// BusyPollParams are an epoll instance's busy poll settings (struct
// epoll_params, Linux 6.9+). With them set, epoll_wait busy polls the NAPI
// context of the sockets on its ready list, whatever the sockets' own
// SO_BUSY_POLL and the global net.core.busy_poll say.
type BusyPollParams struct {
	// Timeout is how long epoll_wait busy polls before sleeping
	// (busy_poll_usecs, whole microseconds; 0 turns busy polling off).
	Timeout time.Duration
	// Budget is the packets per poll iteration (busy_poll_budget); more than
	// 64 (NAPI_POLL_WEIGHT) needs CAP_NET_ADMIN.
	Budget uint16
	// Prefer is prefer_busy_poll, as SetPreferBusyPoll for a socket.
	Prefer bool
}

// epollParams is struct epoll_params of include/uapi/linux/eventpoll.h
// (Linux 6.9), whose size is encoded in EPIOCSPARAMS and EPIOCGPARAMS.
type epollParams struct {
	usecs  uint32
	budget uint16
	prefer uint8
	pad    uint8 // must be zero
}

// SetBusyPollParams sets the busy poll parameters with the EPIOCSPARAMS ioctl.
// Kernels before 6.9 do not know the ioctl (ENOTTY) and kernels built without
// CONFIG_NET_RX_BUSY_POLL refuse it (EOPNOTSUPP); both give a
// kernel.NotSupportedError with the errno. EINVAL from a kernel that has the ioctl means
// the values were refused, not that it is missing.
func (e *Epoll) SetBusyPollParams(p BusyPollParams) error {
	usecs := p.Timeout / time.Microsecond
	if usecs < 0 || usecs > math.MaxInt32 {
		return fmt.Errorf("epoll %d: EPIOCSPARAMS: busy poll timeout %v out of range 0..%dµs", e.fd, p.Timeout, math.MaxInt32)
	}
	ep := epollParams{usecs: uint32(usecs), budget: p.Budget}
	if p.Prefer {
		ep.prefer = 1
	}
	return e.ioctl(unix.EPIOCSPARAMS, "EPIOCSPARAMS", &ep)
}

// BusyPollParams reads the busy poll parameters with the EPIOCGPARAMS ioctl;
// errors as SetBusyPollParams.
func (e *Epoll) BusyPollParams() (BusyPollParams, error) {
	var ep epollParams
	if err := e.ioctl(unix.EPIOCGPARAMS, "EPIOCGPARAMS", &ep); err != nil {
		return BusyPollParams{}, err
	}
	return BusyPollParams{
		Timeout: time.Duration(ep.usecs) * time.Microsecond,
		Budget:  ep.budget,
		Prefer:  ep.prefer != 0,
	}, nil
}

func (e *Epoll) ioctl(req uint, name string, ep *epollParams) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(e.fd), uintptr(req), uintptr(unsafe.Pointer(ep)))
	switch errno {
	case 0:
		return nil
	case unix.ENOTTY, unix.EOPNOTSUPP:
		return fmt.Errorf("epoll %d: %w", e.fd, kernel.NotSupported(kernel.Feature{Name: name + " with CONFIG_NET_RX_BUSY_POLL", Since: kernel.V(6, 9)}, errno))
	default:
		return fmt.Errorf("epoll %d: %s: %w", e.fd, name, errno)
	}
}
