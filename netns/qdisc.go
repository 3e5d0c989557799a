package netns

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// setQdisc installs q as the root qdisc of interface index.
func setQdisc(h *netlink.Handle, index int, q *topologies.Qdisc) error {
	attrs := netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	var qd netlink.Qdisc
	var class netlink.Class
	switch q.Kind {
	case "tbf":
		if q.Rate == 0 || q.Burst == 0 {
			return errors.New("tbf needs a rate and a burst")
		}
		limit := q.Limit
		if limit == 0 {
			// tc's rule: the queue holds what the rate drains in the
			// latency, plus the bucket.
			limit = uint32(float64(q.Rate)*q.Latency.Seconds()) + q.Burst
		}
		// The kernel takes the bucket as the time the rate needs to send
		// it, in scheduler ticks.
		qd = &netlink.Tbf{QdiscAttrs: attrs, Rate: q.Rate, Buffer: netlink.Xmittime(q.Rate, q.Burst), Limit: limit}
	case "htb":
		if q.Rate == 0 {
			return errors.New("htb needs a rate")
		}
		htb := netlink.NewHtb(attrs)
		htb.Defcls = 1 // unclassified traffic goes to class 1:1
		qd = htb
		ceil := q.Ceil
		if ceil == 0 {
			ceil = q.Rate
		}
		// HtbClassAttrs takes bits per second.
		class = netlink.NewHtbClass(netlink.ClassAttrs{LinkIndex: index, Parent: attrs.Handle, Handle: netlink.MakeHandle(1, 1)},
			netlink.HtbClassAttrs{Rate: q.Rate * 8, Ceil: ceil * 8})
	case "netem":
		qd = netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
			Latency: uint32(q.Delay.Microseconds()),
			Jitter:  uint32(q.Jitter.Microseconds()),
			Loss:    float32(q.LossPct),
			Limit:   q.Limit,
		})
	default:
		return fmt.Errorf("unknown qdisc kind %q", q.Kind)
	}
	if err := h.QdiscReplace(qd); err != nil {
		if errors.Is(err, unix.ENOENT) {
			// The kernel's answer to a qdisc kind it has no code for.
			return fmt.Errorf("this kernel has no %s support (sch_%s is not built in and cannot be loaded as a module): %w", q.Kind, q.Kind, err)
		}
		return err
	}
	if class != nil {
		if err := h.ClassAdd(class); err != nil {
			return fmt.Errorf("default class 1:1: %w", err)
		}
	}
	return nil
}
