package kstat

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// LinkCounters are the packet counters of one interface (rtnl_link_stats64).
type LinkCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
}

// LinkStats maps interface names of one network namespace to their counters.
type LinkStats map[string]LinkCounters

// ReadLinkStats dumps the interfaces of a network namespace over rtnetlink:
// the namespace of h (netlink.NewHandleAt), or with a nil h the namespace of
// the calling thread, which in an agent is its node's.
//
// Not /sys/class/net/<if>/statistics: sysfs shows the interfaces of the
// namespace that mounted /sys, not the reader's, so from inside a node it
// would report the host's interfaces (or none).
func ReadLinkStats(h *netlink.Handle) (LinkStats, error) {
	list := netlink.LinkList
	if h != nil {
		list = h.LinkList
	}
	// A dump interrupted by a concurrent change (NLM_F_DUMP_INTR) may miss
	// or repeat interfaces; links come and go while a lab is built, so retry.
	var err error
	for range 3 {
		var links []netlink.Link
		links, err = list()
		if err == nil {
			return linkStats(links), nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("rtnetlink link dump: %w", err)
}

// linkStats keeps the counters of every link that reports statistics.
func linkStats(links []netlink.Link) LinkStats {
	s := make(LinkStats, len(links))
	for _, l := range links {
		a := l.Attrs()
		if a == nil || a.Statistics == nil {
			continue
		}
		st := a.Statistics
		s[a.Name] = LinkCounters{
			RxPackets: st.RxPackets, TxPackets: st.TxPackets,
			RxBytes: st.RxBytes, TxBytes: st.TxBytes,
			RxDropped: st.RxDropped, TxDropped: st.TxDropped,
			RxErrors: st.RxErrors, TxErrors: st.TxErrors,
		}
	}
	return s
}

// Sub returns the counters gained since prev for every interface of s. A
// counter lower than in prev means the interface was deleted and created
// again under the same name; its delta is then its current value. An
// interface missing from prev counts from 0.
func (s LinkStats) Sub(prev LinkStats) LinkStats {
	d := make(LinkStats, len(s))
	for name, c := range s {
		p := prev[name]
		d[name] = LinkCounters{
			RxPackets: delta64(c.RxPackets, p.RxPackets),
			TxPackets: delta64(c.TxPackets, p.TxPackets),
			RxBytes:   delta64(c.RxBytes, p.RxBytes),
			TxBytes:   delta64(c.TxBytes, p.TxBytes),
			RxDropped: delta64(c.RxDropped, p.RxDropped),
			TxDropped: delta64(c.TxDropped, p.TxDropped),
			RxErrors:  delta64(c.RxErrors, p.RxErrors),
			TxErrors:  delta64(c.TxErrors, p.TxErrors),
		}
	}
	return d
}

// delta64 is the increase of a 64-bit counter; one that went down was reset.
func delta64(cur, prev uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}
