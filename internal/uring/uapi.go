package uring

import (
	"strconv"

	"github.com/labctl/labctl/internal/kernel"
)

// Definitions from include/uapi/linux/io_uring.h, limited to what this
// package uses. Field layouts are checked against the header's sizes and
// offsets in uapi_test.go. golang.org/x/sys/unix has the system call numbers
// (SYS_IO_URING_SETUP/ENTER/REGISTER) but none of these.

// params is struct io_uring_params, filled by io_uring_setup(2).
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32 // milliseconds
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqringOffsets
	cqOff        cqringOffsets
}

// sqringOffsets is struct io_sqring_offsets: where each field of the
// submission ring lives in the mapping at offSQRing.
type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqringOffsets is struct io_cqring_offsets, the same for the completion
// ring at offCQRing.
type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// sqe is struct io_uring_sqe (64 bytes without IORING_SETUP_SQE128). The
// kernel's unions are named here after the member this package uses.
type sqe struct {
	opcode      uint8
	flags       uint8  // IOSQE_*
	ioprio      uint16 // send/recv: IORING_RECVSEND_* flags
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32 // msg_flags for send and recv, rw_flags for read and write
	userData    uint64
	bufIndex    uint16
	personality uint16
	fileIndex   uint32
	addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe (16 bytes without IORING_SETUP_CQE32): one
// completion, as the kernel wrote it into the ring.
type CQE struct {
	UserData uint64 // the user data of the request
	Res      int32  // the result: as the system call's return, or -errno
	Flags    uint32 // IORING_CQE_F_*
}

// probeOp is struct io_uring_probe_op.
type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16 // ioUringOpSupported
	resv2 uint32
}

// probe is struct io_uring_probe with room for every opcode an 8-bit
// opcode field can name.
type probe struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
	ops    [256]probeOp
}

// System call numbers are shared by all architectures since Linux 5.1
// (the asm-generic table); x/sys/unix's SYS_IO_URING_* carry them.

// io_uring_setup flags (IORING_SETUP_*).
const setupSQPoll = 1 << 1

// Features (IORING_FEAT_*) reported by io_uring_setup.
const (
	featSingleMmap     = 1 << 0 // Linux 5.4: SQ and CQ rings share one mapping
	featSQPollNonfixed = 1 << 7 // Linux 5.11: SQPOLL works with plain file descriptors
	featExtArg         = 1 << 8 // Linux 5.11: io_uring_enter takes a getevents_arg (a timeout)
)

// mmap offsets (IORING_OFF_*).
const (
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// SQ ring flags (IORING_SQ_*), written by the kernel.
const (
	sqNeedWakeup = 1 << 0 // the SQPOLL thread sleeps; wake it with enterSQWakeup
	sqCQOverflow = 1 << 1 // completions wait in the overflow list for an enter
)

// io_uring_enter flags (IORING_ENTER_*).
const (
	enterGetEvents = 1 << 0
	enterSQWakeup  = 1 << 1
	enterExtArg    = 1 << 3 // the last arguments are a getevents_arg and its size
)

// getEventsArg is struct io_uring_getevents_arg, passed with enterExtArg:
// ts points to a struct __kernel_timespec bounding the wait for events.
type getEventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	minWait   uint32 // min_wait_usec (Linux 6.12); 0 here
	ts        uint64
}

// io_uring_register opcodes (IORING_REGISTER_*).
const (
	registerBuffers = 0
	registerProbe   = 8
)

// ioUringOpSupported is IO_URING_OP_SUPPORTED in probeOp.flags.
const ioUringOpSupported = 1 << 0

// CQE flags (IORING_CQE_F_*).
const (
	// CQEFMore says the request will post more completions; for SEND_ZC, a
	// notification follows.
	CQEFMore = 1 << 1
	// CQEFNotif marks a SEND_ZC notification: the kernel no longer uses the
	// buffer (Linux 6.0).
	CQEFNotif = 1 << 3
)

// NotifUsageZCCopied is IORING_NOTIF_USAGE_ZC_COPIED: set in a notification's
// Res when SendZCReportUsage was asked for and the data was copied after all
// (Linux 6.2).
const NotifUsageZCCopied = 1 << 31

// ZCFlags are the IORING_RECVSEND_* and IORING_SEND_ZC_* flags of a SEND_ZC
// request (sqe.ioprio).
type ZCFlags uint16

const (
	// RecvSendPollFirst skips the first send attempt and waits for socket
	// space first (IORING_RECVSEND_POLL_FIRST).
	RecvSendPollFirst ZCFlags = 1 << 0
	// RecvSendFixedBuf sends from a buffer registered with RegisterBuffers
	// (IORING_RECVSEND_FIXED_BUF), which saves pinning the pages per send.
	RecvSendFixedBuf ZCFlags = 1 << 2
	// SendZCReportUsage makes the notification say whether the data was
	// copied (IORING_SEND_ZC_REPORT_USAGE, Linux 6.2); see CQE.ZCCopied.
	SendZCReportUsage ZCFlags = 1 << 3
)

// Op is an io_uring opcode (enum io_uring_op).
type Op uint8

// The opcodes this package prepares.
const (
	OpNop    Op = 0
	OpRead   Op = 22 // Linux 5.6
	OpWrite  Op = 23 // Linux 5.6
	OpSend   Op = 26 // Linux 5.6
	OpRecv   Op = 27 // Linux 5.6
	OpSendZC Op = 47 // Linux 6.0
)

// Feature is the opcode as a kernel feature, with the version that
// brought it (io_uring_setup itself came in Linux 5.1).
func (o Op) Feature() kernel.Feature {
	since := map[Op]kernel.Version{OpNop: kernel.V(5, 1), OpRead: kernel.V(5, 6), OpWrite: kernel.V(5, 6),
		OpSend: kernel.V(5, 6), OpRecv: kernel.V(5, 6), OpSendZC: kernel.V(6, 0)}[o]
	return kernel.Feature{Name: "io_uring " + o.String(), Since: since}
}

func (o Op) String() string {
	switch o {
	case OpNop:
		return "NOP"
	case OpRead:
		return "READ"
	case OpWrite:
		return "WRITE"
	case OpSend:
		return "SEND"
	case OpRecv:
		return "RECV"
	case OpSendZC:
		return "SEND_ZC"
	default:
		return "op " + strconv.Itoa(int(o))
	}
}
