// Package uring is a minimal io_uring written from the kernel's UAPI
// (include/uapi/linux/io_uring.h) on raw system calls: enough to send,
// receive, read and write through the rings, with and without a kernel
// submission thread (SQPOLL), and to count the system calls that costs.
//
// A Ring belongs to one goroutine, which for measurements holds its thread
// with runtime.LockOSThread: the kernel completes network requests through
// task work queued on the thread that submitted them, so a goroutine that
// changes threads makes another thread do (and be woken for) that work.
//
// Requests read and write caller memory asynchronously. A buffer passed to a
// Prep method must stay reachable until its completion arrives (for
// PrepSendZC, until its notification); the Ring itself references it only
// until the SQE slot is reused, which can be sooner. Taking a reference makes the compiler
// allocate such buffers on the heap, which the Go runtime never moves, so
// the address the kernel holds stays valid.
package uring

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/labctl/labctl/internal/kernel"
	"golang.org/x/sys/unix"
)

// Memory ordering. The rings are shared with the kernel, which publishes the
// SQ head and the CQ tail with smp_store_release and reads the SQ tail and
// the CQ head with smp_load_acquire. User space must pair with that: store
// the SQ tail and the CQ head with release semantics, load the SQ head and
// the CQ tail with acquire semantics. This package touches those four words,
// and the SQ flags, only through sync/atomic. Go's memory model speaks of
// goroutines, not of the kernel, so the argument rests on what those
// operations are: sequentially consistent atomics that the compiler never
// moves ordinary loads and stores across, which on x86-64 compile to an XCHG
// for a store (a full barrier) and a plain MOV for a load (x86's total store
// order makes every load an acquire), and on arm64 to STLR (release) and LDAR
// (acquire). Hence:
//   - SQE contents written before atomic.StoreUint32(sqTail) are visible to
//     the kernel once it sees the new tail;
//   - CQE contents are read only after atomic.LoadUint32(cqTail) has shown
//     them posted, and atomic.StoreUint32(cqHead) hands slots back only after
//     they were read;
//   - with SQPOLL, the load of the SQ flags that follows the tail store
//     cannot be performed before it (XCHG on x86-64; LDAR after STLR on
//     arm64). The kernel thread relies on that store-load order: it sets
//     IORING_SQ_NEED_WAKEUP, issues a full barrier and checks the tail once
//     more before it sleeps, so either it sees the new tail or Submit sees
//     the flag.

// ErrUnavailable says io_uring cannot be used here at all.
var ErrUnavailable = errors.New("io_uring unavailable")

// ErrQueueFull is returned by the Prep methods when every SQE is taken:
// Submit the queued ones (with SQPOLL: wait for the kernel thread to consume
// them) and prepare again.
var ErrQueueFull = errors.New("io_uring submission queue full")

// Ring is an io_uring instance with its mapped submission and completion
// queues. It is not safe for concurrent use.
type Ring struct {
	fd     int
	sqpoll bool

	// Submission queue: the kernel advances the head, this side the tail.
	sqHead, sqTail, sqFlags *uint32
	sqMask, sqEntries       uint32
	sqes                    []sqe
	sqeTail                 uint32   // SQEs prepared, published or not
	queued                  [][]byte // per SQE slot: its buffer, referenced while the SQE waits

	// Completion queue: the kernel advances the tail, this side the head.
	cqHeadPtr, cqTail *uint32
	cqMask            uint32
	cqHead            uint32 // local copy of *cqHeadPtr, which only this side writes
	cqes              []CQE

	fixed  [][]byte // buffers registered with RegisterBuffers
	enters uint64   // io_uring_enter calls made

	// hot: waits are raw calls bounded by hotBound (SetHot); extArg: the
	// kernel takes the bound (IORING_FEAT_EXT_ARG).
	hot, extArg bool
	bound       unix.Timespec
	arg         getEventsArg

	ringMem, cqMem, sqeMem []byte
}

// Option configures New.
type Option func(*params)

// WithSQPoll starts a kernel thread (IORING_SETUP_SQPOLL) that polls the
// submission queue, so that submitting needs no system call while the thread
// is awake. The thread sleeps after idle (whole milliseconds; 0 means the
// kernel's default of one second) without new SQEs, and Submit then wakes it
// with one io_uring_enter. Using plain (unregistered) descriptors with SQPOLL
// needs Linux 5.11; New refuses SQPOLL on older kernels.
func WithSQPoll(idle time.Duration) Option {
	return func(p *params) {
		p.flags |= setupSQPoll
		p.sqThreadIdle = uint32(min(idle/time.Millisecond, math.MaxUint32))
	}
}

// New sets up a ring with room for entries SQEs (rounded up to a power of
// two by the kernel, at most 32768) and twice as many CQEs, and maps its
// queues. If io_uring is disabled (kernel.io_uring_disabled, Linux 6.6+),
// filtered by seccomp (as Docker's default profile does) or not built in, the
// error wraps ErrUnavailable and the errno and says which is likely.
func New(entries uint32, opts ...Option) (*Ring, error) {
	var p params
	for _, o := range opts {
		o(&p)
	}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, setupError(e, entries)
	}
	r := &Ring{fd: int(fd), sqpoll: p.flags&setupSQPoll != 0, extArg: p.features&featExtArg != 0}
	if r.sqpoll && p.features&featSQPollNonfixed == 0 {
		unix.Close(r.fd)
		return nil, kernel.NotSupported(kernel.Feature{Name: "io_uring SQPOLL with unregistered descriptors", Since: kernel.V(5, 11)}, nil)
	}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func setupError(e unix.Errno, entries uint32) error {
	if e != unix.EPERM && e != unix.ENOSYS {
		return fmt.Errorf("io_uring_setup with %d entries: %w", entries, e)
	}
	// Absent before Linux 6.6; an empty value then selects the generic reason.
	disabled, _ := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
	return fmt.Errorf("io_uring_setup: %w: %s: %w", ErrUnavailable, unavailableReason(e, strings.TrimSpace(string(disabled))), e)
}

// unavailableReason explains an EPERM or ENOSYS from io_uring_setup, given
// the value of kernel.io_uring_disabled ("" when the sysctl is missing).
func unavailableReason(e unix.Errno, disabled string) string {
	switch {
	case e == unix.ENOSYS:
		return "the kernel has no io_uring (CONFIG_IO_URING=n) or a seccomp filter hides it"
	case disabled == "2":
		return "disabled for everyone by kernel.io_uring_disabled=2"
	case disabled == "1":
		return "kernel.io_uring_disabled=1 allows it only to CAP_SYS_ADMIN and members of kernel.io_uring_group"
	default:
		return "denied, most likely by a seccomp filter (container runtimes block io_uring by default) or a security module"
	}
}

func (r *Ring) mmap(p *params) error {
	const prot, flags = unix.PROT_READ | unix.PROT_WRITE, unix.MAP_SHARED | unix.MAP_POPULATE
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(CQE{}))
	single := p.features&featSingleMmap != 0
	if single {
		// Linux 5.4+: both rings live in the one mapping at offSQRing.
		sqSize = max(sqSize, cqSize)
	}
	var err error
	if r.ringMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring %d: mmap SQ ring (%d bytes): %w", r.fd, sqSize, err)
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("io_uring %d: mmap CQ ring (%d bytes): %w", r.fd, cqSize, err)
		}
		cqMem = r.cqMem
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(sqe{}))
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring %d: mmap SQE array (%d bytes): %w", r.fd, sqeSize, err)
	}

	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail, r.sqFlags = u32(r.ringMem, p.sqOff.head), u32(r.ringMem, p.sqOff.tail), u32(r.ringMem, p.sqOff.flags)
	r.sqMask, r.sqEntries = *u32(r.ringMem, p.sqOff.ringMask), *u32(r.ringMem, p.sqOff.ringEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	r.queued = make([][]byte, r.sqEntries)
	// The SQ array maps ring positions to SQE indexes. Filling it with the
	// identity once lets SQE i always travel at ring position i (mod size).
	array := unsafe.Slice(u32(r.ringMem, p.sqOff.array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.cqHeadPtr, r.cqTail = u32(cqMem, p.cqOff.head), u32(cqMem, p.cqOff.tail)
	r.cqMask = *u32(cqMem, p.cqOff.ringMask)
	r.cqHead = atomic.LoadUint32(r.cqHeadPtr)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), *u32(cqMem, p.cqOff.ringEntries))
	return nil
}

// Close unmaps the queues and closes the ring. The kernel cancels requests
// still in flight asynchronously; their buffers must stay untouched until
// then, so close a ring only after its requests completed.
func (r *Ring) Close() error {
	var errs []error
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.ringMem} {
		if m != nil {
			if err := unix.Munmap(m); err != nil {
				errs = append(errs, fmt.Errorf("io_uring %d: munmap: %w", r.fd, err))
			}
		}
	}
	r.sqeMem, r.cqMem, r.ringMem, r.sqes, r.cqes = nil, nil, nil, nil, nil
	if r.fd >= 0 {
		if err := unix.Close(r.fd); err != nil {
			errs = append(errs, fmt.Errorf("io_uring %d: close: %w", r.fd, err))
		}
		r.fd = -1
	}
	return errors.Join(errs...)
}

// Enters returns the number of io_uring_enter system calls the ring has made,
// for experiments that report system calls per message.
func (r *Ring) Enters() uint64 { return r.enters }

func (r *Ring) enter(toSubmit, minComplete, flags uint32) (int, unix.Errno) {
	r.enters++
	if r.hot && flags&enterGetEvents != 0 && minComplete > 0 {
		// A wait for completions, entered raw and bounded, as sock.Hot
		// does for sockets (see there): Go's sysmon stays asleep, and a
		// bound that expires (ETIME) yields so that a stop-the-world
		// proceeds; the caller's loop enters again.
		r.arg.ts = uint64(uintptr(unsafe.Pointer(&r.bound)))
		n, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete),
			uintptr(flags|enterExtArg), uintptr(unsafe.Pointer(&r.arg)), unsafe.Sizeof(r.arg))
		if e == unix.ETIME || e == unix.EINTR {
			runtime.Gosched()
			return int(n), unix.EINTR // retried by every caller
		}
		return int(n), e
	}
	n, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	return int(n), e
}

// HotBound is how long a hot wait lasts in the kernel before it yields
// (the same bound as sock.Hot's).
const HotBound = 20 * time.Millisecond

// SetHot makes the ring's waits for completions raw calls bounded by
// HotBound, for a measured loop: the same footing as sock.Hot's sockets.
// It reports false, and changes nothing, on a kernel whose io_uring_enter
// takes no timeout (before Linux 5.11).
func (r *Ring) SetHot() bool {
	if !r.extArg {
		return false
	}
	r.hot = true
	r.bound = unix.NsecToTimespec(HotBound.Nanoseconds())
	return true
}

// flush publishes the prepared SQEs and returns how many the kernel has not
// consumed yet.
func (r *Ring) flush() uint32 {
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	return r.sqeTail - atomic.LoadUint32(r.sqHead)
}

// needsWakeup reports whether the SQPOLL thread went to sleep.
func (r *Ring) needsWakeup() bool {
	return atomic.LoadUint32(r.sqFlags)&sqNeedWakeup != 0
}

// wake wakes the sleeping SQPOLL thread.
func (r *Ring) wake() error {
	for {
		_, e := r.enter(0, 0, enterSQWakeup)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
		default:
			return fmt.Errorf("io_uring %d: enter to wake the SQPOLL thread: %w", r.fd, e)
		}
	}
}

// Submit hands the prepared SQEs to the kernel and returns how many it took.
// Without SQPOLL that is one io_uring_enter, which also issues the requests
// (many complete inside the call). With SQPOLL the kernel thread picks them
// up by itself, and Submit enters the kernel only to wake that thread when
// SQEs wait and it has gone to sleep (IORING_SQ_NEED_WAKEUP); it returns how
// many SQEs were waiting for the thread.
func (r *Ring) Submit() (int, error) {
	pending := r.flush()
	if r.sqpoll {
		if pending > 0 && r.needsWakeup() {
			if err := r.wake(); err != nil {
				return 0, err
			}
		}
		return int(pending), nil
	}
	if pending == 0 {
		return 0, nil
	}
	for {
		n, e := r.enter(pending, 0, 0)
		switch e {
		case 0:
			return n, nil
		case unix.EINTR:
		default:
			return n, fmt.Errorf("io_uring %d: enter to submit %d: %w", r.fd, pending, e)
		}
	}
}

// SubmitAndWait submits like Submit and then waits, in the same
// io_uring_enter, until at least want completions are in the completion
// queue (those already there count). An interrupted wait (EINTR) is resumed,
// so on return at least want CQEs are ready.
func (r *Ring) SubmitAndWait(want uint32) (int, error) {
	pending := r.flush()
	submitted := 0
	if r.sqpoll {
		submitted = int(pending)
	}
	for {
		toSubmit, flags := uint32(0), uint32(enterGetEvents)
		if r.sqpoll {
			if r.sqeTail != atomic.LoadUint32(r.sqHead) && r.needsWakeup() {
				flags |= enterSQWakeup
			}
		} else {
			toSubmit = r.sqeTail - atomic.LoadUint32(r.sqHead)
		}
		n, e := r.enter(toSubmit, want, flags)
		switch {
		case e == unix.EINTR:
		case e != 0:
			return submitted, fmt.Errorf("io_uring %d: enter to submit %d and wait for %d: %w", r.fd, toSubmit, want, e)
		case toSubmit > 0 && n == 0:
			return submitted, fmt.Errorf("io_uring %d: enter took none of %d SQEs", r.fd, toSubmit)
		case !r.sqpoll:
			submitted += n
		}
		if r.ready() >= want && (r.sqpoll || r.sqeTail == atomic.LoadUint32(r.sqHead)) {
			return submitted, nil
		}
	}
}
