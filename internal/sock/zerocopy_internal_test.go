package sock

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds the control data of one error-queue message as the kernel lays
// it out: a cmsghdr, then a sock_extended_err, then the offender address.
func cmsg(level, typ int32, ee unix.SockExtendedErr, offender int) []byte {
	eeLen := int(unsafe.Sizeof(ee))
	b := make([]byte, unix.CmsgSpace(eeLen+offender))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(eeLen + offender))
	*(*unix.SockExtendedErr)(unsafe.Pointer(&b[unix.CmsgLen(0)])) = ee
	return b
}

// truncate cuts a control message to n bytes, its header's length included.
func truncate(b []byte, n int) []byte {
	(*unix.Cmsghdr)(unsafe.Pointer(&b[0])).SetLen(n)
	return b[:n]
}

func TestParseZerocopy(t *testing.T) {
	zc := func(lo, hi uint32, code uint8) unix.SockExtendedErr {
		return unix.SockExtendedErr{Origin: unix.SO_EE_ORIGIN_ZEROCOPY, Code: code, Info: lo, Data: hi}
	}
	tests := []struct {
		name    string
		oob     []byte
		want    Completion
		wantErr string
	}{
		{
			name: "ipv4 copied",
			oob:  cmsg(unix.SOL_IP, unix.IP_RECVERR, zc(0, 7, unix.SO_EE_CODE_ZEROCOPY_COPIED), unix.SizeofSockaddrInet4),
			want: Completion{Lo: 0, Hi: 7, Copied: true},
		},
		{
			name: "ipv6 zero copy",
			oob:  cmsg(unix.SOL_IPV6, unix.IPV6_RECVERR, zc(12, 12, 0), unix.SizeofSockaddrInet6),
			want: Completion{Lo: 12, Hi: 12},
		},
		{
			name: "range across the counter wrap",
			oob:  cmsg(unix.SOL_IP, unix.IP_RECVERR, zc(0xfffffffe, 1, 0), unix.SizeofSockaddrInet4),
			want: Completion{Lo: 0xfffffffe, Hi: 1},
		},
		{
			name:    "ICMP error",
			oob:     cmsg(unix.SOL_IP, unix.IP_RECVERR, unix.SockExtendedErr{Errno: uint32(unix.ECONNREFUSED), Origin: unix.SO_EE_ORIGIN_ICMP, Type: 3, Code: 3}, unix.SizeofSockaddrInet4),
			wantErr: "origin 2 and errno 111",
		},
		{
			name:    "other control message",
			oob:     cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, zc(0, 0, 0), 0),
			wantErr: "neither IP_RECVERR nor IPV6_RECVERR",
		},
		{
			name:    "no cmsghdr",
			oob:     make([]byte, 4),
			wantErr: "holds no cmsghdr",
		},
		{
			name:    "cmsg too short for sock_extended_err",
			oob:     truncate(cmsg(unix.SOL_IP, unix.IP_RECVERR, zc(0, 0, 0), 0), unix.CmsgLen(4)),
			wantErr: "does not hold a sock_extended_err",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseZerocopy(tt.oob)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCompletionSends(t *testing.T) {
	tests := []struct {
		c    Completion
		want uint32
	}{
		{Completion{Lo: 0, Hi: 0}, 1},
		{Completion{Lo: 3, Hi: 9}, 7},
		{Completion{Lo: 0xffffffff, Hi: 2}, 4},
	}
	for _, tt := range tests {
		if got := tt.c.Sends(); got != tt.want {
			t.Errorf("%+v.Sends() = %d, want %d", tt.c, got, tt.want)
		}
	}
}

func TestMillis(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{-1, -1},
		{0, 0},
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{1500 * time.Microsecond, 2},
		{time.Hour * 24 * 365, 1<<31 - 1},
	}
	for _, tt := range tests {
		if got := millis(tt.d); got != tt.want {
			t.Errorf("millis(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
