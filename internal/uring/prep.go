package uring

import (
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"
)

// prep fills the next free SQE. It does not publish it: Submit does.
func (r *Ring) prep(op Op, fd int, buf []byte, off uint64, opFlags uint32, ioprio, bufIndex uint16, userData uint64) error {
	if r.sqeTail-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		return ErrQueueFull
	}
	if len(buf) > math.MaxUint32 {
		return fmt.Errorf("io_uring %v on fd %d: buffer of %d bytes exceeds the 32-bit length field", op, fd, len(buf))
	}
	i := r.sqeTail & r.sqMask
	r.sqes[i] = sqe{
		opcode:   uint8(op),
		ioprio:   ioprio,
		fd:       int32(fd),
		off:      off,
		addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))),
		len:      uint32(len(buf)),
		opFlags:  opFlags,
		userData: userData,
		bufIndex: bufIndex,
	}
	// Referencing buf from the heap-allocated Ring keeps it reachable while
	// the SQE waits and, by escape analysis, off the caller's movable stack.
	r.queued[i] = buf
	r.sqeTail++
	return nil
}

// PrepNop queues a request that does nothing and completes with Res 0: the
// bare cost of a trip through the rings.
func (r *Ring) PrepNop(userData uint64) error {
	return r.prep(OpNop, -1, nil, 0, 0, 0, 0, userData)
}

// PrepRecv queues a recv(2) of up to len(buf) bytes from socket fd with the
// given MSG_* flags (Linux 5.6+). The completion's Res is the byte count (0:
// the peer shut down) or -errno. If no data is queued, the kernel arms a
// poll on the socket and completes the request when data arrives
// (IORING_FEAT_FAST_POLL, Linux 5.7), so the request does not fail with
// EAGAIN even on a non-blocking socket; with MSG_DONTWAIT in flags it does.
func (r *Ring) PrepRecv(fd int, buf []byte, flags int, userData uint64) error {
	return r.prep(OpRecv, fd, buf, 0, uint32(flags), 0, 0, userData)
}

// PrepSend queues a send(2) of buf on socket fd with the given MSG_* flags
// (Linux 5.6+). Res is the bytes sent, which can be short for a stream
// socket, or -errno.
func (r *Ring) PrepSend(fd int, buf []byte, flags int, userData uint64) error {
	return r.prep(OpSend, fd, buf, 0, uint32(flags), 0, 0, userData)
}

// PrepSendZC queues a zero-copy send of buf on socket fd (IORING_OP_SEND_ZC,
// Linux 6.0), which needs no SO_ZEROCOPY on the socket. It posts two
// completions with userData: first the result (Res as for PrepSend) with
// CQEFMore set, then a notification (CQE.Notif) once the kernel has let go
// of buf, which must not change before. With SendZCReportUsage (Linux 6.2)
// the notification also tells whether the data was copied after all
// (CQE.ZCCopied), as it always is over loopback and veth. With
// RecvSendFixedBuf, buf must lie inside one buffer registered with
// RegisterBuffers.
func (r *Ring) PrepSendZC(fd int, buf []byte, flags int, zc ZCFlags, userData uint64) error {
	var index uint16
	if zc&RecvSendFixedBuf != 0 {
		i, ok := r.fixedIndex(buf)
		if !ok {
			return fmt.Errorf("io_uring SEND_ZC on fd %d with RecvSendFixedBuf: buffer of %d bytes is not inside a registered buffer", fd, len(buf))
		}
		index = i
	}
	return r.prep(OpSendZC, fd, buf, 0, uint32(flags), uint16(zc), index, userData)
}

// PrepRead queues a read(2) (pread at off; off -1 reads at the file
// position, Linux 5.6+) of up to len(buf) bytes from fd. Res is the byte
// count (0 at end of file) or -errno.
func (r *Ring) PrepRead(fd int, buf []byte, off int64, userData uint64) error {
	return r.prep(OpRead, fd, buf, uint64(off), 0, 0, 0, userData)
}

// PrepWrite queues a write(2) (pwrite at off; off -1 writes at the file
// position) of buf to fd. Res is the bytes written or -errno.
func (r *Ring) PrepWrite(fd int, buf []byte, off int64, userData uint64) error {
	return r.prep(OpWrite, fd, buf, uint64(off), 0, 0, 0, userData)
}
