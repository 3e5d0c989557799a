package sock

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Completion reports that the MSG_ZEROCOPY sends numbered Lo through Hi
// (inclusive) are done and their buffers free for reuse. The kernel numbers a
// socket's zerocopy sends from 0 in a 32-bit counter that wraps, and merges
// consecutive completions into one range when it can.
type Completion struct {
	Lo, Hi uint32
	// Copied is SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied the data after
	// all, for at least one send in the range. Loopback and veth always copy
	// (the receiving socket in the same host must not see pages the sender
	// may still change), so there every completion is Copied.
	Copied bool
}

// Sends is the number of sends the completion covers.
func (c Completion) Sends() uint32 { return c.Hi - c.Lo + 1 }

// ReadZerocopyCompletions appends to dst every MSG_ZEROCOPY completion queued
// on fd's error queue, reading with recvmsg(MSG_ERRQUEUE|MSG_DONTWAIT) until
// the queue is empty; it never blocks. The kernel signals a non-empty error
// queue as POLLERR (EPOLLERR), which poll and epoll report without being
// asked. A message on the queue that is no zerocopy completion (an ICMP error
// on a UDP socket with IP_RECVERR, say) ends the read with an error that
// describes it; the completions read before it are returned with the error.
func ReadZerocopyCompletions(fd FD, dst []Completion) ([]Completion, error) {
	// The control buffer is 8-byte aligned for the cmsghdr cast in
	// parseZerocopy and large enough for a cmsghdr, a sock_extended_err and
	// the sockaddr_in6 of the offender that follows it (64 bytes on 64-bit).
	var oob struct {
		_ [0]uint64
		b [128]byte
	}
	for {
		msg := unix.Msghdr{Control: &oob.b[0]}
		msg.SetControllen(len(oob.b))
		_, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		switch e {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return dst, nil
		default:
			return dst, fmt.Errorf("recvmsg(MSG_ERRQUEUE) fd %d: %w", fd, e)
		}
		if msg.Flags&unix.MSG_CTRUNC != 0 {
			return dst, fmt.Errorf("recvmsg(MSG_ERRQUEUE) fd %d: control message truncated (MSG_CTRUNC)", fd)
		}
		c, err := parseZerocopy(oob.b[:msg.Controllen])
		if err != nil {
			return dst, fmt.Errorf("error queue of fd %d: %w", fd, err)
		}
		dst = append(dst, c)
	}
}

// parseZerocopy decodes the control message of one error-queue message: a
// SOL_IP/IP_RECVERR (IPv4 socket) or SOL_IPV6/IPV6_RECVERR (IPv6 socket)
// cmsg carrying a struct sock_extended_err with ee_origin
// SO_EE_ORIGIN_ZEROCOPY, the range in ee_info..ee_data and the
// SO_EE_CODE_ZEROCOPY_COPIED bit in ee_code. oob must be 8-byte aligned.
func parseZerocopy(oob []byte) (Completion, error) {
	if len(oob) < unix.CmsgLen(0) {
		return Completion{}, fmt.Errorf("control data of %d bytes holds no cmsghdr", len(oob))
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	v4 := h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR
	v6 := h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR
	if !v4 && !v6 {
		return Completion{}, fmt.Errorf("control message level %d type %d is neither IP_RECVERR nor IPV6_RECVERR", h.Level, h.Type)
	}
	if n := int(h.Len); n < unix.CmsgLen(int(unsafe.Sizeof(unix.SockExtendedErr{}))) || n > len(oob) {
		return Completion{}, fmt.Errorf("RECVERR control message length %d does not hold a sock_extended_err in %d bytes", n, len(oob))
	}
	ee := (*unix.SockExtendedErr)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
	if ee.Origin != unix.SO_EE_ORIGIN_ZEROCOPY {
		return Completion{}, fmt.Errorf("error-queue message with origin %d and errno %d (%v) is not a zerocopy completion", ee.Origin, ee.Errno, unix.Errno(ee.Errno))
	}
	return Completion{Lo: ee.Info, Hi: ee.Data, Copied: ee.Code&unix.SO_EE_CODE_ZEROCOPY_COPIED != 0}, nil
}
