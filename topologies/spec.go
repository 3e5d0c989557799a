package topologies

// Version 1 of the topology file. The structs mirror the YAML one to one and
// hold the file as written; defaults, automatic addresses and names are
// resolved later by Build, which turns a Topology into a Plan.

// Topology is one decoded topology file.
type Topology struct {
	Name     string        `yaml:"name"`
	Pool     string        `yaml:"pool"`     // IPv4 prefix for automatic addresses; default 198.18.0.0/15
	Defaults NodeSpec      `yaml:"defaults"` // inherited by every node
	Nodes    Map[NodeSpec] `yaml:"nodes"`
	Links    []LinkSpec    `yaml:"links"`

	file     string
	pos      map[string]Pos    // field path -> where its value is in the file
	files    map[string][]byte // files it refers to, by name as written (SetFile)
	fileErrs map[string]error  // why one of them could not be read (ReadFiles)
}

// NodeSpec is a network namespace with its settings. In defaults, sysctls merge
// key by key (the node wins), agent is overridden, and routes, firewall and
// exec entries of the defaults come before the node's own.
type NodeSpec struct {
	Sysctls  Map[Scalar] `yaml:"sysctls"`
	Routes   []RouteSpec `yaml:"routes"`
	Firewall []RuleSpec  `yaml:"firewall"`
	Exec     []string    `yaml:"exec"`
	Agent    *bool       `yaml:"agent"`
}

// RouteSpec is a static route in a node. Exactly one of Dst and Default is set;
// Via is an address or an endpoint reference node:interface whose first
// address of the same family is used.
type RouteSpec struct {
	Dst     string `yaml:"dst"`
	Default bool   `yaml:"default"`
	Via     string `yaml:"via"`
	Dev     string `yaml:"dev"`
	Metric  int    `yaml:"metric"`
}

// RuleSpec is one firewall rule, applied with nft in the node's own `inet labctl`
// table so that traffic meets the real netfilter hooks.
type RuleSpec struct {
	Chain   string    `yaml:"chain"`  // input, output or forward
	Proto   string    `yaml:"proto"`  // tcp, udp, icmp, icmpv6; empty matches any
	Src     string    `yaml:"src"`    // address or prefix
	Dst     string    `yaml:"dst"`    // address or prefix
	Sport   PortRange `yaml:"sport"`  // 53 or 1024-65535; needs tcp or udp
	Dport   PortRange `yaml:"dport"`  // as sport
	In      string    `yaml:"in"`     // input interface
	Out     string    `yaml:"out"`    // output interface
	Action  string    `yaml:"action"` // accept, drop or reject
	Comment string    `yaml:"comment"`
}

// LinkSpec connects endpoints. Type veth joins exactly two endpoints; bridge puts
// any number of endpoints (and other bridges) on one L2 segment; host-nic
// gives one node a host interface, as a macvlan child or by moving it in;
// cni attaches each endpoint with a CNI network configuration list, whose
// plugins run in the host node's namespace.
type LinkSpec struct {
	Type        string         `yaml:"type"` // veth (default), bridge, host-nic, cni
	Name        string         `yaml:"name"` // bridge device name (bridge only)
	Endpoints   []EndpointSpec `yaml:"endpoints"`
	Bridges     []string       `yaml:"bridges"`      // bridge: other bridges wired to this one
	Interface   string         `yaml:"interface"`    // host-nic: the host interface
	Mode        string         `yaml:"mode"`         // host-nic: macvlan (default) or move
	MacvlanMode string         `yaml:"macvlan-mode"` // host-nic macvlan: bridge (default), private, vepa, passthru
	MTU         int            `yaml:"mtu"`
	Offloads    Map[Toggle]    `yaml:"offloads"` // ethtool -K names: gro, gso, tso, ...
	Queues      *QueuesSpec    `yaml:"queues"`
	Qdisc       *QdiscSpec     `yaml:"qdisc"`

	// cni only.
	Host          string      `yaml:"host"`           // the node whose namespace the plugins run in
	Conflist      string      `yaml:"conflist"`       // a conflist file, relative to the topology's
	Config        *JSON       `yaml:"config"`         // or the conflist inline
	RuntimeConfig *JSON       `yaml:"runtime-config"` // capability args: {bandwidth: {...}, portMappings: [...]}
	Args          Map[Scalar] `yaml:"args"`           // CNI_ARGS
}

// EndpointSpec is one interface of a node. In YAML it is either the short form
// "node:interface" or a mapping with addresses and a MAC.
type EndpointSpec struct {
	Node      string   `yaml:"node"`
	Interface string   `yaml:"interface"`
	Addresses []string `yaml:"addresses"` // nil: automatic IPv4; empty list: none
	MAC       string   `yaml:"mac"`
}

// QueuesSpec sets the number of RX and TX queues of the interfaces a link creates.
type QueuesSpec struct {
	RX int `yaml:"rx"`
	TX int `yaml:"tx"`
}

// QdiscSpec is the root qdisc installed on every end of a link (each end shapes
// its own egress, so both directions are shaped).
type QdiscSpec struct {
	Type    string `yaml:"type"`    // tbf, htb or netem
	Rate    string `yaml:"rate"`    // tbf, htb: 100mbit, 1gbit, ...
	Ceil    string `yaml:"ceil"`    // htb: default rate
	Burst   string `yaml:"burst"`   // tbf: bucket size, 32kb, ...
	Latency string `yaml:"latency"` // tbf: max queueing delay, 50ms
	Limit   int    `yaml:"limit"`   // tbf, netem: queue limit in bytes (tbf) or packets (netem)
	Delay   string `yaml:"delay"`   // netem
	Jitter  string `yaml:"jitter"`  // netem
	Loss    string `yaml:"loss"`    // netem: 0.1%
}
