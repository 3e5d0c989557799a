package topologies

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/labctl/labctl/internal/sysctl"
)

// DefaultPool is where automatic addresses come from: 198.18.0.0/15 is
// reserved for benchmarking (RFC 2544), so a lab never collides with a
// network the host really uses.
const DefaultPool = "198.18.0.0/15"

// Plan validates the topology and resolves it into a Plan. It reports every
// problem it finds, each with file:line:column and the field path.
func (t *Topology) Plan() (*Plan, error) {
	b := &builder{t: t, plan: &Plan{Lab: t.Name}, fabric: fabricNames{}, ifaces: map[string]endRef{}, cniEnds: map[string]cniEnd{}}
	b.topLevel()
	b.nodes()
	b.links()
	if len(b.errs) == 0 {
		// Addresses, routes and rules refer to nodes and interfaces; checking
		// them against a broken structure would only repeat its errors.
		b.addresses()
		b.cniOverlaps()
		b.routes()
		b.rules()
	}
	if len(b.errs) > 0 {
		return nil, b.errs.sorted()
	}
	return b.plan, nil
}

type builder struct {
	t      *Topology
	plan   *Plan
	errs   ErrorList
	fabric fabricNames

	nodePaths map[string]string // node name -> path of its entry
	specs     []nodeSettings    // per plan node, the merged settings with their paths
	ifaces    map[string]endRef // "node:iface" -> where it is declared and built (link -1: by a cni link)
	cniEnds   map[string]cniEnd // "node:iface" of cni endpoints
	nicEnds   []endRef          // node ends of host-nic links, in file order
	bridges   map[string]string // bridge name -> path
	wires     map[string]string // bridge pair -> path of the wire
	members   []*bridgeMember
	segments  []*segment
}

// endRef locates a node's interface: where the file declares it, and its
// link and end index in the plan (pointers into a growing slice would go
// stale).
type endRef struct {
	path      string
	spec      *EndpointSpec
	link, end int
}

// segment is one L2 domain: a veth pair, or bridges wired together with their
// members. Automatic addresses are allocated per segment.
type segment struct {
	path string
	ends []endRef
}

func (b *builder) at(path string) Pos { return b.t.at(path) }

func (b *builder) errorf(path, format string, args ...any) {
	b.errs = append(b.errs, &Error{Pos: b.at(path), Field: path, Msg: fmt.Sprintf(format, args...)})
}

func (b *builder) iface(r endRef) *Iface { return &b.plan.Links[r.link].Ends[r.end] }

func (b *builder) topLevel() {
	if err := CheckName(b.t.Name); err != nil {
		b.errorf("name", "lab %v", err)
	}
	pool := b.t.Pool
	if pool == "" {
		pool = DefaultPool
	}
	p, err := netip.ParsePrefix(pool)
	switch {
	case err != nil || !p.Addr().Is4():
		b.errorf("pool", "expected an IPv4 prefix such as %s, got %q", DefaultPool, pool)
	case p != p.Masked():
		b.errorf("pool", "prefix %s has host bits set; did you mean %s?", p, p.Masked())
	case p.Bits() > 30:
		b.errorf("pool", "prefix %s is too small to allocate from; use /30 or larger", p)
	}
	b.plan.Pool = pool
	if len(b.t.Nodes) == 0 {
		b.errorf("nodes", "a topology needs at least one node")
	}
}

// nodeSettings is a node's merged settings, each list item with the path it
// came from (the defaults or the node itself) for error messages.
type nodeSettings struct {
	routes []pathed[RouteSpec]
	rules  []pathed[RuleSpec]
}

type pathed[T any] struct {
	path string
	v    T
}

var sysctlKey = regexp.MustCompile(`^net\.[A-Za-z0-9_./-]+$`)

// badSysctl says why key names no sysctl file (an empty, "." or ".."
// level), by the rule netns writes it with.
func badSysctl(key string) error {
	_, err := sysctl.Path(key)
	return err
}

func (b *builder) nodes() {
	b.nodePaths = map[string]string{}
	d := b.t.Defaults
	for _, e := range b.t.Nodes {
		path := joinPath("nodes", e.Key)
		if err := CheckName(e.Key); err != nil {
			b.errorf(path, "node %v", err)
		} else if e.Key == FabricNode {
			b.errorf(path, "node name %q is taken: %s names the namespace of the lab's bridges", e.Key, FabricNamespace(b.t.Name))
		}
		b.nodePaths[e.Key] = path
		n := Node{Name: e.Key, Namespace: Namespace(b.t.Name, e.Key), Agent: true}
		if d.Agent != nil {
			n.Agent = *d.Agent
		}
		if e.Value.Agent != nil {
			n.Agent = *e.Value.Agent
		}
		n.Sysctls = b.sysctls(path, e.Value.Sysctls)
		for i, x := range d.Exec {
			b.execEntry(fmt.Sprintf("defaults.exec[%d]", i), x)
		}
		for i, x := range e.Value.Exec {
			b.execEntry(fmt.Sprintf("%s.exec[%d]", path, i), x)
		}
		n.Exec = append(append([]string(nil), d.Exec...), e.Value.Exec...)
		var s nodeSettings
		for i, r := range d.Routes {
			s.routes = append(s.routes, pathed[RouteSpec]{fmt.Sprintf("defaults.routes[%d]", i), r})
		}
		for i, r := range e.Value.Routes {
			s.routes = append(s.routes, pathed[RouteSpec]{fmt.Sprintf("%s.routes[%d]", path, i), r})
		}
		for i, r := range d.Firewall {
			s.rules = append(s.rules, pathed[RuleSpec]{fmt.Sprintf("defaults.firewall[%d]", i), r})
		}
		for i, r := range e.Value.Firewall {
			s.rules = append(s.rules, pathed[RuleSpec]{fmt.Sprintf("%s.firewall[%d]", path, i), r})
		}
		b.plan.Nodes = append(b.plan.Nodes, n)
		b.specs = append(b.specs, s)
	}
}

// sysctls merges the defaults' sysctls with a node's: the node's value wins
// and keeps the defaults' position, so the order of writes stays the file's.
func (b *builder) sysctls(nodePath string, own Map[Scalar]) []Sysctl {
	var out []Sysctl
	index := map[string]int{}
	add := func(path string, m Map[Scalar]) {
		for _, e := range m {
			p := joinPath(path+".sysctls", e.Key)
			switch {
			case !sysctlKey.MatchString(e.Key):
				b.errorf(p, "only net.* sysctls belong to a network namespace; %q would change the whole host", e.Key)
				continue
			case badSysctl(e.Key) != nil:
				b.errorf(p, "%v", badSysctl(e.Key))
				continue
			case strings.TrimSpace(string(e.Value)) == "" || strings.ContainsAny(string(e.Value), "\n\r"):
				b.errorf(p, "sysctl %s needs a one-line value", e.Key)
				continue
			}
			if i, ok := index[e.Key]; ok {
				out[i].Value = string(e.Value)
				continue
			}
			index[e.Key] = len(out)
			out = append(out, Sysctl{Key: e.Key, Value: string(e.Value)})
		}
	}
	add("defaults", b.t.Defaults.Sysctls)
	add(nodePath, own)
	return out
}

func (b *builder) execEntry(path, cmd string) {
	if strings.TrimSpace(cmd) == "" {
		b.errorf(path, "an exec entry needs a command")
	}
}

var linkTypes = map[string]int{"veth": 0, "bridge": 0, "host-nic": 0, "cni": 0}

func (b *builder) links() {
	b.bridges, b.wires = map[string]string{}, map[string]string{}
	// Bridges first: members and wires of one bridge may refer to another
	// declared later in the file.
	for i, l := range b.t.Links {
		if l.Type != "bridge" {
			continue
		}
		path := fmt.Sprintf("links[%d]", i)
		if l.Name == "" {
			b.errorf(path+".name", "a bridge needs a name (its device name, at most %d characters)", MaxIfnameLen)
			continue
		}
		if err := CheckIfname(l.Name); err != nil {
			b.errorf(path+".name", "bridge %v", err)
			continue
		}
		if first, dup := b.bridges[l.Name]; dup {
			b.errorf(path+".name", "bridge %s is already declared at %s", l.Name, first)
			continue
		}
		b.bridges[l.Name] = path
		b.plan.Bridges = append(b.plan.Bridges, Bridge{Name: l.Name, MTU: l.MTU})
	}
	if len(b.plan.Bridges) > 0 {
		b.plan.Fabric = FabricNamespace(b.t.Name)
	}
	for i := range b.t.Links {
		l := &b.t.Links[i]
		path := fmt.Sprintf("links[%d]", i)
		typ := l.Type
		if typ == "" {
			typ = "veth"
		}
		if _, ok := linkTypes[typ]; !ok {
			b.errorf(path+".type", "unknown link type %q; use veth, bridge, host-nic or cni", l.Type)
			continue
		}
		if typ != "cni" {
			b.forbid(path, l, "host", "conflist", "config", "runtime-config", "args")
		}
		b.linkSettings(path, l)
		switch typ {
		case "veth":
			b.forbid(path, l, "name", "bridges", "interface", "mode", "macvlan-mode")
			if len(l.Endpoints) != 2 {
				b.errorf(path+".endpoints", "a veth link joins exactly 2 endpoints, got %d", len(l.Endpoints))
				continue
			}
			b.veth(path, l)
		case "bridge":
			b.forbid(path, l, "interface", "mode", "macvlan-mode")
			if len(l.Endpoints) == 0 && len(l.Bridges) == 0 {
				b.errorf(path, "bridge %s has no endpoints and no bridges", l.Name)
				continue
			}
			b.bridge(path, l)
		case "host-nic":
			b.forbid(path, l, "name", "bridges")
			b.hostNIC(path, l)
		case "cni":
			// The list configures the interfaces the plugins make.
			b.forbid(path, l, "name", "bridges", "interface", "mode", "macvlan-mode", "mtu", "offloads", "queues", "qdisc")
			b.cni(path, l)
		}
	}
	b.bridgeSegments()
}

// forbid reports fields set on a link type that does not use them.
func (b *builder) forbid(path string, l *LinkSpec, fields ...string) {
	typ := l.Type
	if typ == "" {
		typ = "veth"
	}
	v := reflect.ValueOf(l).Elem()
	for _, f := range fields {
		if !v.Field(linkFields[f]).IsZero() {
			b.errorf(path+"."+f, "field %s does not apply to a %s link", f, typ)
		}
	}
}

var linkFields = yamlFields(reflect.TypeFor[LinkSpec]())

// settings are the per-link interface settings, resolved once per link.
type settings struct {
	mtu      int
	offloads []Offload
	rx, tx   int
	qdisc    *Qdisc
}

func (b *builder) linkSettings(path string, l *LinkSpec) {
	if l.MTU != 0 && (l.MTU < 68 || l.MTU > 65535) {
		b.errorf(path+".mtu", "MTU %d is outside 68-65535", l.MTU)
	}
	for _, o := range l.Offloads {
		if _, ok := offloadNames[o.Key]; !ok {
			b.errorf(joinPath(path+".offloads", o.Key), "unknown offload %q; known: %s", o.Key, strings.Join(OffloadNames(), ", "))
		}
	}
	if q := l.Queues; q != nil {
		for _, c := range []struct {
			name string
			v    int
		}{{"rx", q.RX}, {"tx", q.TX}} {
			if c.v < 0 || c.v > 256 {
				b.errorf(path+".queues."+c.name, "queue count %d is outside 1-256", c.v)
			}
		}
		if q.RX == 0 && q.TX == 0 {
			b.errorf(path+".queues", "set rx, tx or both")
		}
	}
	if l.Qdisc != nil {
		b.qdisc(path+".qdisc", l.Qdisc)
	}
}

func (b *builder) settings(l *LinkSpec) settings {
	s := settings{mtu: l.MTU}
	for _, o := range l.Offloads {
		s.offloads = append(s.offloads, Offload{Name: offloadNames[o.Key], On: bool(o.Value)})
	}
	if l.Queues != nil {
		s.rx, s.tx = l.Queues.RX, l.Queues.TX
	}
	if l.Qdisc != nil {
		s.qdisc = b.qdisc("", l.Qdisc)
	}
	return s
}

func (s settings) apply(i *Iface) {
	i.MTU, i.RxQueues, i.TxQueues, i.Qdisc = s.mtu, s.rx, s.tx, s.qdisc
	i.Offloads = append([]Offload(nil), s.offloads...)
}

// endpoint checks one endpoint and returns the node end it describes.
func (b *builder) endpoint(path string, e *EndpointSpec, s settings) (Iface, bool) {
	n := len(b.errs)
	if _, ok := b.nodePaths[e.Node]; !ok {
		b.errorf(path+".node", "node %q is not declared in nodes", e.Node)
	}
	if err := CheckIfname(e.Interface); err != nil {
		b.errorf(path+".interface", "%v", err)
	} else if prev, dup := b.ifaces[e.String()]; dup {
		b.errorf(path+".interface", "interface %s of node %s is already used by %s", e.Interface, e.Node, prev.path)
	}
	mac := ""
	if e.MAC != "" {
		hw, err := net.ParseMAC(e.MAC)
		switch {
		case err != nil || len(hw) != 6:
			b.errorf(path+".mac", "expected a MAC address such as 02:00:00:00:00:01, got %q", e.MAC)
		case hw[0]&1 == 1:
			b.errorf(path+".mac", "%s is a multicast address; an interface needs a unicast one (even first octet)", e.MAC)
		case hw.String() == "00:00:00:00:00:00":
			b.errorf(path+".mac", "the all-zero MAC address is not valid for an interface")
		default:
			mac = hw.String()
		}
	}
	i := Iface{Node: e.Node, Namespace: Namespace(b.t.Name, e.Node), Name: e.Interface, MAC: mac}
	s.apply(&i)
	return i, len(b.errs) == n
}

// addLink appends l to the plan and returns references to its node ends.
func (b *builder) addLink(l Link, paths []string, specs []*EndpointSpec) []endRef {
	b.plan.Links = append(b.plan.Links, l)
	li := len(b.plan.Links) - 1
	var ends []endRef
	for ei, e := range l.Ends {
		if e.Node == "" {
			continue // a fabric end carries no address
		}
		ref := endRef{path: paths[ei], spec: specs[ei], link: li, end: ei}
		b.ifaces[e.Node+":"+e.Name] = ref
		ends = append(ends, ref)
	}
	return ends
}

func (b *builder) veth(path string, l *LinkSpec) {
	s := b.settings(l)
	var ends []Iface
	ok := true
	for i := range l.Endpoints {
		end, good := b.endpoint(fmt.Sprintf("%s.endpoints[%d]", path, i), &l.Endpoints[i], s)
		ok = ok && good
		ends = append(ends, end)
	}
	if !ok {
		return
	}
	a, c := &l.Endpoints[0], &l.Endpoints[1]
	if a.String() == c.String() {
		b.errorf(path+".endpoints[1]", "a veth link cannot join %s to itself", a)
		return
	}
	link := Link{ID: "veth:" + a.String() + "=" + c.String(), Kind: KindVeth, Ends: ends, Pos: b.at(path)}
	seg := b.addLink(link, []string{path + ".endpoints[0]", path + ".endpoints[1]"}, []*EndpointSpec{a, c})
	b.segments = append(b.segments, &segment{path: path, ends: seg})
}

// bridgeMember records, for each bridge, the members that sit on it, so that
// bridges wired together form one segment.
type bridgeMember struct {
	bridge string
	ends   []endRef
	wires  []string // other bridges
	path   string
}

func (b *builder) bridge(path string, l *LinkSpec) {
	s := b.settings(l)
	m := &bridgeMember{bridge: l.Name, path: path}
	for i := range l.Endpoints {
		p := fmt.Sprintf("%s.endpoints[%d]", path, i)
		e := &l.Endpoints[i]
		node, ok := b.endpoint(p, e, s)
		if !ok {
			continue
		}
		id := "bridge:" + l.Name + ":" + e.String()
		fab := Iface{Namespace: b.plan.Fabric, Name: b.fabric.name(id), Master: l.Name}
		s.apply(&fab)
		link := Link{ID: id, Kind: KindVeth, Ends: []Iface{node, fab}, Pos: b.at(p)}
		m.ends = append(m.ends, b.addLink(link, []string{p, ""}, []*EndpointSpec{e, nil})...)
	}
	for i, other := range l.Bridges {
		p := fmt.Sprintf("%s.bridges[%d]", path, i)
		switch {
		case other == l.Name:
			b.errorf(p, "bridge %s cannot be wired to itself", l.Name)
			continue
		case b.bridges[other] == "":
			b.errorf(p, "bridge %q is not declared", other)
			continue
		}
		if prev, dup := b.wires[wireKey(l.Name, other)]; dup {
			b.errorf(p, "bridges %s and %s are already wired at %s", l.Name, other, prev)
			continue
		}
		b.wires[wireKey(l.Name, other)] = p
		id := "bridge:" + l.Name + "=" + other
		ea := Iface{Namespace: b.plan.Fabric, Name: b.fabric.name(id + "/a"), Master: l.Name}
		eb := Iface{Namespace: b.plan.Fabric, Name: b.fabric.name(id + "/b"), Master: other}
		s.apply(&ea)
		s.apply(&eb)
		b.plan.Links = append(b.plan.Links, Link{ID: id, Kind: KindVeth, Ends: []Iface{ea, eb}, Pos: b.at(p)})
		m.wires = append(m.wires, other)
	}
	b.members = append(b.members, m)
}

func wireKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + "=" + b
}

// bridgeSegments joins bridges wired together into one L2 segment each
// (a union-find over the wires), in the order the bridges were declared.
func (b *builder) bridgeSegments() {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		if p, ok := parent[x]; ok && p != x {
			r := find(p)
			parent[x] = r
			return r
		}
		return x
	}
	for _, m := range b.members {
		for _, w := range m.wires {
			ra, rb := find(m.bridge), find(w)
			if ra != rb {
				parent[rb] = ra
			}
		}
	}
	byRoot := map[string]*segment{}
	for _, m := range b.members {
		r := find(m.bridge)
		seg := byRoot[r]
		if seg == nil {
			seg = &segment{path: m.path}
			byRoot[r] = seg
			b.segments = append(b.segments, seg)
		}
		seg.ends = append(seg.ends, m.ends...)
	}
}

var macvlanModes = map[string]bool{"bridge": true, "private": true, "vepa": true, "passthru": true}

func (b *builder) hostNIC(path string, l *LinkSpec) {
	if err := CheckIfname(l.Interface); err != nil {
		b.errorf(path+".interface", "host %v", err)
		return
	}
	mode := l.Mode
	if mode == "" {
		mode = KindMacvlan
	}
	switch mode {
	case KindMacvlan:
		if l.MacvlanMode != "" && !macvlanModes[l.MacvlanMode] {
			b.errorf(path+".macvlan-mode", "unknown macvlan mode %q; use bridge, private, vepa or passthru", l.MacvlanMode)
			return
		}
	case KindMove:
		if l.MacvlanMode != "" {
			b.errorf(path+".macvlan-mode", "macvlan-mode applies only to mode macvlan")
		}
		// labctl down must give the host its NIC back as it was; it
		// restores name, MTU, addresses and link state, and refuses what it
		// could not restore.
		for _, f := range []struct {
			name string
			set  bool
		}{{"offloads", l.Offloads != nil}, {"queues", l.Queues != nil}, {"qdisc", l.Qdisc != nil}} {
			if f.set {
				b.errorf(path+"."+f.name, "%s cannot be set on a host NIC that is moved into a node: labctl down could not restore them; use mode macvlan, or set them with exec", f.name)
			}
		}
		if len(l.Endpoints) == 1 && l.Endpoints[0].MAC != "" {
			b.errorf(path+".endpoints[0].mac", "a moved host NIC keeps its own MAC address")
		}
	default:
		b.errorf(path+".mode", "unknown host-nic mode %q; use macvlan or move", l.Mode)
		return
	}
	if len(l.Endpoints) != 1 {
		b.errorf(path+".endpoints", "a host-nic link has exactly 1 endpoint (the node side), got %d", len(l.Endpoints))
		return
	}
	for _, prev := range b.plan.Links {
		if prev.Host == l.Interface && (prev.Kind == KindMove || mode == KindMove) {
			b.errorf(path+".interface", "host interface %s is already used by link %s; a moved NIC can be used only once", l.Interface, prev.ID)
			return
		}
	}
	p := path + ".endpoints[0]"
	e := &l.Endpoints[0]
	end, ok := b.endpoint(p, e, b.settings(l))
	if !ok {
		return
	}
	link := Link{ID: mode + ":" + l.Interface + ":" + e.String(), Kind: mode, Ends: []Iface{end}, Host: l.Interface, Pos: b.at(path + ".interface")}
	if mode == KindMacvlan {
		link.MacvlanMode = l.MacvlanMode
		if link.MacvlanMode == "" {
			link.MacvlanMode = "bridge"
		}
	}
	b.nicEnds = append(b.nicEnds, b.addLink(link, []string{p}, []*EndpointSpec{e})...)
}

func (b *builder) qdisc(path string, q *QdiscSpec) *Qdisc {
	report := path != "" // settings() resolves again without reporting
	errorf := func(field, format string, args ...any) {
		if report {
			b.errorf(path+"."+field, format, args...)
		}
	}
	out := &Qdisc{Kind: q.Type}
	rate := func(field, s string, required bool) uint64 {
		if s == "" {
			if required {
				errorf(field, "a %s qdisc needs %s", q.Type, field)
			}
			return 0
		}
		v, err := ParseRate(s)
		if err != nil {
			errorf(field, "%v", err)
		}
		return v
	}
	dur := func(field, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			errorf(field, "expected a duration such as 10ms, got %q", s)
		}
		return d
	}
	var allowed map[string]bool
	switch q.Type {
	case "tbf":
		out.Rate = rate("rate", q.Rate, true)
		if q.Burst == "" {
			errorf("burst", "a tbf qdisc needs burst (the bucket size, e.g. 32kb)")
		} else if v, err := ParseSize(q.Burst); err != nil {
			errorf("burst", "%v", err)
		} else {
			out.Burst = v
		}
		out.Latency = dur("latency", q.Latency)
		if q.Limit < 0 {
			errorf("limit", "limit must be positive")
		}
		out.Limit = uint32(max(q.Limit, 0))
		if out.Latency == 0 && out.Limit == 0 {
			out.Latency = 50 * time.Millisecond // tc requires one of the two
		}
		allowed = map[string]bool{"rate": true, "burst": true, "latency": true, "limit": true}
	case "htb":
		out.Rate = rate("rate", q.Rate, true)
		out.Ceil = rate("ceil", q.Ceil, false)
		if out.Ceil == 0 {
			out.Ceil = out.Rate
		} else if out.Ceil < out.Rate {
			errorf("ceil", "ceil is below rate")
		}
		allowed = map[string]bool{"rate": true, "ceil": true}
	case "netem":
		out.Delay = dur("delay", q.Delay)
		out.Jitter = dur("jitter", q.Jitter)
		if q.Loss != "" {
			v, err := parsePercent(q.Loss)
			if err != nil {
				errorf("loss", "%v", err)
			}
			out.LossPct = v
		}
		if q.Limit < 0 {
			errorf("limit", "limit must be positive")
		}
		out.Limit = uint32(max(q.Limit, 0))
		allowed = map[string]bool{"delay": true, "jitter": true, "loss": true, "limit": true}
	case "":
		errorf("type", "a qdisc needs a type: tbf, htb or netem")
		return out
	default:
		errorf("type", "unknown qdisc type %q; use tbf, htb or netem", q.Type)
		return out
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"rate", q.Rate != ""}, {"ceil", q.Ceil != ""}, {"burst", q.Burst != ""}, {"latency", q.Latency != ""},
		{"limit", q.Limit != 0}, {"delay", q.Delay != ""}, {"jitter", q.Jitter != ""}, {"loss", q.Loss != ""}} {
		if f.set && !allowed[f.name] {
			errorf(f.name, "field %s does not apply to a %s qdisc", f.name, q.Type)
		}
	}
	return out
}

func parsePercent(s string) (float64, error) {
	var v float64
	if _, err := fmt.Sscanf(strings.TrimSuffix(s, "%"), "%g", &v); err != nil || !strings.HasSuffix(s, "%") || v < 0 || v > 100 {
		return 0, fmt.Errorf("expected a percentage such as 0.1%%, got %q", s)
	}
	return v, nil
}
