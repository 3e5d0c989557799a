package zerocopy

import (
	"testing"
	"unsafe"
)

// The offsets of struct tcp_zerocopy_receive in include/uapi/linux/tcp.h
// (Linux 5.14 and later), which the kernel copies in and out as bytes.
func TestTCPZerocopyReceiveLayout(t *testing.T) {
	var zc tcpZerocopyReceive
	if got := unsafe.Sizeof(zc); got != 64 {
		t.Errorf("size %d, want 64", got)
	}
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"address", unsafe.Offsetof(zc.Address), 0},
		{"length", unsafe.Offsetof(zc.Length), 8},
		{"recv_skip_hint", unsafe.Offsetof(zc.RecvSkipHint), 12},
		{"inq", unsafe.Offsetof(zc.Inq), 16},
		{"err", unsafe.Offsetof(zc.Err), 20},
		{"copybuf_address", unsafe.Offsetof(zc.CopybufAddress), 24},
		{"copybuf_len", unsafe.Offsetof(zc.CopybufLen), 32},
		{"flags", unsafe.Offsetof(zc.Flags), 36},
		{"msg_control", unsafe.Offsetof(zc.MsgControl), 40},
		{"msg_controllen", unsafe.Offsetof(zc.MsgControllen), 48},
		{"msg_flags", unsafe.Offsetof(zc.MsgFlags), 56},
		{"reserved", unsafe.Offsetof(zc.Reserved), 60},
	} {
		if f.got != f.want {
			t.Errorf("%s at offset %d, want %d", f.name, f.got, f.want)
		}
	}
}
