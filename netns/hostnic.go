package netns

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// A host interface moved into a node goes in under the endpoint's name
// carrying a host marker (see hostMarker) that records its name, MTU, MAC,
// up state, addresses and alias in the host; down moves it back under its
// own name and restores all of that, the alias last, so that an interrupted
// restore is finished by the next down (which looks for host markers in
// the host namespace too).

// readHost records the state of host interface lk.
func readHost(root *netlink.Handle, lk netlink.Link) (hostState, error) {
	at := lk.Attrs()
	s := hostState{Name: at.Name, MTU: at.MTU, Up: at.Flags&net.FlagUp != 0, Alias: at.Alias}
	if len(at.HardwareAddr) > 0 {
		s.MAC = at.HardwareAddr.String()
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return root.AddrList(lk, netlink.FAMILY_ALL) })
	if err != nil {
		return s, fmt.Errorf("addresses: %w", err)
	}
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		// IPv6 link-local addresses are made again by the kernel when the
		// interface comes up.
		if !ok || p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			continue
		}
		s.Addrs = append(s.Addrs, p)
	}
	return s, nil
}

// moveIn moves host interface l.Host into the node of l.Ends[0], renamed to
// the endpoint's name.
func (a *applier) moveIn(l *topologies.Link, ent *nsEntry) error {
	root, _, err := a.rootNS()
	if err != nil {
		return notMade{err}
	}
	lk, err := root.LinkByName(l.Host)
	if err != nil {
		return notMade{fmt.Errorf("host interface %s: %w", l.Host, err)}
	}
	if lab, _, ok := parseHostMarker(lk.Attrs().Alias); ok {
		return notMade{fmt.Errorf("host interface %s is held by lab %s", l.Host, lab)}
	}
	st, err := readHost(root, lk)
	if err != nil {
		return notMade{fmt.Errorf("host interface %s: %w", l.Host, err)}
	}
	marker, err := hostMarker(a.lab, st)
	if err != nil {
		return notMade{fmt.Errorf("host interface %s: %w", l.Host, err)}
	}
	// From here on the interface carries the marker, and undoing the link
	// restores it whatever happens next.
	if err := root.LinkSetAlias(lk, marker); err != nil {
		return fmt.Errorf("host interface %s: set alias: %w", l.Host, err)
	}
	// Moving and renaming in one request means the interface never shows
	// up in the node under its host name, nor in the host under the
	// endpoint's, where either could collide with another interface.
	if err := setLinkNS(lk.Attrs().Index, ent.fd, l.Ends[0].Name); err != nil {
		return fmt.Errorf("host interface %s: move into %s as %s: %w", l.Host, ent.name, l.Ends[0].Name, err)
	}
	return nil
}

// moveOut gives host interface l.Host back to the host, wherever labctl
// was stopped on the way in or out.
func (a *applier) moveOut(l *topologies.Link) error {
	ent, err := a.ns.get(l.Ends[0].Namespace)
	switch {
	case err == nil:
		links, err := dump(ent.h.LinkList)
		if err != nil {
			return fmt.Errorf("namespace %s: links: %w", ent.name, err)
		}
		for _, lk := range links {
			if lab, st, ok := parseHostMarker(lk.Attrs().Alias); ok && lab == a.lab && st.Name == l.Host {
				if err := a.sendHome(ent, lk, st); err != nil {
					return err
				}
			}
		}
	case !isNotExist(err):
		return err
	}
	return a.restoreInRoot(l.Host)
}

// sendHome moves a host interface found in a lab namespace back to the
// host under its own name, and restores it.
func (a *applier) sendHome(ent *nsEntry, lk netlink.Link, st hostState) error {
	_, rootFd, err := a.rootNS()
	if err != nil {
		return err
	}
	err = doFd(ent.name, ent.fd, func() error { return setLinkNS(lk.Attrs().Index, rootFd, st.Name) })
	if err != nil {
		return fmt.Errorf("host interface %s: move back from %s: %w", st.Name, ent.name, err)
	}
	return a.restoreInRoot(st.Name)
}

// restoreInRoot restores host interface name if it carries this lab's host
// marker; it does nothing otherwise (never moved, or already restored).
func (a *applier) restoreInRoot(name string) error {
	root, _, err := a.rootNS()
	if err != nil {
		return err
	}
	lk, err := root.LinkByName(name)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("host interface %s: %w", name, err)
	}
	lab, st, ok := parseHostMarker(lk.Attrs().Alias)
	if !ok || lab != a.lab {
		return nil
	}
	if err := restoreHost(root, lk, st); err != nil {
		return fmt.Errorf("host interface %s: restore: %w", name, err)
	}
	a.removed(fmt.Sprintf("host interface %s (restored)", name))
	return nil
}

// restoreRootHosts finishes every restore of this lab's host interfaces
// that was interrupted after the interface was back in the host.
func (a *applier) restoreRootHosts() error {
	root, _, err := a.rootNS()
	if err != nil {
		return err
	}
	links, err := dump(root.LinkList)
	if err != nil {
		return fmt.Errorf("host links: %w", err)
	}
	for _, lk := range links {
		if lab, _, ok := parseHostMarker(lk.Attrs().Alias); ok && lab == a.lab {
			if err := a.restoreInRoot(lk.Attrs().Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// restoreHost sets lk back to st. Every step can be repeated.
func restoreHost(h *netlink.Handle, lk netlink.Link, st hostState) error {
	if lk.Attrs().MTU != st.MTU {
		if err := h.LinkSetMTU(lk, st.MTU); err != nil {
			return fmt.Errorf("set mtu %d: %w", st.MTU, err)
		}
	}
	if st.MAC != "" && lk.Attrs().HardwareAddr.String() != st.MAC {
		mac, err := net.ParseMAC(st.MAC)
		if err != nil {
			return fmt.Errorf("mac %s: %w", st.MAC, err)
		}
		if err := h.LinkSetHardwareAddr(lk, mac); err != nil {
			return fmt.Errorf("set mac %s: %w", st.MAC, err)
		}
	}
	for _, p := range st.Addrs {
		if err := h.AddrAdd(lk, addrOf(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	if st.Up {
		if err := h.LinkSetUp(lk); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	if err := h.LinkSetAlias(lk, st.Alias); err != nil {
		return fmt.Errorf("set alias %q: %w", st.Alias, err)
	}
	return nil
}

// setLinkNS moves interface index of the calling thread's namespace into
// the namespace open as fd, under the name name, in one RTM_NEWLINK: the
// kernel renames the interface as it moves it (do_setlink passes IFLA_IFNAME
// to dev_change_net_namespace). The request goes through a socket made on
// the calling thread, so the caller picks the namespace the interface is in.
func setLinkNS(index, fd int, name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(fd))))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
