package topologies

import (
	"net/netip"
	"strings"
	"time"
)

// Plan is the desired state of one lab: every namespace, device, address,
// route, sysctl and rule that `labctl up` creates, fully resolved (defaults
// applied, automatic addresses and generated names chosen). It is pure data:
// building it touches nothing, and netns.Apply makes it real. Slices keep a
// deterministic order, so plans compare with == on their JSON and serve as
// golden files.
type Plan struct {
	Lab  string `json:"lab"`
	Pool string `json:"pool"`
	// Fabric is the namespace that holds the lab's bridges and the bridge
	// ends of their veth pairs; empty when the lab has no bridge. Keeping
	// bridges out of the root namespace means the host never sees them and
	// removing that namespace removes them all.
	Fabric  string   `json:"fabric,omitempty"`
	Nodes   []Node   `json:"nodes"`
	Bridges []Bridge `json:"bridges,omitempty"`
	Links   []Link   `json:"links,omitempty"`
	// CNI are the endpoints that CNI plugins attach, made after the links
	// (a list's plugins may need them, a bridge plugin's host node its
	// uplink) and before the nodes' routes and sysctls.
	CNI []Attachment `json:"cni,omitempty"`
}

// NamespacePrefix starts the name of every namespace labctl creates:
// labctl-<lab>.<node> for nodes, labctl-<lab>.fabric for a lab's fabric.
// Lab and node names hold no '.', so the first '.' splits the lab from the
// node and no two labs can make the same name (lab "a" with node "b-n1" is
// labctl-a.b-n1, lab "a-b" with node "n1" labctl-a-b.n1); "fabric" is not
// a node name. Labs made by earlier versions named nodes labctl-<lab>-<node>
// and fabrics labctl-<lab>--fabric, which could collide; their plans keep
// those names, so that down finds them (see netns.List).
const NamespacePrefix = "labctl-"

// FabricNode is the part of a fabric namespace's name where a node's name
// would be, and so cannot name a node.
const FabricNode = "fabric"

// Namespace names the namespace of a node of a lab.
func Namespace(lab, node string) string { return NamespacePrefix + lab + "." + node }

// FabricNamespace names the namespace that holds a lab's bridges.
func FabricNamespace(lab string) string { return Namespace(lab, FabricNode) }

// ParseNamespace returns the lab and node a namespace name of today's
// scheme names (node is FabricNode for a fabric).
func ParseNamespace(name string) (lab, node string, ok bool) {
	rest, ok := strings.CutPrefix(name, NamespacePrefix)
	if !ok {
		return "", "", false
	}
	lab, node, ok = strings.Cut(rest, ".")
	if !ok || CheckName(lab) != nil || (node != FabricNode && CheckName(node) != nil) {
		return "", "", false
	}
	return lab, node, true
}

// Node is one network namespace and what is set in it once its interfaces
// exist.
type Node struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Agent     bool     `json:"agent"`
	Sysctls   []Sysctl `json:"sysctls,omitempty"`
	Routes    []Route  `json:"routes,omitempty"`
	Firewall  []Rule   `json:"firewall,omitempty"`
	Exec      []string `json:"exec,omitempty"`
}

// Sysctl is one net.* setting of a node's namespace.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Route is a static route; Dst is 0.0.0.0/0 or ::/0 for a default route.
type Route struct {
	Dst    netip.Prefix `json:"dst"`
	Via    netip.Addr   `json:"via,omitzero"`
	Dev    string       `json:"dev,omitempty"`
	Metric int          `json:"metric,omitempty"`
}

// Rule is a firewall rule with its family resolved: "ip" or "ip6" when its
// addresses or protocol pin one, empty when it applies to both.
type Rule struct {
	Chain   string       `json:"chain"`
	Family  string       `json:"family,omitempty"`
	Proto   string       `json:"proto,omitempty"`
	Src     netip.Prefix `json:"src,omitzero"`
	Dst     netip.Prefix `json:"dst,omitzero"`
	Sport   PortRange    `json:"sport,omitzero"`
	Dport   PortRange    `json:"dport,omitzero"`
	In      string       `json:"in,omitempty"`
	Out     string       `json:"out,omitempty"`
	Action  string       `json:"action"`
	Comment string       `json:"comment,omitempty"`
}

// Bridge is a Linux bridge in the lab's fabric namespace.
type Bridge struct {
	Name string `json:"name"`
	MTU  int    `json:"mtu,omitempty"`
}

// Link kinds in a Plan.
const (
	KindVeth    = "veth"    // a veth pair; either end may sit on a bridge
	KindMacvlan = "macvlan" // a macvlan child of a host interface, created in a node
	KindMove    = "move"    // a host interface moved into a node, moved back by down
)

// Link is one device, or pair of devices, that up creates. A declared bridge
// becomes several Links (one veth pair per member and per bridge-to-bridge
// wire), so that each can be added or removed on its own.
type Link struct {
	// ID identifies the link across plans: the same ID in two plans is the
	// same kernel object, so a changed file is reconciled by ID.
	ID          string  `json:"id"`
	Kind        string  `json:"kind"`
	Ends        []Iface `json:"ends"` // veth: two; macvlan and move: the node's end
	Host        string  `json:"host,omitempty"`
	MacvlanMode string  `json:"macvlan_mode,omitempty"`
	// Pos is where the link is declared, for errors found on the host
	// (a missing host interface) that still point into the file.
	Pos Pos `json:"-"`
}

// Iface is one network interface as up creates it.
type Iface struct {
	Node      string         `json:"node,omitempty"` // empty: the fabric
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Master    string         `json:"master,omitempty"` // bridge in the same namespace
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	MAC       string         `json:"mac,omitempty"`
	MTU       int            `json:"mtu,omitempty"`
	TxQueues  int            `json:"tx_queues,omitempty"`
	RxQueues  int            `json:"rx_queues,omitempty"`
	Offloads  []Offload      `json:"offloads,omitempty"`
	Qdisc     *Qdisc         `json:"qdisc,omitempty"`
}

// Offload is an ethtool feature set on or off; Name is the ethtool -K name.
// Offloads the file does not mention keep the kernel's defaults.
type Offload struct {
	Name string `json:"name"`
	On   bool   `json:"on"`
}

// Qdisc is a root qdisc with its units resolved: rates in bytes per second
// (the unit of the kernel's tc_ratespec), sizes in bytes.
type Qdisc struct {
	Kind    string        `json:"kind"`
	Rate    uint64        `json:"rate_bytes_per_s,omitempty"`
	Ceil    uint64        `json:"ceil_bytes_per_s,omitempty"`
	Burst   uint32        `json:"burst_bytes,omitempty"`
	Latency time.Duration `json:"latency_ns,omitempty"`
	Limit   uint32        `json:"limit,omitempty"`
	Delay   time.Duration `json:"delay_ns,omitempty"`
	Jitter  time.Duration `json:"jitter_ns,omitempty"`
	LossPct float64       `json:"loss_pct,omitempty"`
}

// Node returns the node called name.
func (p *Plan) Node(name string) (*Node, bool) {
	for i := range p.Nodes {
		if p.Nodes[i].Name == name {
			return &p.Nodes[i], true
		}
	}
	return nil, false
}

// Ifaces returns every interface of the plan that lives in namespace ns, in
// IfacesOf returns the interfaces of node, in plan order.
func (p *Plan) IfacesOf(node string) []Iface {
	n, ok := p.Node(node)
	if !ok {
		return nil
	}
	return p.Ifaces(n.Namespace)
}

// plan order.
func (p *Plan) Ifaces(ns string) []Iface {
	var out []Iface
	for _, l := range p.Links {
		for _, e := range l.Ends {
			if e.Namespace == ns {
				out = append(out, e)
			}
		}
	}
	return out
}

// AddressesOf returns the addresses of node's interfaces: those the plan
// gives its links' ends, then those the plugins of cni links reported.
func (p *Plan) AddressesOf(node string) []netip.Prefix {
	var out []netip.Prefix
	for _, i := range p.IfacesOf(node) {
		out = append(out, i.Addresses...)
	}
	for _, c := range p.CNI {
		if c.Node == node {
			out = append(out, c.Addresses()...)
		}
	}
	return out
}

// Namespaces returns the names of every namespace the plan creates: the
// nodes' in order, then the fabric's if there is one.
func (p *Plan) Namespaces() []string {
	out := make([]string, 0, len(p.Nodes)+1)
	for _, n := range p.Nodes {
		out = append(out, n.Namespace)
	}
	if p.Fabric != "" {
		out = append(out, p.Fabric)
	}
	return out
}

// NodeOf is the node a namespace of the plan belongs to (FabricNode for
// the fabric's).
func (p *Plan) NodeOf(namespace string) (string, bool) {
	if namespace == p.Fabric && p.Fabric != "" {
		return FabricNode, true
	}
	for _, n := range p.Nodes {
		if n.Namespace == namespace {
			return n.Name, true
		}
	}
	return "", false
}
