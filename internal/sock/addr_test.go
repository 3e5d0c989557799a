package sock

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAddrRoundTrip(t *testing.T) {
	tests := []struct {
		addr    string
		scope   uint32
		family  uint16
		wantLen uint32
		want    string // decoded form; the zone comes back numeric
	}{
		{"127.0.0.1:8080", 0, unix.AF_INET, unix.SizeofSockaddrInet4, "127.0.0.1:8080"},
		{"198.18.0.1:1", 0, unix.AF_INET, unix.SizeofSockaddrInet4, "198.18.0.1:1"},
		{"[::1]:65535", 0, unix.AF_INET6, unix.SizeofSockaddrInet6, "[::1]:65535"},
		{"[::ffff:127.0.0.1]:80", 0, unix.AF_INET6, unix.SizeofSockaddrInet6, "[::ffff:127.0.0.1]:80"},
		{"[fe80::1%3]:443", 3, unix.AF_INET6, unix.SizeofSockaddrInet6, "[fe80::1%3]:443"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			var r rawAddr
			n := encodeAddr(&r, netip.MustParseAddrPort(tt.addr), tt.scope)
			if n != tt.wantLen {
				t.Errorf("length %d, want %d", n, tt.wantLen)
			}
			if r.sa.Family != tt.family {
				t.Errorf("family %d, want %d", r.sa.Family, tt.family)
			}
			if tt.family == unix.AF_INET6 && r.sa.Scope_id != tt.scope {
				t.Errorf("scope id %d, want %d", r.sa.Scope_id, tt.scope)
			}
			got, err := decodeAddr(&r)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("decoded %v, want %s", got, tt.want)
			}
		})
	}
}

// The port is in network byte order in the raw struct, whatever the host's.
func TestAddrPortByteOrder(t *testing.T) {
	var r rawAddr
	encodeAddr(&r, netip.MustParseAddrPort("10.0.0.1:258"), 0)
	sa := (*unix.RawSockaddrInet4)(r.ptr())
	if b := *(*[2]byte)(unsafe.Pointer(&sa.Port)); b != [2]byte{1, 2} {
		t.Errorf("port bytes %v, want [1 2]", b)
	}
}

func TestDecodeAddrUnknownFamily(t *testing.T) {
	var r rawAddr
	r.sa.Family = unix.AF_UNIX
	if _, err := decodeAddr(&r); err == nil {
		t.Error("decoding an AF_UNIX address succeeded")
	}
}

func TestScopeID(t *testing.T) {
	s, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	tests := []struct {
		zone    string
		want    uint32
		wantErr bool
	}{
		{"", 0, false},
		{"7", 7, false},
		// The loopback device is interface 1 in every network namespace.
		{"lo", 1, false},
		{"labctl-no-such-if", 0, true},
		{"a-name-longer-than-IFNAMSIZ", 0, true},
	}
	for _, tt := range tests {
		got, err := scopeID(FD(s), tt.zone)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("scopeID(%q) = %d, %v; want %d, error %v", tt.zone, got, err, tt.want, tt.wantErr)
		}
	}
}
