package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sysctl"
	"github.com/labctl/labctl/netns/firewall"
	"github.com/labctl/labctl/topologies"
)

// configureNode sets a node's sysctls, routes, firewall and exec commands,
// once all its interfaces exist. fresh is false for a node that only has
// its routes and sysctls set again (see delta.reconfigure): its firewall is
// untouched (rules name interfaces by name) and its commands are not run
// twice.
func (a *applier) configureNode(ctx context.Context, o Object, fresh bool) (err error) {
	n := o.Node
	ctx, span := tracer.Start(ctx, "netns.node", trace.WithAttributes(attrLab.String(a.lab), attrNode.String(n.Name)))
	defer func() { endSpan(span, err) }()
	if !fresh {
		if err := a.record(OpBegin, o); err != nil {
			return err
		}
	}
	ent, err := a.ns.get(n.Namespace)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := setSysctls(ent, n); err != nil {
		return err
	}
	for i, r := range n.Routes {
		if err := addRoute(ent.h, r); err != nil {
			return fmt.Errorf("node %s: routes[%d] %s: %w", n.Name, i, r.Dst, err)
		}
	}
	if fresh && len(n.Firewall) > 0 {
		script, err := firewall.Render(n.Firewall)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := run(ctx, n.Namespace, script, "nft", "-f", "-"); err != nil {
			return fmt.Errorf("node %s: firewall: %w", n.Name, err)
		}
	}
	if fresh {
		for i, c := range n.Exec {
			if err := run(ctx, n.Namespace, "", "sh", "-c", c); err != nil {
				return fmt.Errorf("node %s: exec[%d]: %w", n.Name, i, err)
			}
		}
	}
	return a.record(OpDone, o)
}

// setSysctls writes a node's sysctls from a thread inside its namespace:
// /proc/sys/net resolves to the namespace of the task that opens the file.
func setSysctls(ent *nsEntry, n *topologies.Node) error {
	if len(n.Sysctls) == 0 {
		return nil
	}
	return doFd(ent.name, ent.fd, func() error {
		for _, s := range n.Sysctls {
			if err := writeSysctl(s.Key, s.Value); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		return nil
	})
}

// netSysctl checks that key is a net.* sysctl, the only ones that belong
// to a network namespace.
func netSysctl(key string) error {
	if _, err := sysctl.Path(key); err != nil {
		return err
	}
	if !strings.HasPrefix(key, "net.") {
		return fmt.Errorf("sysctl %s: only net.* sysctls belong to a network namespace", key)
	}
	return nil
}

// writeSysctl writes one net.* sysctl in the calling thread's namespace.
func writeSysctl(key, value string) error {
	if err := netSysctl(key); err != nil {
		return err
	}
	err := sysctl.Write(key, value)
	if pe := (*os.PathError)(nil); errors.As(err, &pe) && errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s: does not exist in this namespace (a sysctl that the kernel keeps only for the initial namespace, such as net.core.busy_read, cannot be set per node; set it on the host): %w", key, pe)
	}
	return err
}

// readSysctl reads one net.* sysctl in the calling thread's namespace.
func readSysctl(key string) (string, error) {
	if err := netSysctl(key); err != nil {
		return "", err
	}
	return sysctl.Read(key)
}

// routeProtocol marks the routes labctl adds (shown as "proto static"), so
// that status tells them from the kernel's and from ones a command added.
const routeProtocol = unix.RTPROT_STATIC

// toRoute is the netlink route for r; linkIndex is that of r.Dev, or 0.
func toRoute(r topologies.Route, linkIndex int) *netlink.Route {
	rt := &netlink.Route{
		Dst:       &net.IPNet{IP: r.Dst.Masked().Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		LinkIndex: linkIndex,
		Priority:  r.Metric,
		Protocol:  routeProtocol,
		Table:     unix.RT_TABLE_MAIN,
	}
	if r.Via.IsValid() {
		rt.Gw = r.Via.AsSlice()
	} else {
		rt.Scope = netlink.SCOPE_LINK
	}
	return rt
}

// addRoute adds (or replaces, so that reconfiguring is repeatable) r.
func addRoute(h *netlink.Handle, r topologies.Route) error {
	index := 0
	if r.Dev != "" {
		lk, err := h.LinkByName(r.Dev)
		if err != nil {
			return fmt.Errorf("dev %s: %w", r.Dev, err)
		}
		index = lk.Attrs().Index
	}
	return h.RouteReplace(toRoute(r, index))
}
