package sock

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A measured loop spends most of its time blocked in the kernel, waiting for
// the peer. Entered with unix.Syscall, that wait tells Go's scheduler the
// goroutine's P is in a system call, and sysmon, which keeps watch over such
// Ps, then wakes every 20 µs plus timer slack instead of backing off to
// 10 ms (Go 1.26: ~7,700 nanosleep wakeups a second in each rr agent,
// seen with perf record -e sched:sched_switch). Those wakeups take the CPUs
// the round trip needs: rr's p99 was 37-39% above sockperf's, its p50 was
// 7-10% below (the CPUs never idled). Entered with RawSyscall, the
// scheduler sees a running goroutine, sysmon backs off, and rr lands within
// a few percent of sockperf.
//
// The price of RawSyscall: a stop-the-world (the GC's, say) cannot begin
// until the call returns, and the retry loops (readFull, writeFull, WaitHot)
// call only nosplit code, so nothing in them is a preemption point. So no hot
// call blocks for long:
// Hot sockets get SO_RCVTIMEO and SO_SNDTIMEO of hotBound, WaitHot passes it
// as the epoll timeout, and every retry (a bound that expired, or EINTR: a
// socket with a timeout is not restarted after the runtime's preemption
// signal) first yields with runtime.Gosched, where a pending stop-the-world
// proceeds. A stop-the-world waits at most hotBound; the wakeups cost 50 a
// second while the peer is silent.
const hotBound = 20 * time.Millisecond

// Hot is a connected blocking stream socket for a measured loop; see above.
type Hot struct{ fd FD }

// NewHot bounds every blocking call on fd (SO_RCVTIMEO, SO_SNDTIMEO) so
// that Hot's raw calls never hold off the runtime for long. fd must be a
// blocking stream socket: on a non-blocking one Hot would spin.
func NewHot(fd FD) (Hot, error) {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return Hot{}, fmt.Errorf("fcntl fd %d: %w", fd, err)
	}
	if fl&unix.O_NONBLOCK != 0 {
		return Hot{}, fmt.Errorf("fd %d: a hot socket must block (O_NONBLOCK is set)", fd)
	}
	tv := unix.NsecToTimeval(hotBound.Nanoseconds())
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, opt, &tv); err != nil {
			return Hot{}, fmt.Errorf("fd %d: setsockopt SO_RCVTIMEO/SO_SNDTIMEO: %w", fd, err)
		}
	}
	return Hot{fd: fd}, nil
}

// ReadFull is sock.ReadFull with raw calls: it returns when buf is full, at
// the peer's shutdown (io.EOF, or io.ErrUnexpectedEOF after a partial read),
// or on an error; a bound that expires is retried.
func (h Hot) ReadFull(buf []byte) (int, error) { return readFull(h.fd, buf, true) }

// WriteFull is sock.WriteFull with raw calls; a bound that expires with
// nothing sent (a full send buffer) is retried.
func (h Hot) WriteFull(buf []byte) (int, error) { return writeFull(h.fd, buf, true) }

// Recv is one recv(2) (a stream's bytes as they come, or one datagram)
// with raw calls; a bound that expires is retried.
func (h Hot) Recv(buf []byte) (int, error) { return h.RecvWithin(buf, 0) }

// RecvWithin is Recv giving up with unix.EAGAIN once the bound has expired
// for about limit (0: never), for a datagram that may be lost. It counts
// expired bounds instead of reading the clock.
func (h Hot) RecvWithin(buf []byte, limit time.Duration) (int, error) {
	for expired := time.Duration(0); ; expired += hotBound {
		n, err := recv(h.fd, buf, 0, true)
		if err != unix.EAGAIN {
			return n, err
		}
		if limit > 0 && expired+hotBound >= limit {
			return 0, unix.EAGAIN
		}
		runtime.Gosched()
	}
}

// Send is one send(2) with raw calls; a bound that expires with nothing
// sent (a full send buffer) is retried. A stream may take fewer bytes.
func (h Hot) Send(buf []byte) (int, error) {
	for {
		n, err := send(h.fd, buf, 0, true)
		if err != unix.EAGAIN {
			return n, err
		}
		runtime.Gosched()
	}
}

// WaitHot is Wait without a limit, for a measured loop: epoll_pwait entered
// with a raw call and a timeout of hotBound, repeated until something is
// ready.
func (e *Epoll) WaitHot(events []unix.EpollEvent) (int, error) {
	if len(events) == 0 {
		return 0, fmt.Errorf("epoll %d: wait: no room for events", e.fd)
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(e.fd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(hotBound.Milliseconds()), 0, 0)
		switch {
		case errno == unix.EINTR || (errno == 0 && n == 0):
			runtime.Gosched()
		case errno != 0:
			return 0, fmt.Errorf("epoll %d: wait: %w", e.fd, errno)
		default:
			return int(n), nil
		}
	}
}

// WaitHot is Wait without a limit, for a measured loop: ppoll entered with
// a raw call and a timeout of hotBound, repeated until something is ready.
func (p Poll) WaitHot() (int, error) {
	ts := unix.NsecToTimespec(hotBound.Nanoseconds())
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		switch {
		case e == unix.EINTR || (e == 0 && n == 0):
			runtime.Gosched()
			ts = unix.NsecToTimespec(hotBound.Nanoseconds()) // ppoll leaves the remainder in it
		case e != 0:
			return 0, fmt.Errorf("poll over %d descriptors: %w", len(p), e)
		default:
			return int(n), nil
		}
	}
}

// WaitHot is Wait without a limit, for a measured loop: pselect6 entered
// with a raw call and a timeout of hotBound, repeated until something is
// ready.
func (s *Select) WaitHot() (int, error) {
	for {
		ts := unix.NsecToTimespec(hotBound.Nanoseconds())
		s.ready = s.watch
		n, _, e := unix.RawSyscall6(unix.SYS_PSELECT6, uintptr(s.nfd), uintptr(unsafe.Pointer(&s.ready)), 0, 0, uintptr(unsafe.Pointer(&ts)), 0)
		switch {
		case e == unix.EINTR || (e == 0 && n == 0):
			runtime.Gosched()
		case e != 0:
			return 0, fmt.Errorf("select over %d descriptors: %w", s.nfd, e)
		default:
			return int(n), nil
		}
	}
}
