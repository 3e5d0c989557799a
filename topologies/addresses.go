package topologies

import (
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// addresses parses the declared addresses, refuses conflicts, and gives every
// endpoint that declares none an IPv4 address: from the subnet its segment
// already uses if an endpoint on it declares one, else from a fresh block of
// the pool. Segments are served in file order, so the same file always gets
// the same addresses.
func (b *builder) addresses() {
	used := map[netip.Addr]string{} // address -> path that holds it
	var declared []netip.Prefix     // masked, to keep pool blocks clear of them
	macs := map[string]string{}
	for _, seg := range b.segments {
		for _, e := range seg.ends {
			b.declared(e, used, &declared, macs)
		}
	}
	// host-nic endpoints are in no segment: the lab cannot know what else
	// sits on a host NIC's wire, so they get only what they declare.
	for _, e := range b.nicEnds {
		b.declared(e, used, &declared, macs)
	}
	pool := netip.MustParsePrefix(b.plan.Pool)
	next := pool.Addr()
	for _, seg := range b.segments {
		var auto []endRef
		var subnet netip.Prefix
		for _, e := range seg.ends {
			if e.spec.Addresses == nil {
				auto = append(auto, e)
				continue
			}
			for _, a := range b.iface(e).Addresses {
				if a.Addr().Is4() && !subnet.IsValid() {
					subnet = a
				}
			}
		}
		if len(auto) == 0 {
			continue
		}
		if subnet.IsValid() {
			b.fillSubnet(subnet, auto, used)
			continue
		}
		block, ok := allocBlock(pool, &next, len(auto), declared)
		if !ok {
			b.errorf(auto[0].path, "the address pool %s is exhausted; set a larger pool or declare addresses", pool)
			return
		}
		host := block.Addr().Next()
		for _, e := range auto {
			p := netip.PrefixFrom(host, block.Bits())
			b.iface(e).Addresses = []netip.Prefix{p}
			used[host] = e.path
			host = host.Next()
		}
	}
}

// declared parses an endpoint's own addresses into the plan and records
// addresses and MACs, refusing any used twice in the lab.
func (b *builder) declared(e endRef, used map[netip.Addr]string, declared *[]netip.Prefix, macs map[string]string) {
	iface := b.iface(e)
	if iface.MAC != "" {
		if prev, dup := macs[iface.MAC]; dup {
			b.errorf(e.path+".mac", "MAC address %s is also used by %s", iface.MAC, prev)
		}
		macs[iface.MAC] = e.path
	}
	for i, s := range e.spec.Addresses {
		p := fmt.Sprintf("%s.addresses[%d]", e.path, i)
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			if a, err2 := netip.ParseAddr(s); err2 == nil {
				bits := 24
				if a.Is6() {
					bits = 64
				}
				b.errorf(p, "address %q needs a prefix length, e.g. %s/%d", s, s, bits)
			} else {
				b.errorf(p, "expected an address with prefix length such as 198.18.0.1/24 or 2001:db8::1/64, got %q", s)
			}
			continue
		}
		a := pfx.Addr()
		switch {
		case a.Zone() != "":
			b.errorf(p, "address %q must not have a zone", s)
			continue
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			b.errorf(p, "%s cannot be an interface address", a)
			continue
		case a.Is4() && pfx.Bits() <= 30 && a == pfx.Masked().Addr():
			b.errorf(p, "%s is the network address of %s; use a host address", a, pfx.Masked())
			continue
		case a.Is4() && pfx.Bits() <= 30 && a == lastAddr(pfx):
			b.errorf(p, "%s is the broadcast address of %s; use a host address", a, pfx.Masked())
			continue
		}
		if prev, dup := used[a]; dup {
			b.errorf(p, "address %s is also assigned at %s", a, prev)
			continue
		}
		used[a] = p
		*declared = append(*declared, pfx.Masked())
		iface.Addresses = append(iface.Addresses, pfx)
	}
}

// fillSubnet gives auto endpoints the lowest free host addresses of subnet.
func (b *builder) fillSubnet(subnet netip.Prefix, auto []endRef, used map[netip.Addr]string) {
	base := subnet.Masked()
	host := base.Addr()
	if subnet.Bits() <= 30 {
		host = host.Next() // skip the network address
	}
	for _, e := range auto {
		for used[host] != "" && base.Contains(host) {
			host = host.Next()
		}
		if !base.Contains(host) || (subnet.Bits() <= 30 && host == lastAddr(subnet)) {
			b.errorf(e.path, "no free address left in %s for %s:%s; declare its addresses or widen the subnet", base, e.spec.Node, e.spec.Interface)
			return
		}
		b.iface(e).Addresses = []netip.Prefix{netip.PrefixFrom(host, subnet.Bits())}
		used[host] = e.path
		host = host.Next()
	}
}

// allocBlock returns the next block of pool after *next that holds n hosts
// plus the network and broadcast addresses, aligned to its size, and
// overlapping no declared prefix.
func allocBlock(pool netip.Prefix, next *netip.Addr, n int, declared []netip.Prefix) (netip.Prefix, bool) {
	hostBits := max(2, bits.Len(uint(n+1))) // 2^hostBits >= n+2
	size := uint32(1) << hostBits
	start := u32(*next)
	if rem := start % size; rem != 0 {
		start += size - rem
	}
	end := u32(lastAddr(pool))
	for ; start >= u32(pool.Addr()) && start+size-1 <= end && start+size-1 >= start; start += size {
		block := netip.PrefixFrom(addrOf(start), 32-hostBits)
		if !overlapsAny(block, declared) {
			*next = addrOf(start + size)
			return block, true
		}
	}
	return netip.Prefix{}, false
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrOf(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// lastAddr is the highest address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	hostBits := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		b[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// endpointRef reads "node:iface" as a reference to a declared interface;
// it is not an IPv6 address because those do not parse as one.
func (b *builder) endpointRef(s string) (endRef, bool) {
	node, ifname, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(ifname, ":") {
		return endRef{}, false
	}
	ref, ok := b.ifaces[node+":"+ifname]
	return ref, ok
}
