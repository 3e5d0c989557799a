package sock

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawAddr holds a sockaddr_in or sockaddr_in6 in the kernel's layout, on the
// caller's stack, so that the data path passes addresses to the kernel without
// the allocations that x/sys/unix's Sockaddr interface values cost.
// sockaddr_in6 is the larger of the two; an IPv4 address uses its first
// unix.SizeofSockaddrInet4 bytes.
type rawAddr struct {
	sa unix.RawSockaddrInet6
}

func (r *rawAddr) ptr() unsafe.Pointer { return unsafe.Pointer(&r.sa) }

// family reports the address family for addr: AF_INET for plain IPv4,
// AF_INET6 for everything else, including IPv4-mapped IPv6 addresses, which
// an AF_INET6 socket reaches through the IPv4 stack.
func family(addr netip.Addr) int {
	if addr.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// encodeAddr writes addr into r and returns the length to pass to the kernel.
// scope is the IPv6 scope id (interface index) for link-local addresses.
func encodeAddr(r *rawAddr, addr netip.AddrPort, scope uint32) uint32 {
	ip := addr.Addr()
	if ip.Is4() {
		sa := (*unix.RawSockaddrInet4)(r.ptr())
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], addr.Port())
		return unix.SizeofSockaddrInet4
	}
	r.sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16(), Scope_id: scope}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&r.sa.Port))[:], addr.Port())
	return unix.SizeofSockaddrInet6
}

// decodeAddr reads the address the kernel wrote into r. An IPv6 scope id
// comes back as a numeric zone ("fe80::1%3"), which encodeAddr accepts too.
func decodeAddr(r *rawAddr) (netip.AddrPort, error) {
	switch r.sa.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(r.ptr())
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port), nil
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&r.sa.Port))[:])
		ip := netip.AddrFrom16(r.sa.Addr)
		if r.sa.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(r.sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, port), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("address family %d is neither AF_INET nor AF_INET6", r.sa.Family)
	}
}

// scopeID resolves the zone of an IPv6 address to an interface index: a
// number is taken as the index, anything else as an interface name, looked up
// with SIOCGIFINDEX on fd (any socket answers it, in fd's network namespace).
func scopeID(fd FD, zone string) (uint32, error) {
	if zone == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifr, err := unix.NewIfreq(zone)
	if err != nil {
		return 0, fmt.Errorf("zone %q: %w", zone, err)
	}
	if err := unix.IoctlIfreq(int(fd), unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("zone %q: interface index (SIOCGIFINDEX): %w", zone, err)
	}
	return ifr.Uint32(), nil
}
