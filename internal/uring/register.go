package uring

import (
	"fmt"
	"unsafe"

	"github.com/labctl/labctl/internal/kernel"
	"golang.org/x/sys/unix"
)

// RegisterBuffers registers bufs as the ring's fixed buffers
// (IORING_REGISTER_BUFFERS): the kernel pins their pages once, instead of
// for every request, and PrepSendZC with RecvSendFixedBuf sends from them.
// The Ring keeps them reachable until Close. Pinned memory counts against
// RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK (ENOMEM otherwise); a
// ring registers buffers once (EBUSY after).
func (r *Ring) RegisterBuffers(bufs [][]byte) error {
	if len(bufs) == 0 {
		return fmt.Errorf("io_uring %d: register buffers: none given", r.fd)
	}
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		if len(b) == 0 {
			return fmt.Errorf("io_uring %d: register buffers: buffer %d is empty", r.fd, i)
		}
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerBuffers, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), 0, 0)
	if e != 0 {
		return fmt.Errorf("io_uring %d: register %d buffers: %w", r.fd, len(bufs), e)
	}
	r.fixed = bufs
	return nil
}

// fixedIndex finds the registered buffer that contains buf.
func (r *Ring) fixedIndex(buf []byte) (uint16, bool) {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	end := start + uintptr(len(buf))
	for i, f := range r.fixed {
		fStart := uintptr(unsafe.Pointer(&f[0]))
		if start >= fStart && end <= fStart+uintptr(len(f)) {
			return uint16(i), true
		}
	}
	return 0, false
}

// Probe lists the opcodes the running kernel supports.
type Probe struct {
	supported [256]bool
}

// Probe asks the kernel which opcodes it supports (IORING_REGISTER_PROBE,
// Linux 5.6; older kernels answer EINVAL, reported as a
// kernel.NotSupportedError).
func (r *Ring) Probe() (*Probe, error) {
	// The kernel refuses a probe buffer that is not zeroed.
	var p probe
	_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerProbe, uintptr(unsafe.Pointer(&p)), uintptr(len(p.ops)), 0, 0)
	switch e {
	case 0:
	case unix.EINVAL:
		return nil, fmt.Errorf("io_uring %d: %w", r.fd, kernel.NotSupported(kernel.Feature{Name: "IORING_REGISTER_PROBE", Since: kernel.V(5, 6)}, e))
	default:
		return nil, fmt.Errorf("io_uring %d: IORING_REGISTER_PROBE: %w", r.fd, e)
	}
	var out Probe
	for _, op := range p.ops[:p.opsLen] {
		if op.flags&ioUringOpSupported != 0 {
			out.supported[op.op] = true
		}
	}
	return &out, nil
}

// Supports reports whether the kernel supports op.
func (p *Probe) Supports(op Op) bool { return p.supported[op] }

// Require returns nil if the kernel supports every op, or a
// kernel.NotSupportedError naming the first one it lacks, for an
// experiment to report as "not supported on this kernel".
func (p *Probe) Require(ops ...Op) error {
	for _, op := range ops {
		if !p.supported[op] {
			return kernel.NotSupported(op.Feature(), nil)
		}
	}
	return nil
}
