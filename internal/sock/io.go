package sock

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The pointer-to-uintptr conversions below sit in the argument lists of
// unix.Syscall calls, the one place where Go keeps the buffer alive and in
// place (a goroutine's stack is not moved while it is in a system call).

// ReadFull reads exactly len(buf) bytes from the stream socket fd with
// read(2), looping over short reads and retrying EINTR. An orderly shutdown
// by the peer (read returns 0) gives io.EOF if nothing was read and
// io.ErrUnexpectedEOF after a partial read. On a non-blocking socket it
// returns the bytes read so far and unix.EAGAIN when the receive queue runs
// dry. Not for datagram sockets: each read(2) there consumes one datagram,
// and an empty datagram would look like EOF; use Recv.
func ReadFull(fd FD, buf []byte) (int, error) { return readFull(fd, buf, false) }

// readFull is ReadFull, or with hot set Hot.ReadFull: raw calls, and an
// EAGAIN (a receive timeout that expired) retried after yielding.
func readFull(fd FD, buf []byte, hot bool) (int, error) {
	n := 0
	for n < len(buf) {
		p := buf[n:]
		var m uintptr
		var e unix.Errno
		if hot {
			m, _, e = unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		} else {
			m, _, e = unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		}
		switch {
		case hot && (e == unix.EINTR || e == unix.EAGAIN):
			runtime.Gosched()
			continue
		case e == unix.EINTR:
			continue
		case e == unix.EAGAIN:
			return n, unix.EAGAIN
		case e != 0:
			return n, fmt.Errorf("read fd %d: %w", fd, e)
		case m == 0 && n == 0:
			return 0, io.EOF
		case m == 0:
			return n, io.ErrUnexpectedEOF
		}
		n += int(m)
	}
	return n, nil
}

// WriteFull writes all of buf to the stream socket fd with write(2), looping
// over short writes (a blocking TCP write returns short only when a signal
// interrupts it after some data was queued) and retrying EINTR. On a
// non-blocking socket it returns the bytes written so far and unix.EAGAIN
// when the send buffer is full. A write to a connection the peer has reset
// fails with EPIPE; Go's runtime ignores the SIGPIPE that comes with it for
// descriptors other than stdout and stderr.
func WriteFull(fd FD, buf []byte) (int, error) { return writeFull(fd, buf, false) }

// writeFull is WriteFull, or with hot set Hot.WriteFull: raw calls, and an
// EAGAIN (a send timeout that expired with nothing sent) retried after
// yielding.
func writeFull(fd FD, buf []byte, hot bool) (int, error) {
	n := 0
	for n < len(buf) {
		p := buf[n:]
		var m uintptr
		var e unix.Errno
		if hot {
			m, _, e = unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		} else {
			m, _, e = unix.Syscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		}
		switch {
		case e == 0:
			n += int(m)
		case hot && (e == unix.EINTR || e == unix.EAGAIN):
			runtime.Gosched()
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return n, unix.EAGAIN
		default:
			return n, fmt.Errorf("write fd %d: %w", fd, e)
		}
	}
	return n, nil
}

// Recv makes one recv(2) call (recvfrom without an address) with the given
// MSG_* flags, retrying EINTR only. It returns unix.EAGAIN when nothing is
// queued on a non-blocking socket or with MSG_DONTWAIT. On a stream socket
// 0 bytes and a nil error mean the peer shut down; on a datagram socket it
// is an empty datagram, and a datagram longer than buf is truncated: the
// rest is lost (with MSG_TRUNC in flags, n is the datagram's full length).
func Recv(fd FD, buf []byte, flags int) (int, error) { return recv(fd, buf, flags, false) }

// RecvRaw is Recv entered with a raw call, for a measured loop on a
// non-blocking socket: the call never blocks, so it never holds off the
// runtime, and Go's sysmon does not wake for it (see Hot).
func RecvRaw(fd FD, buf []byte, flags int) (int, error) { return recv(fd, buf, flags, true) }

func recv(fd FD, buf []byte, flags int, raw bool) (int, error) {
	return transfer(unix.SYS_RECVFROM, "recv", fd, buf, flags, raw)
}

// transfer makes one recvfrom or sendto call without an address,
// retrying EINTR.
func transfer(trap uintptr, name string, fd FD, buf []byte, flags int, raw bool) (int, error) {
	for {
		var n uintptr
		var e unix.Errno
		if raw {
			n, _, e = unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), uintptr(flags), 0, 0)
		} else {
			n, _, e = unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), uintptr(flags), 0, 0)
		}
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
			// A raw call's EINTR is most likely the runtime's preemption
			// signal, sent again and again until the goroutine reaches a
			// preemption point: yield, or the retries livelock (see Hot).
			if raw {
				runtime.Gosched()
			}
		case unix.EAGAIN:
			return 0, unix.EAGAIN
		default:
			return 0, fmt.Errorf("%s fd %d: %w", name, fd, e)
		}
	}
}

// Send makes one send(2) call (sendto without an address) with the given
// MSG_* flags, retrying EINTR only. A stream socket may accept fewer bytes
// than len(buf); a non-blocking one (or MSG_DONTWAIT) returns unix.EAGAIN
// when the send buffer is full. With MSG_ZEROCOPY on a socket that has
// SO_ZEROCOPY set, the kernel pins buf instead of copying it, and buf must
// not change until ReadZerocopyCompletions reports the send complete; without
// SO_ZEROCOPY the kernel ignores MSG_ZEROCOPY and copies. Add MSG_NOSIGNAL to
// flags to avoid SIGPIPE on a reset connection.
func Send(fd FD, buf []byte, flags int) (int, error) { return send(fd, buf, flags, false) }

// SendRaw is Send entered with a raw call, for a measured loop on a
// non-blocking socket (see RecvRaw).
func SendRaw(fd FD, buf []byte, flags int) (int, error) { return send(fd, buf, flags, true) }

func send(fd FD, buf []byte, flags int, raw bool) (int, error) {
	return transfer(unix.SYS_SENDTO, "send", fd, buf, flags, raw)
}

// RecvFrom is Recv that also returns the sender's address, for unconnected
// datagram sockets.
func RecvFrom(fd FD, buf []byte, flags int) (int, netip.AddrPort, error) {
	var r rawAddr
	alen := uint32(unsafe.Sizeof(r.sa))
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), uintptr(flags), uintptr(r.ptr()), uintptr(unsafe.Pointer(&alen)))
		switch e {
		case 0:
			from, err := decodeAddr(&r)
			if err != nil {
				return int(n), from, fmt.Errorf("recvfrom fd %d: sender: %w", fd, err)
			}
			return int(n), from, nil
		case unix.EINTR:
		case unix.EAGAIN:
			return 0, netip.AddrPort{}, unix.EAGAIN
		default:
			return 0, netip.AddrPort{}, fmt.Errorf("recvfrom fd %d: %w", fd, e)
		}
	}
}

// SendTo is Send to an explicit destination, for unconnected datagram
// sockets. An IPv6 zone given by name costs an interface lookup per call;
// numeric zones (as RecvFrom returns them) do not.
func SendTo(fd FD, buf []byte, flags int, to netip.AddrPort) (int, error) {
	var r rawAddr
	alen, err := sockaddr(fd, &r, to)
	if err != nil {
		return 0, fmt.Errorf("sendto fd %d to %v: %w", fd, to, err)
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), uintptr(flags), uintptr(r.ptr()), uintptr(alen))
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
		case unix.EAGAIN:
			return 0, unix.EAGAIN
		default:
			return 0, fmt.Errorf("sendto fd %d to %v: %w", fd, to, e)
		}
	}
}
