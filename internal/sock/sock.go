// Package sock opens, tunes and drives TCP and UDP sockets with raw system
// calls (golang.org/x/sys/unix), for experiments whose data paths must not go
// through the net package or the Go netpoller.
//
// Every socket is close-on-exec. Data-path functions (ReadFull, WriteFull,
// Recv, Send, RecvFrom, SendTo, Epoll.Wait, Poll.Wait, Select.Wait,
// ReadZerocopyCompletions with nothing queued) do not allocate: they return
// unix.EAGAIN bare, so that a caller spinning on a non-blocking socket can
// compare errors.Is(err, unix.EAGAIN) without building an error each turn;
// every other error names the call and the descriptor. Callers that measure
// run these on a thread held with runtime.LockOSThread (see PinThread).
package sock

import (
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FD is a socket (or epoll) file descriptor owned by the caller.
type FD int

// Close closes the descriptor. It is not retried on EINTR: Linux releases the
// descriptor before close(2) can be interrupted, so a retry could close a
// descriptor another thread has just been given.
func (fd FD) Close() error {
	if err := unix.Close(int(fd)); err != nil {
		return fmt.Errorf("close fd %d: %w", fd, err)
	}
	return nil
}

// Network is the transport protocol of a socket.
type Network string

// Networks. The IP version follows from the address: an IPv4 address opens
// an AF_INET socket, any IPv6 address (IPv4-mapped included) an AF_INET6 one.
const (
	TCP Network = "tcp"
	UDP Network = "udp"
)

func (n Network) typeAndProto() (int, int, error) {
	switch n {
	case TCP:
		return unix.SOCK_STREAM, unix.IPPROTO_TCP, nil
	case UDP:
		return unix.SOCK_DGRAM, unix.IPPROTO_UDP, nil
	default:
		return 0, 0, fmt.Errorf("network %q is neither %q nor %q", string(n), TCP, UDP)
	}
}

// Flag modifies how Listen, Accept and Connect open a socket.
type Flag uint

const (
	// NonBlock opens the socket with SOCK_NONBLOCK: calls that would block
	// return unix.EAGAIN instead.
	NonBlock Flag = 1 << iota
	// ReusePort sets SO_REUSEPORT before bind (Listen only), so that several
	// sockets can bind the same address and the kernel spreads incoming
	// connections or datagrams among them by flow hash.
	ReusePort
)

func joinFlags(flags []Flag) Flag {
	var all Flag
	for _, f := range flags {
		all |= f
	}
	return all
}

func open(network Network, addr netip.AddrPort, flags Flag) (FD, error) {
	typ, proto, err := network.typeAndProto()
	if err != nil {
		return -1, err
	}
	if !addr.IsValid() {
		return -1, fmt.Errorf("%s socket: invalid address %v", network, addr)
	}
	typ |= unix.SOCK_CLOEXEC
	if flags&NonBlock != 0 {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family(addr.Addr()), typ, proto)
	if err != nil {
		return -1, fmt.Errorf("%s socket for %v: %w", network, addr, err)
	}
	return FD(fd), nil
}

// sockaddr encodes addr for fd, resolving an IPv6 zone to its scope id.
func sockaddr(fd FD, r *rawAddr, addr netip.AddrPort) (uint32, error) {
	scope, err := scopeID(fd, addr.Addr().Zone())
	if err != nil {
		return 0, err
	}
	return encodeAddr(r, addr, scope), nil
}

// Listen opens a socket bound to addr (port 0 picks a free port; LocalAddr
// tells which). For TCP it also listens with the given backlog, which the
// kernel silently caps at net.core.somaxconn; for UDP backlog is ignored and
// the bound socket is ready for RecvFrom.
//
// TCP listeners get SO_REUSEADDR, so that an experiment can listen again on a
// port whose previous connections still sit in TIME_WAIT.
func Listen(network Network, addr netip.AddrPort, backlog int, flags ...Flag) (FD, error) {
	f := joinFlags(flags)
	fd, err := open(network, addr, f)
	if err != nil {
		return -1, err
	}
	if err := listen(fd, network, addr, backlog, f); err != nil {
		fd.Close()
		return -1, err
	}
	return fd, nil
}

func listen(fd FD, network Network, addr netip.AddrPort, backlog int, f Flag) error {
	if network == TCP {
		if err := SetReuseAddr(fd, true); err != nil {
			return err
		}
	}
	if f&ReusePort != 0 {
		if err := SetReusePort(fd, true); err != nil {
			return err
		}
	}
	var r rawAddr
	n, err := sockaddr(fd, &r, addr)
	if err != nil {
		return fmt.Errorf("bind fd %d to %v: %w", fd, addr, err)
	}
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(r.ptr()), uintptr(n)); e != 0 {
		return fmt.Errorf("bind fd %d to %v: %w", fd, addr, e)
	}
	if network == TCP {
		if err := unix.Listen(int(fd), backlog); err != nil {
			return fmt.Errorf("listen fd %d on %v: %w", fd, addr, err)
		}
	}
	return nil
}

// Accept takes the next connection from the TCP listener fd with accept4(2),
// retrying EINTR and ECONNABORTED (a connection reset while it waited in the
// accept queue). On a non-blocking listener an empty queue returns
// unix.EAGAIN. NonBlock applies to the new socket, independently of the
// listener's own mode.
func Accept(fd FD, flags ...Flag) (FD, error) {
	fl := uintptr(unix.SOCK_CLOEXEC)
	if joinFlags(flags)&NonBlock != 0 {
		fl |= unix.SOCK_NONBLOCK
	}
	for {
		nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, fl, 0, 0)
		switch e {
		case 0:
			return FD(nfd), nil
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return -1, unix.EAGAIN
		default:
			return -1, fmt.Errorf("accept on fd %d: %w", fd, e)
		}
	}
}

// Connect opens a socket connected to addr. For TCP it returns once the
// handshake has completed, also with NonBlock: the non-blocking connect's
// EINPROGRESS is waited out with poll(2) and the outcome read from SO_ERROR,
// so the caller always gets an established (and, with NonBlock,
// non-blocking) socket. For UDP connect(2) only records the default
// destination and source filter; nothing is sent.
func Connect(network Network, addr netip.AddrPort, flags ...Flag) (FD, error) {
	fd, err := open(network, addr, joinFlags(flags))
	if err != nil {
		return -1, err
	}
	if err := connect(fd, addr); err != nil {
		fd.Close()
		return -1, err
	}
	return fd, nil
}

func connect(fd FD, addr netip.AddrPort) error {
	var r rawAddr
	n, err := sockaddr(fd, &r, addr)
	if err != nil {
		return fmt.Errorf("connect fd %d to %v: %w", fd, addr, err)
	}
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(r.ptr()), uintptr(n))
	switch e {
	case 0:
		return nil
	case unix.EINPROGRESS, unix.EINTR:
		// An interrupted blocking connect goes on in the background, just
		// like a non-blocking one; calling connect again would only report
		// EALREADY, so both wait for writability and read the result.
	default:
		return fmt.Errorf("connect fd %d to %v: %w", fd, addr, e)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		_, err := unix.Ppoll(pfd, nil, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("connect fd %d to %v: waiting for the handshake: %w", fd, addr, err)
		}
		break
	}
	soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("connect fd %d to %v: SO_ERROR: %w", fd, addr, err)
	}
	if soerr != 0 {
		return fmt.Errorf("connect fd %d to %v: %w", fd, addr, unix.Errno(soerr))
	}
	return nil
}

// LocalAddr returns the address fd is bound to (getsockname(2)).
func LocalAddr(fd FD) (netip.AddrPort, error) {
	a, err := sockname(fd, unix.SYS_GETSOCKNAME)
	if err != nil {
		return a, fmt.Errorf("getsockname fd %d: %w", fd, err)
	}
	return a, nil
}

// PeerAddr returns the address fd is connected to (getpeername(2)); an
// unconnected socket gives ENOTCONN.
func PeerAddr(fd FD) (netip.AddrPort, error) {
	a, err := sockname(fd, unix.SYS_GETPEERNAME)
	if err != nil {
		return a, fmt.Errorf("getpeername fd %d: %w", fd, err)
	}
	return a, nil
}

func sockname(fd FD, trap uintptr) (netip.AddrPort, error) {
	var r rawAddr
	n := uint32(unsafe.Sizeof(r.sa))
	if _, _, e := unix.Syscall(trap, uintptr(fd), uintptr(r.ptr()), uintptr(unsafe.Pointer(&n))); e != 0 {
		return netip.AddrPort{}, e
	}
	return decodeAddr(&r)
}
