package netns

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// prefixOf converts a netlink address.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addr.Unmap(), ones), true
}

// addrOf is the netlink address for p. IPv6 addresses skip duplicate
// address detection (IFA_F_NODAD): a lab's addresses are unique by
// construction, and DAD would keep them tentative, unusable, for a second
// or more after up returns.
func addrOf(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// linkLocal is the EUI-64 IPv6 link-local address of an Ethernet MAC
// (RFC 4291 appendix A), as the kernel makes it in addr_gen_mode eui64.
func linkLocal(mac net.HardwareAddr) (netip.Prefix, bool) {
	if len(mac) != 6 {
		return netip.Prefix{}, false
	}
	a := [16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 0x02, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	return netip.PrefixFrom(netip.AddrFrom16(a), 64), true
}
