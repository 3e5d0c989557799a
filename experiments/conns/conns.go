package conns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sock"
)

// Opening and closing many connections with raw system calls. Nothing here
// is timed per operation: the experiments measure memory and limits, so
// the calls only have to be the ones a server or client would make, on
// the role's locked thread.

// errPending is a connect whose handshake did not complete in time: the
// SYN (or its answer) was dropped and the kernel is retransmitting it.
var errPending = errors.New("handshake not complete: SYN unanswered (the kernel retransmits it after 1 s, 3 s, ...)")

// dial opens a TCP socket to dst and waits up to timeout for the
// handshake, watching ctx. With a valid src the socket is bound to that
// address with IP_BIND_ADDRESS_NO_PORT (Linux 4.2+), so the kernel picks
// the port at connect time for the full 4-tuple rather than reserving one
// at bind time: each source address gets its own ephemeral port range.
// The socket it returns is non-blocking. Errors wrap the errno of the call
// that refused (socket: EMFILE, ENFILE; connect: EADDRNOTAVAIL) or
// errPending.
func dial(ctx context.Context, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (sock.FD, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := connectFD(ctx, fd, src, dst, timeout); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return sock.FD(fd), nil
}

func connectFD(ctx context.Context, fd int, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	if src.IsValid() {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			return fmt.Errorf("fd %d: IP_BIND_ADDRESS_NO_PORT: %w", fd, err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return fmt.Errorf("bind fd %d to %v: %w", fd, src, err)
		}
	}
	err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
	if err == nil {
		return nil
	}
	if err != unix.EINPROGRESS {
		return fmt.Errorf("connect fd %d to %v: %w", fd, dst, err)
	}
	deadline := time.Now().Add(timeout)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		// Short waits, so that a cancelled run is noticed.
		wait := min(time.Until(deadline), 50*time.Millisecond)
		if wait <= 0 {
			return fmt.Errorf("connect fd %d to %v: %w", fd, dst, errPending)
		}
		n, err := unix.Poll(pfd, int((wait+time.Millisecond-1)/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("connect fd %d to %v: poll: %w", fd, dst, err)
		}
		if n > 0 {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("connect fd %d to %v: SO_ERROR: %w", fd, dst, err)
	}
	if soerr != 0 {
		return fmt.Errorf("connect fd %d to %v: %w", fd, dst, unix.Errno(soerr))
	}
	return nil
}

// abort closes fd with a reset (SO_LINGER on, timeout 0): the connection
// leaves no TIME_WAIT socket behind, on either side.
func abort(fd sock.FD) {
	_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	_ = unix.Close(int(fd))
}

// abortAll aborts every descriptor of fds.
func abortAll(fds []sock.FD) {
	for _, fd := range fds {
		abort(fd)
	}
}

// localPortRange reads net.ipv4.ip_local_port_range of the calling
// thread's network namespace.
func localPortRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	return parsePortRange(string(b))
}

func parsePortRange(s string) (lo, hi int, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: want two numbers", s)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || lo > hi {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: want \"low high\"", s)
	}
	return lo, hi, nil
}

// waitFor polls cond with growing pauses (5 ms to 200 ms) until it holds,
// ctx ends or timeout passes. A kernel transition that needs a timer
// (a delayed ACK, up to 200 ms) takes a few rounds.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached after %v", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}
