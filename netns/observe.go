package netns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// Item states.
const (
	StatePresent   = "present"   // as planned
	StateMissing   = "missing"   // planned, not there
	StateDifferent = "different" // there, not as planned (Want and Got say how)
	StateExtra     = "extra"     // there, not planned (an interface, or a static route)
)

// Item is one namespace, interface, route or sysctl of a lab.
type Item struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"` // namespace, interface, route, sysctl
	Name      string `json:"name"` // namespace, interface name, route destination, sysctl key
	State     string `json:"state"`
	Want      string `json:"want,omitempty"`
	Got       string `json:"got,omitempty"`
}

// Status is the kernel's state of a lab compared with its plan.
type Status struct {
	Lab   string `json:"lab"`
	Items []Item `json:"items"`
}

// Drift returns the items that are not as planned.
func (s *Status) Drift() []Item {
	var out []Item
	for _, it := range s.Items {
		if it.State != StatePresent {
			out = append(out, it)
		}
	}
	return out
}

// Observe compares the kernel with plan: for each namespace, whether it
// exists with the lab's marker; for each interface, whether it exists, is
// up, and has the planned MTU, MAC, master and addresses; for each route and
// sysctl, whether it is there with the planned value. It also reports
// interfaces and static routes that the plan does not have. Each namespace
// costs one netlink handle and three dumps (links, addresses, routes), plus
// one thread switch to read its sysctls.
func Observe(ctx context.Context, plan *topologies.Plan) (_ *Status, err error) {
	ctx, span := tracer.Start(ctx, "netns.observe", trace.WithAttributes(attrLab.String(plan.Lab)))
	defer func() { endSpan(span, err) }()
	a := newApplier(plan.Lab, Options{})
	defer a.close()

	spaces := objects(plan)
	spaces = slices.DeleteFunc(spaces, func(o Object) bool { return o.Kind != KindNode && o.Kind != KindFabric })
	items := make([][]Item, len(spaces))
	index := map[string]int{}
	for i, o := range spaces {
		index[o.Namespace] = i
	}
	err = a.phase(ctx, "", spaces, func(ctx context.Context, o Object) error {
		its, err := a.observeSpace(plan, o)
		items[index[o.Namespace]] = its
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Status{Lab: plan.Lab, Items: slices.Concat(items...)}, nil
}

// observeSpace observes one namespace.
func (a *applier) observeSpace(plan *topologies.Plan, o Object) ([]Item, error) {
	ns := o.Namespace
	item := func(kind, name, state, want, got string) Item {
		return Item{Namespace: ns, Kind: kind, Name: name, State: state, Want: want, Got: got}
	}
	if !Exists(ns) {
		return []Item{item("namespace", ns, StateMissing, "", "")}, nil
	}
	ent, err := a.ns.get(ns)
	if err != nil {
		return nil, err
	}
	links, err := dump(ent.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: links: %w", ns, err)
	}
	alias := ""
	for _, lk := range links {
		if lk.Attrs().Index == loIndex {
			alias = lk.Attrs().Alias
		}
	}
	want := spaceMarker(a.lab, o)
	if alias != want {
		return []Item{item("namespace", ns, StateDifferent, "lo alias "+want, "lo alias "+alias)}, nil
	}
	out := []Item{item("namespace", ns, StatePresent, "", "")}

	addrs, err := dump(func() ([]netlink.Addr, error) { return ent.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("namespace %s: addresses: %w", ns, err)
	}
	byName := map[string]netlink.Link{}
	nameOf := map[int]string{}
	for _, lk := range links {
		byName[lk.Attrs().Name] = lk
		nameOf[lk.Attrs().Index] = lk.Attrs().Name
	}
	addrsOf := map[int][]string{}
	for _, ad := range addrs {
		p, ok := prefixOf(ad.IPNet)
		if !ok || p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			continue
		}
		addrsOf[ad.LinkIndex] = append(addrsOf[ad.LinkIndex], p.String())
	}

	// Interfaces: link ends, and bridges in the fabric.
	type wantIface struct {
		name   string
		mtu    int
		mac    string
		master string
		addrs  []string
		// plugins: made by a cni link's plugins in its host node, where
		// only presence and up are checked (the result does not say
		// more).
		plugins bool
	}
	var wants []wantIface
	for _, e := range plan.Ifaces(ns) {
		w := wantIface{name: e.Name, mtu: e.MTU, mac: e.MAC, master: e.Master}
		for _, p := range e.Addresses {
			w.addrs = append(w.addrs, p.String())
		}
		wants = append(wants, w)
	}
	if o.Kind == KindFabric {
		for _, b := range plan.Bridges {
			wants = append(wants, wantIface{name: b.Name, mtu: b.MTU})
		}
	}
	// What cni links' plugins made: the endpoint with the addresses the
	// IPAM plugin gave it, and in the host node what their result names.
	// The bandwidth plugin's ifb devices are in no result.
	cniHost := false
	for _, c := range plan.CNI {
		if c.Namespace == ns {
			w := wantIface{name: c.Interface}
			for _, p := range c.Addresses() {
				w.addrs = append(w.addrs, p.String())
			}
			wants = append(wants, w)
		}
		if c.HostNamespace == ns {
			cniHost = true
			for _, i := range c.Result.HostInterfaces() {
				if !slices.ContainsFunc(wants, func(w wantIface) bool { return w.name == i }) {
					wants = append(wants, wantIface{name: i, plugins: true})
				}
			}
		}
	}
	planned := map[string]bool{"lo": true}
	for _, w := range wants {
		planned[w.name] = true
		lk, ok := byName[w.name]
		if !ok {
			out = append(out, item("interface", w.name, StateMissing, "", ""))
			continue
		}
		at := lk.Attrs()
		var wd, gd []string
		diff := func(field, want, got string) {
			if want != got {
				wd = append(wd, field+"="+want)
				gd = append(gd, field+"="+got)
			}
		}
		diff("up", "true", strconv.FormatBool(at.Flags&net.FlagUp != 0))
		if w.mtu != 0 {
			diff("mtu", strconv.Itoa(w.mtu), strconv.Itoa(at.MTU))
		}
		if w.mac != "" {
			diff("mac", strings.ToLower(w.mac), at.HardwareAddr.String())
		}
		if !w.plugins {
			diff("master", w.master, nameOf[at.MasterIndex])
			got := addrsOf[at.Index]
			sort.Strings(got)
			sort.Strings(w.addrs)
			diff("addresses", strings.Join(w.addrs, ","), strings.Join(got, ","))
		}
		if len(wd) == 0 {
			out = append(out, item("interface", w.name, StatePresent, "", ""))
		} else {
			out = append(out, item("interface", w.name, StateDifferent, strings.Join(wd, " "), strings.Join(gd, " ")))
		}
	}
	for _, lk := range links {
		if !planned[lk.Attrs().Name] && !(cniHost && lk.Type() == "ifb") {
			out = append(out, item("interface", lk.Attrs().Name, StateExtra, "", lk.Type()))
		}
	}
	if o.Kind == KindFabric {
		return out, nil
	}

	// Routes: the main table's static routes against the node's.
	routes, err := dump(func() ([]netlink.Route, error) {
		return ent.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("namespace %s: routes: %w", ns, err)
	}
	type routeKey struct {
		dst    netip.Prefix
		metric int
	}
	live := map[routeKey]string{}
	for _, r := range routes {
		if r.Protocol != routeProtocol {
			continue
		}
		live[routeKey{routeDst(r), r.Priority}] = describeRoute(r.Gw, nameOf[r.LinkIndex])
	}
	for _, r := range o.Node.Routes {
		k := routeKey{r.Dst.Masked(), kernelMetric(r)}
		var via net.IP
		if r.Via.IsValid() {
			via = r.Via.AsSlice()
		}
		want := describeRoute(via, r.Dev)
		got, ok := live[k]
		delete(live, k)
		switch {
		case !ok:
			out = append(out, item("route", routeName(k.dst, k.metric), StateMissing, want, ""))
		case r.Dev == "" && strings.HasPrefix(got, want) || got == want:
			// A route given without a device gets one from the kernel.
			out = append(out, item("route", routeName(k.dst, k.metric), StatePresent, "", ""))
		default:
			out = append(out, item("route", routeName(k.dst, k.metric), StateDifferent, want, got))
		}
	}
	extra := make([]routeKey, 0, len(live))
	for k := range live {
		extra = append(extra, k)
	}
	sort.Slice(extra, func(i, j int) bool {
		return routeName(extra[i].dst, extra[i].metric) < routeName(extra[j].dst, extra[j].metric)
	})
	for _, k := range extra {
		out = append(out, item("route", routeName(k.dst, k.metric), StateExtra, "", live[k]))
	}

	// Sysctls, read from a thread in the namespace.
	if len(o.Node.Sysctls) > 0 {
		values := make([]string, len(o.Node.Sysctls))
		errs := make([]error, len(o.Node.Sysctls))
		err := doFd(ns, ent.fd, func() error {
			for i, s := range o.Node.Sysctls {
				values[i], errs[i] = readSysctl(s.Key)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for i, s := range o.Node.Sysctls {
			want := strings.Join(strings.Fields(s.Value), " ")
			switch {
			case errs[i] != nil:
				out = append(out, item("sysctl", s.Key, StateMissing, want, errs[i].Error()))
			case values[i] != want:
				out = append(out, item("sysctl", s.Key, StateDifferent, want, values[i]))
			default:
				out = append(out, item("sysctl", s.Key, StatePresent, "", ""))
			}
		}
	}
	return out, nil
}

// kernelMetric is the metric the kernel gives route r: an IPv6 route
// added without one gets IP6_RT_PRIO_USER, 1024.
func kernelMetric(r topologies.Route) int {
	if r.Metric == 0 && r.Dst.Addr().Is6() {
		return 1024
	}
	return r.Metric
}

// routeDst is a netlink route's destination; a default route has none.
func routeDst(r netlink.Route) netip.Prefix {
	if p, ok := prefixOf(r.Dst); ok {
		return p
	}
	if r.Family == unix.AF_INET6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

func routeName(dst netip.Prefix, metric int) string {
	if metric == 0 {
		return dst.String()
	}
	return dst.String() + " metric " + strconv.Itoa(metric)
}

func describeRoute(via net.IP, dev string) string {
	var parts []string
	if via != nil {
		parts = append(parts, "via "+via.String())
	}
	if dev != "" {
		parts = append(parts, "dev "+dev)
	}
	return strings.Join(parts, " ")
}
