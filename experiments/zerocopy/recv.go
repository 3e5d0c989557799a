package zerocopy

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/sock"
)

// tcpZerocopyReceive is struct tcp_zerocopy_receive of
// include/uapi/linux/tcp.h (Linux 4.18 had the first three fields; the
// struct reached these 64 bytes in 5.14). An older kernel reads the prefix
// it knows and says so through optlen.
type tcpZerocopyReceive struct {
	Address        uint64 // in: the mapping, page-aligned
	Length         uint32 // in: bytes to map; out: bytes mapped
	RecvSkipHint   uint32 // out: bytes ahead that cannot be mapped: read them
	Inq            uint32 // out: bytes left in the receive queue
	Err            int32  // out: pending socket error
	CopybufAddress uint64 // in: buffer for data too small to map (5.11)
	CopybufLen     int32  // in/out
	Flags          uint32 // in: TCP_RECEIVE_ZEROCOPY_FLAG_*
	MsgControl     uint64 // in/out: ancillary data (5.14)
	MsgControllen  uint64
	MsgFlags       uint32
	Reserved       uint32
}

// zerocopyReceive calls getsockopt(TCP_ZEROCOPY_RECEIVE): the kernel maps
// the whole pages at the head of the receive queue into the mapping at
// zc.Address, if their skb fragments are whole page-aligned private pages,
// and consumes them. It returns the bare errno.
func zerocopyReceive(fd sock.FD, zc *tcpZerocopyReceive) unix.Errno {
	n := uint32(unsafe.Sizeof(*zc))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_ZEROCOPY_RECEIVE, uintptr(unsafe.Pointer(zc)), uintptr(unsafe.Pointer(&n)), 0)
	return e
}

// receiver takes a stream out of a connected TCP socket through one
// receive path, counting system calls and where the bytes went.
type receiver struct {
	path  string
	fd    sock.FD
	buf   []byte // anonymous mapping of chunk bytes
	zcMap []byte // tcp_zerocopy: the socket's mapping
	calls int64
	// Bytes by how they reached the application: copied into buf, mapped
	// from the socket, or discarded in the kernel (MSG_TRUNC).
	copied, mapped, discarded int64
}

// newReceiver prepares a receive path on a connected socket. A path the
// kernel refuses returns *unsupported together with a receiver that reads,
// so that the stream is still drained and the sender's step ends normally.
func newReceiver(fd sock.FD, path string, chunk int) (*receiver, error) {
	r := &receiver{path: path, fd: fd}
	var err error
	if r.buf, err = unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("%s: map a %d-byte buffer: %w", path, chunk, err)
	}
	if path != tcpzc {
		return r, nil
	}
	// tcp_mmap reserves address space only; the pages arrive through
	// TCP_ZEROCOPY_RECEIVE. The mapping must be read-only and shared.
	if r.zcMap, err = unix.Mmap(int(fd), 0, chunk, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		r.path = read
		return r, kernel.NotSupported(kernel.Feature{Name: "mmap of a TCP socket", Since: kernel.V(4, 18)}, err)
	}
	zc := tcpZerocopyReceive{Address: uint64(uintptr(unsafe.Pointer(&r.zcMap[0])))}
	if e := zerocopyReceive(fd, &zc); e == unix.ENOPROTOOPT || e == unix.EOPNOTSUPP {
		r.path = read
		return r, kernel.NotSupported(kernel.Feature{Name: "TCP_ZEROCOPY_RECEIVE", Since: kernel.V(4, 18)}, e)
	}
	// A whole chunk in the queue before the reader wakes gives the kernel
	// whole pages to map; TCP also grows the receive buffer to fit (4.18).
	if err := sock.SetRecvLowat(fd, chunk); err != nil {
		return nil, err
	}
	return r, nil
}

// next takes what the socket has, waiting for data; eof reports the end
// of the stream. n counts bytes of the stream consumed, however.
func (r *receiver) next() (n int, eof bool, err error) {
	switch r.path {
	case read:
		return r.read(0)
	case recvTrunc:
		return r.read(unix.MSG_TRUNC)
	case tcpzc:
		return r.zerocopy()
	}
	return 0, false, fmt.Errorf("no receive path %q", r.path)
}

// read calls recv(2): with MSG_TRUNC, TCP discards the data without
// copying it and returns how much it discarded.
func (r *receiver) read(flags int) (int, bool, error) {
	r.calls++
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), uintptr(flags), 0, 0)
	switch {
	case e == unix.EINTR:
		return 0, false, nil
	case e != 0:
		return 0, false, fmt.Errorf("recv fd %d: %w", r.fd, e)
	case n == 0:
		return 0, true, nil
	}
	if flags&unix.MSG_TRUNC != 0 {
		r.discarded += int64(n)
	} else {
		r.copied += int64(n)
	}
	return int(n), false, nil
}

// zerocopy maps what it can and reads the bytes the kernel says cannot be
// mapped (recv_skip_hint); with nothing queued it waits in poll.
func (r *receiver) zerocopy() (int, bool, error) {
	zc := tcpZerocopyReceive{Address: uint64(uintptr(unsafe.Pointer(&r.zcMap[0]))), Length: uint32(len(r.zcMap))}
	r.calls++
	switch e := zerocopyReceive(r.fd, &zc); e {
	case 0:
	case unix.EINTR:
		return 0, false, nil
	case unix.EIO:
		// The kernel's answer to an empty queue after the peer's FIN.
		return 0, true, nil
	default:
		return 0, false, fmt.Errorf("getsockopt TCP_ZEROCOPY_RECEIVE fd %d: %w", r.fd, e)
	}
	if zc.Err != 0 {
		return 0, false, fmt.Errorf("TCP_ZEROCOPY_RECEIVE fd %d: socket error: %w", r.fd, unix.Errno(-zc.Err))
	}
	r.mapped += int64(zc.Length)
	if zc.RecvSkipHint > 0 {
		n, eof, err := r.readN(int(min(zc.RecvSkipHint, uint32(len(r.buf)))))
		return int(zc.Length) + n, eof, err
	}
	if zc.Length > 0 {
		return int(zc.Length), false, nil
	}
	// Nothing queued: end of stream, or wait for data. A peek tells the
	// end (0) from an empty queue (EAGAIN) without consuming anything.
	r.calls++
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.fd), uintptr(unsafe.Pointer(&r.buf[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	switch {
	case e == 0 && n == 0:
		return 0, true, nil
	case e == 0, e == unix.EINTR:
		return 0, false, nil
	case e != unix.EAGAIN:
		return 0, false, fmt.Errorf("recv MSG_PEEK fd %d: %w", r.fd, e)
	}
	p := sock.Poll{}
	p.Add(r.fd, unix.POLLIN)
	r.calls++
	_, err := p.Wait(-1)
	return 0, false, err
}

// readN reads up to n bytes with read(2).
func (r *receiver) readN(n int) (int, bool, error) {
	r.calls++
	m, _, e := unix.Syscall(unix.SYS_READ, uintptr(r.fd), uintptr(unsafe.Pointer(&r.buf[0])), uintptr(n))
	switch {
	case e == unix.EINTR:
		return 0, false, nil
	case e != 0:
		return 0, false, fmt.Errorf("read fd %d: %w", r.fd, e)
	case m == 0:
		return 0, true, nil
	}
	r.copied += int64(m)
	return int(m), false, nil
}

func (r *receiver) close() error {
	var errs []error
	for _, m := range [][]byte{r.zcMap, r.buf} {
		if m != nil {
			errs = append(errs, unix.Munmap(m))
		}
	}
	return errors.Join(errs...)
}
