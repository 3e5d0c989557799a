package uring

import (
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sizes and offsets of include/uapi/linux/io_uring.h, which the kernel
// and this package must agree on byte for byte.
func TestUAPILayout(t *testing.T) {
	var s sqe
	var p params
	var pr probe
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(io_uring_sqe)", unsafe.Sizeof(s), 64},
		{"sqe.opcode", unsafe.Offsetof(s.opcode), 0},
		{"sqe.flags", unsafe.Offsetof(s.flags), 1},
		{"sqe.ioprio", unsafe.Offsetof(s.ioprio), 2},
		{"sqe.fd", unsafe.Offsetof(s.fd), 4},
		{"sqe.off", unsafe.Offsetof(s.off), 8},
		{"sqe.addr", unsafe.Offsetof(s.addr), 16},
		{"sqe.len", unsafe.Offsetof(s.len), 24},
		{"sqe.msg_flags", unsafe.Offsetof(s.opFlags), 28},
		{"sqe.user_data", unsafe.Offsetof(s.userData), 32},
		{"sqe.buf_index", unsafe.Offsetof(s.bufIndex), 40},
		{"sqe.personality", unsafe.Offsetof(s.personality), 42},
		{"sqe.file_index", unsafe.Offsetof(s.fileIndex), 44},
		{"sqe.addr3", unsafe.Offsetof(s.addr3), 48},
		{"sizeof(io_uring_cqe)", unsafe.Sizeof(CQE{}), 16},
		{"cqe.res", unsafe.Offsetof(CQE{}.Res), 8},
		{"cqe.flags", unsafe.Offsetof(CQE{}.Flags), 12},
		{"sizeof(io_uring_params)", unsafe.Sizeof(p), 120},
		{"params.sq_thread_idle", unsafe.Offsetof(p.sqThreadIdle), 16},
		{"params.features", unsafe.Offsetof(p.features), 20},
		{"params.sq_off", unsafe.Offsetof(p.sqOff), 40},
		{"params.cq_off", unsafe.Offsetof(p.cqOff), 80},
		{"sizeof(io_sqring_offsets)", unsafe.Sizeof(sqringOffsets{}), 40},
		{"sq_off.array", unsafe.Offsetof(p.sqOff.array), 24},
		{"sizeof(io_cqring_offsets)", unsafe.Sizeof(cqringOffsets{}), 40},
		{"cq_off.cqes", unsafe.Offsetof(p.cqOff.cqes), 20},
		{"sizeof(io_uring_probe_op)", unsafe.Sizeof(probeOp{}), 8},
		{"probe.ops", unsafe.Offsetof(pr.ops), 16},
		{"sizeof(io_uring_getevents_arg)", unsafe.Sizeof(getEventsArg{}), 24},
		{"getevents_arg.ts", unsafe.Offsetof(getEventsArg{}.ts), 16},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
}

func TestUnavailableReason(t *testing.T) {
	tests := []struct {
		errno    unix.Errno
		disabled string
		want     string
	}{
		{unix.ENOSYS, "", "CONFIG_IO_URING=n"},
		{unix.ENOSYS, "0", "CONFIG_IO_URING=n"},
		{unix.EPERM, "2", "kernel.io_uring_disabled=2"},
		{unix.EPERM, "1", "kernel.io_uring_group"},
		{unix.EPERM, "0", "seccomp"},
		{unix.EPERM, "", "seccomp"},
	}
	for _, tt := range tests {
		got := unavailableReason(tt.errno, tt.disabled)
		if !strings.Contains(got, tt.want) {
			t.Errorf("unavailableReason(%v, %q) = %q, want it to mention %q", tt.errno, tt.disabled, got, tt.want)
		}
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{OpNop: "NOP", OpSendZC: "SEND_ZC", Op(200): "op 200"} {
		if got := op.String(); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", op, got, want)
		}
	}
}
