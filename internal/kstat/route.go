package kstat

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// RouteIface is the interface the kernel of the calling thread's network
// namespace sends to dst through, as `ip route get` answers.
func RouteIface(dst netip.Addr) (string, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("route to %v: %v", dst, err)
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("route to %v: interface %d: %w", dst, routes[0].LinkIndex, err)
	}
	return l.Attrs().Name, nil
}
