package paths

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// linkEvidencePrefix starts the name of the evidence that counts the packets
// an interface of the role's node carried during the step.
const linkEvidencePrefix = "link_packets:"

// addLinkEvidence records, for every interface of the node, the packets it
// received and sent during the step (rx + tx: lo counts each packet once in
// each direction).
func addLinkEvidence(r *experimentv1.RoleReport, node string, d kstat.LinkStats) {
	for _, name := range slices.Sorted(maps.Keys(d)) {
		c := d[name]
		report.AddEvidence(r, linkEvidencePrefix+name, float64(c.RxPackets+c.TxPackets), "packets",
			"rtnetlink IFLA_STATS64 rx_packets + tx_packets delta in node "+node,
			fmt.Sprintf("rx %d tx %d packets, rx %d tx %d bytes, dropped rx %d tx %d", c.RxPackets, c.TxPackets, c.RxBytes, c.TxBytes, c.RxDropped, c.TxDropped))
	}
}

// carrier is the interface of a node that carried a step's traffic: the one
// with the most packets.
type carrier struct {
	Iface string
	// Share is Iface's part of the packets of all the node's interfaces.
	Share float64
	// Packets per interface, from the report's evidence.
	Packets map[string]float64
}

// carrierOf reads a role's link evidence; ok is false when the report has
// none or no interface carried anything.
func carrierOf(r *experimentv1.RoleReport) (c carrier, ok bool) {
	c.Packets = map[string]float64{}
	var total float64
	for _, e := range r.GetEvidence() {
		name, found := strings.CutPrefix(e.GetName(), linkEvidencePrefix)
		if !found {
			continue
		}
		c.Packets[name] = e.GetValue()
		total += e.GetValue()
	}
	if total == 0 {
		return c, false
	}
	names := slices.Sorted(maps.Keys(c.Packets))
	// Ties go to the first name, so the answer does not depend on map order.
	sort.SliceStable(names, func(i, j int) bool { return c.Packets[names[i]] > c.Packets[names[j]] })
	c.Iface = names[0]
	c.Share = c.Packets[c.Iface] / total
	return c, true
}

// String shows the carrier and the other interfaces that saw packets:
// "lo 100.0% (lo 41234, veth0 0)".
func (c carrier) String() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(c.Packets)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", n, c.Packets[n]))
	}
	return fmt.Sprintf("%s %.1f%% (%s)", c.Iface, 100*c.Share, strings.Join(parts, ", "))
}

// ifaceKind is the link kind of an interface as the role's environment
// recorded it ("veth", "macvlan", "loopback", a NIC driver), or "".
func ifaceKind(r *experimentv1.RoleReport, name string) string {
	for _, i := range r.GetEnvironment().GetInterfaces() {
		if i.GetName() == name {
			return i.GetKind()
		}
	}
	return ""
}
