package topologies

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Attachment is one endpoint of a cni link: libcni runs the network
// configuration list's plugins (ADD, in order) with CNI_NETNS the endpoint
// node's namespace and CNI_IFNAME its interface, the plugins' processes in
// the Host node's namespace, so that what they make besides the endpoint's
// interface (bridges, host-side veths, ifb devices, iptables rules,
// ip_forward) lands in the lab and never in the real host. Its fields are
// what libcni needs to ADD it and to DEL it again after the file changed
// or labctl was killed.
type Attachment struct {
	// ID is cni:<network>:<node>:<interface>, unique in a plan.
	ID            string `json:"id"`
	Network       string `json:"network"` // the list's name
	Host          string `json:"host"`
	HostNamespace string `json:"host_namespace"`
	Node          string `json:"node"`
	Namespace     string `json:"namespace"`
	Interface     string `json:"interface"`
	// ContainerID is <lab>.<node>: what the plugins key their state by
	// (host-local's reservations, bandwidth's ifb name, libcni's cache).
	ContainerID string `json:"container_id"`
	// Config is the list as decoded and encoded again (keys sorted):
	// reconcile recreates the attachment when it changes, but not for a
	// change of white space or key order.
	Config        json.RawMessage `json:"config"`
	RuntimeConfig json.RawMessage `json:"runtime_config,omitempty"` // libcni's CapabilityArgs
	Args          [][2]string     `json:"args,omitempty"`

	// Result is what the plugins reported when up attached the endpoint
	// (interfaces, addresses, routes). It is not part of what the
	// attachment is: up fills it in, and reconcile ignores it.
	Result *CNIResult `json:"result,omitempty"`

	// Where the list's parts are written, for checks made on the host (a
	// plugin missing from the plugin path, a cniVersion it does not
	// support), so that they too point into the file.
	VersionPos Pos         `json:"-"`
	Plugins    []PluginRef `json:"-"`
}

// CNIResult is what an ADD made, as the plugins reported it.
type CNIResult struct {
	Interfaces []CNIInterface `json:"interfaces,omitempty"`
	IPs        []CNIIP        `json:"ips,omitempty"`
	Routes     []string       `json:"routes,omitempty"`
	// Plugins are the binaries the list's types (IPAM plugins included)
	// named in the plugin path when the ADD ran, in list order.
	Plugins []CNIPlugin `json:"plugins,omitempty"`
}

// CNIPlugin identifies a plugin binary: where it is, the module version it
// was built from, and its sha256.
type CNIPlugin struct {
	Type    string `json:"type"`
	Path    string `json:"path"`
	Module  string `json:"module,omitempty"`  // github.com/containernetworking/plugins
	Version string `json:"version,omitempty"` // v1.10.0; empty when the binary carries no build info
	SHA256  string `json:"sha256"`
}

// CNIInterface is one interface a plugin made or used; Sandbox is empty
// for the host node's, the endpoint's namespace path otherwise.
type CNIInterface struct {
	Name    string `json:"name"`
	MAC     string `json:"mac,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
}

// CNIIP is an address the IPAM plugin assigned.
type CNIIP struct {
	Address   string `json:"address"`
	Gateway   string `json:"gateway,omitempty"`
	Interface string `json:"interface,omitempty"`
}

// HostInterfaces names the interfaces the plugins reported in the host
// node (a bridge, host-side veths).
func (r *CNIResult) HostInterfaces() []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, i := range r.Interfaces {
		if i.Sandbox == "" {
			out = append(out, i.Name)
		}
	}
	return out
}

// Describe lists what the result says the plugins made, one line each,
// naming interfaces by the node they are in.
func (r *CNIResult) Describe(host, node string) []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, i := range r.Interfaces {
		where := host
		if i.Sandbox != "" {
			where = node
		}
		out = append(out, "interface "+where+":"+i.Name)
	}
	for _, ip := range r.IPs {
		s := "address " + ip.Address
		if ip.Gateway != "" {
			s += " gw " + ip.Gateway
		}
		out = append(out, s)
	}
	for _, rt := range r.Routes {
		out = append(out, "route "+rt)
	}
	return out
}

// Addresses are the endpoint's addresses that the plugins reported.
func (a *Attachment) Addresses() []netip.Prefix {
	if a.Result == nil {
		return nil
	}
	var out []netip.Prefix
	for _, ip := range a.Result.IPs {
		if ip.Interface != "" && ip.Interface != a.Interface {
			continue
		}
		if p, err := netip.ParsePrefix(ip.Address); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// PluginRef is one plugin an attachment runs: a list entry's type, or the
// IPAM plugin it delegates to.
type PluginRef struct {
	Type  string
	Field string // plugins[1].type, plugins[0].ipam.type
	Pos   Pos
}

// String names the attachment as the CLI prints it.
func (a *Attachment) String() string {
	return a.Network + " on " + a.Node + ":" + a.Interface
}

// CNIVersion is the cniVersion of the attachment's list.
func (a *Attachment) CNIVersion() string {
	var l struct {
		CNIVersion string `json:"cniVersion"`
	}
	_ = json.Unmarshal(a.Config, &l)
	return l.CNIVersion
}

// Types lists the plugins the list runs, IPAM plugins after the plugin
// that delegates to them.
func (a *Attachment) Types() []string {
	var l struct {
		Plugins []struct {
			Type string `json:"type"`
			IPAM struct {
				Type string `json:"type"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	_ = json.Unmarshal(a.Config, &l)
	var out []string
	for _, p := range l.Plugins {
		out = append(out, p.Type)
		if p.IPAM.Type != "" {
			out = append(out, p.IPAM.Type)
		}
	}
	return out
}

// cniNetworkName is the rule libcni applies to a list's name and a
// container ID (utils.ValidateNetworkName, ValidateContainerID).
var cniNetworkName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)

// pluginType is what a plugin type may be: a file name in the plugin path.
var pluginType = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]*$`)

// Files lists the files the topology refers to (the conflist of each cni
// link), as written: relative to the topology's own directory.
func (t *Topology) Files() []string {
	var out []string
	for _, l := range t.Links {
		if l.Conflist != "" && !slices.Contains(out, l.Conflist) {
			out = append(out, l.Conflist)
		}
	}
	return out
}

// SetFile gives the topology the text of a file it refers to. Files are
// read by whoever has them (the CLI, beside the topology or among the
// embedded examples) and travel with the topology, so that a server builds
// the same lab as the machine the file is on.
func (t *Topology) SetFile(name string, data []byte) {
	if t.files == nil {
		t.files = map[string][]byte{}
	}
	t.files[name] = data
}

// File returns the text of a file the topology refers to, once read.
func (t *Topology) File(name string) []byte { return t.files[name] }

// ReadFiles reads the files the topology refers to from dir (the
// topology's directory). A file that cannot be read is reported by Plan,
// at the field that names it, with every other problem of the file.
func (t *Topology) ReadFiles(dir fs.FS) {
	for _, l := range t.Links {
		if l.Conflist == "" || t.files[l.Conflist] != nil {
			continue
		}
		from, name := dir, filepath.Clean(l.Conflist)
		if filepath.IsAbs(name) {
			from, name = os.DirFS("/"), strings.TrimPrefix(name, "/")
		}
		data, err := fs.ReadFile(from, name)
		if err != nil {
			if t.fileErrs == nil {
				t.fileErrs = map[string]error{}
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			t.fileErrs[l.Conflist] = err
			continue
		}
		t.SetFile(l.Conflist, data)
	}
}

// filePath is how errors name a file the topology refers to.
func (t *Topology) filePath(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(filepath.Dir(t.file), name)
}

// cniEnd is a node interface that a cni link makes, for routes and the
// IPAM overlap check.
type cniEnd struct {
	path    string
	subnets []ipamSubnet
}

// ipamSubnet is a subnet an IPAM plugin assigns from, and where it is
// written.
type ipamSubnet struct {
	prefix netip.Prefix
	field  string
	pos    Pos
}

// conflist is a decoded network configuration list and how to point into it.
type conflist struct {
	value map[string]any
	// at returns where the value at a path inside the list is.
	at   func(sub string) Pos
	path string // the field path errors name: links[2].config or the file's
}

func (c *conflist) field(sub string) string {
	if sub == "" {
		return c.path
	}
	if c.path == "" {
		return sub
	}
	if strings.HasPrefix(sub, "[") {
		return c.path + sub
	}
	return c.path + "." + sub
}

func (b *builder) cniErrorf(c *conflist, sub, format string, args ...any) {
	b.errs = append(b.errs, &Error{Pos: c.at(sub), Field: c.field(sub), Msg: fmt.Sprintf(format, args...)})
}

// cni checks a cni link and adds an Attachment per endpoint.
func (b *builder) cni(path string, l *LinkSpec) {
	n := len(b.errs)
	if l.Host == "" {
		b.errorf(path+".host", "a cni link needs host: the node whose namespace its plugins run in (the Kubernetes node's role)")
	} else if _, ok := b.nodePaths[l.Host]; !ok {
		b.errorf(path+".host", "node %q is not declared in nodes", l.Host)
	}
	c := b.loadConflist(path, l)
	if len(l.Endpoints) == 0 {
		b.errorf(path+".endpoints", "a cni link attaches at least 1 endpoint")
	}
	var ends []Iface
	for i := range l.Endpoints {
		ep := fmt.Sprintf("%s.endpoints[%d]", path, i)
		e := &l.Endpoints[i]
		if e.Addresses != nil {
			b.errorf(ep+".addresses", "addresses of a cni endpoint come from the conflist's IPAM plugin")
		}
		if e.MAC != "" {
			b.errorf(ep+".mac", "the MAC address of a cni endpoint is the plugins' (tuning sets one)")
		}
		if e.Node == l.Host && l.Host != "" {
			b.errorf(ep+".node", "node %s is the link's host; a plugin cannot attach the namespace it runs in", e.Node)
		}
		end, ok := b.endpoint(ep, e, settings{})
		if !ok {
			continue
		}
		b.ifaces[e.String()] = endRef{path: ep, spec: e, link: -1}
		ends = append(ends, end)
	}
	var caps map[string]bool
	if c != nil {
		caps = b.checkConflist(c)
	}
	rt := b.runtimeConfig(path, l, caps)
	args := b.cniArgs(path, l)
	if len(b.errs) > n || c == nil {
		return
	}
	cfg, _ := json.Marshal(c.value)
	name, _ := c.value["name"].(string)
	plugins := b.pluginRefs(c)
	subnets := ipamSubnets(c)
	for _, end := range ends {
		b.cniEnds[end.Node+":"+end.Name] = cniEnd{path: path, subnets: subnets}
		b.plan.CNI = append(b.plan.CNI, Attachment{
			ID:            "cni:" + name + ":" + end.Node + ":" + end.Name,
			Network:       name,
			Host:          l.Host,
			HostNamespace: Namespace(b.t.Name, l.Host),
			Node:          end.Node,
			Namespace:     end.Namespace,
			Interface:     end.Name,
			ContainerID:   b.t.Name + "." + end.Node,
			Config:        cfg,
			RuntimeConfig: rt,
			Args:          args,
			VersionPos:    c.at("cniVersion"),
			Plugins:       plugins,
		})
	}
}

// loadConflist decodes the list from the file or the inline config.
func (b *builder) loadConflist(path string, l *LinkSpec) *conflist {
	switch {
	case l.Conflist != "" && l.Config != nil:
		b.errorf(path+".config", "set conflist (a file) or config (inline), not both")
		return nil
	case l.Config != nil:
		m, ok := l.Config.Value.(map[string]any)
		if !ok {
			b.errorf(path+".config", "expected a mapping: a CNI network configuration list")
			return nil
		}
		c := &conflist{value: m, path: path + ".config"}
		c.at = func(sub string) Pos { return b.at(c.field(sub)) }
		return c
	case l.Conflist != "":
		data, ok := b.t.files[l.Conflist]
		if err := b.t.fileErrs[l.Conflist]; err != nil {
			b.errorf(path+".conflist", "read %s: %v", b.t.filePath(l.Conflist), err)
			return nil
		}
		if !ok {
			b.errorf(path+".conflist", "file %s was not read (is it beside the topology?)", b.t.filePath(l.Conflist))
			return nil
		}
		doc, err := parseJSONDoc(b.t.filePath(l.Conflist), data)
		if err != nil {
			b.errs = append(b.errs, err)
			return nil
		}
		m, ok := doc.value.(map[string]any)
		if !ok {
			b.errs = append(b.errs, &Error{Pos: doc.posOf(""), Msg: "expected a JSON object: a CNI network configuration list"})
			return nil
		}
		return &conflist{value: m, at: doc.posOf}
	}
	b.errorf(path, "a cni link needs conflist (a file beside the topology) or config (the list inline)")
	return nil
}

// checkConflist checks what libcni would refuse only when a plugin runs,
// or not at all, and returns the capabilities the plugins declare.
func (b *builder) checkConflist(c *conflist) map[string]bool {
	v := c.value
	if name, ok := v["name"].(string); !ok || !cniNetworkName.MatchString(name) {
		b.cniErrorf(c, "name", "a network configuration list needs a name of letters, digits, '_', '.' and '-', starting with a letter or digit")
	}
	if ver, ok := v["cniVersion"].(string); !ok || ver == "" {
		b.cniErrorf(c, "cniVersion", "a network configuration list needs a cniVersion, such as \"1.0.0\"")
	}
	list, _ := v["plugins"].([]any)
	if len(list) == 0 {
		hint := ""
		if _, single := v["type"]; single {
			hint = ": this is one plugin's configuration; put it in a list, {\"cniVersion\": ..., \"name\": ..., \"plugins\": [ {...} ]}"
		}
		b.cniErrorf(c, "plugins", "a network configuration list needs at least one plugin in plugins%s", hint)
		return nil
	}
	caps := map[string]bool{}
	for i, p := range list {
		pp := fmt.Sprintf("plugins[%d]", i)
		m, ok := p.(map[string]any)
		if !ok {
			b.cniErrorf(c, pp, "expected an object: a plugin's configuration")
			continue
		}
		typ, ok := m["type"].(string)
		if !ok || !pluginType.MatchString(typ) {
			b.cniErrorf(c, pp+".type", "each plugin needs a type: the name of its binary in the plugin path")
			continue
		}
		if typ == "firewall" {
			if _, ok := m["backend"]; !ok {
				// The firewall plugin prefers firewalld when one answers on
				// the system D-Bus, which is not per namespace: its rules
				// would land in the real host's firewall.
				b.cniErrorf(c, pp, "the firewall plugin needs \"backend\": \"iptables\" in a lab: without it, it uses a host's firewalld (over D-Bus, which no namespace confines)")
			}
		}
		if ipam, ok := m["ipam"].(map[string]any); ok {
			if _, ok := ipam["dataDir"]; ok {
				b.cniErrorf(c, pp+".ipam.dataDir", "labctl keeps IPAM state under the lab's state directory, so that down removes it; drop dataDir")
			}
			if t, ok := ipam["type"].(string); !ok || !pluginType.MatchString(t) {
				b.cniErrorf(c, pp+".ipam.type", "ipam needs a type: the IPAM plugin's binary, such as host-local")
			}
		}
		if cm, ok := m["capabilities"].(map[string]any); ok {
			for k, on := range cm {
				if on == true {
					caps[k] = true
				}
			}
		}
	}
	return caps
}

// pluginRefs lists the plugins the list runs, with their IPAM plugins.
func (b *builder) pluginRefs(c *conflist) []PluginRef {
	var out []PluginRef
	list, _ := c.value["plugins"].([]any)
	for i, p := range list {
		m, _ := p.(map[string]any)
		pp := fmt.Sprintf("plugins[%d]", i)
		typ, _ := m["type"].(string)
		out = append(out, PluginRef{Type: typ, Field: c.field(pp + ".type"), Pos: c.at(pp + ".type")})
		if ipam, ok := m["ipam"].(map[string]any); ok {
			t, _ := ipam["type"].(string)
			out = append(out, PluginRef{Type: t, Field: c.field(pp + ".ipam.type"), Pos: c.at(pp + ".ipam.type")})
		}
	}
	return out
}

// runtimeConfig checks runtime-config against the capabilities the
// plugins declare: libcni passes a key only to plugins that declare it, and
// silently drops the rest.
func (b *builder) runtimeConfig(path string, l *LinkSpec, caps map[string]bool) json.RawMessage {
	if l.RuntimeConfig == nil {
		return nil
	}
	m, ok := l.RuntimeConfig.Value.(map[string]any)
	if !ok {
		b.errorf(path+".runtime-config", "expected a mapping of capability names to their arguments")
		return nil
	}
	if caps != nil {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !caps[k] {
				b.errorf(joinPath(path+".runtime-config", k), "no plugin of the list declares the capability %q (\"capabilities\": {%q: true}), so libcni would pass it to none", k, k)
			}
		}
	}
	out, _ := json.Marshal(m)
	return out
}

func (b *builder) cniArgs(path string, l *LinkSpec) [][2]string {
	var out [][2]string
	for _, e := range l.Args {
		if strings.ContainsAny(e.Key, "=;") || strings.ContainsAny(string(e.Value), ";") {
			b.errorf(joinPath(path+".args", e.Key), "CNI_ARGS keys and values cannot hold '=' or ';'")
			continue
		}
		out = append(out, [2]string{e.Key, string(e.Value)})
	}
	return out
}

// ipamSubnets returns the subnets the list's IPAM plugins assign from:
// host-local's ranges (and its older single subnet) and static's addresses.
func ipamSubnets(c *conflist) []ipamSubnet {
	var out []ipamSubnet
	add := func(v any, sub string) {
		if str, ok := v.(string); ok {
			if p, err := netip.ParsePrefix(str); err == nil {
				out = append(out, ipamSubnet{prefix: p.Masked(), field: c.field(sub), pos: c.at(sub)})
			}
		}
	}
	list, _ := c.value["plugins"].([]any)
	for i, p := range list {
		m, _ := p.(map[string]any)
		ipam, _ := m["ipam"].(map[string]any)
		if ipam == nil {
			continue
		}
		ip := fmt.Sprintf("plugins[%d].ipam", i)
		add(ipam["subnet"], ip+".subnet")
		sets, _ := ipam["ranges"].([]any)
		for si, set := range sets {
			rs, _ := set.([]any)
			for ri, r := range rs {
				rm, _ := r.(map[string]any)
				add(rm["subnet"], fmt.Sprintf("%s.ranges[%d][%d].subnet", ip, si, ri))
			}
		}
		addrs, _ := ipam["addresses"].([]any)
		for ai, a := range addrs {
			am, _ := a.(map[string]any)
			add(am["address"], fmt.Sprintf("%s.addresses[%d].address", ip, ai))
		}
	}
	return out
}

// cniOverlaps refuses IPAM subnets that overlap the lab's pool or an
// address the topology declares: the plugins would hand out addresses that
// labctl also routes elsewhere.
func (b *builder) cniOverlaps() {
	pool, err := netip.ParsePrefix(b.plan.Pool)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	keys := make([]string, 0, len(b.ifaces))
	for k, ref := range b.ifaces {
		if ref.link >= 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, e := range b.cniEnds {
		for _, s := range e.subnets {
			if seen[s.field] {
				continue // a list attaching several endpoints
			}
			seen[s.field] = true
			if s.prefix.Overlaps(pool) {
				b.errs = append(b.errs, &Error{Pos: s.pos, Field: s.field, Msg: fmt.Sprintf(
					"the IPAM subnet %s overlaps the lab's address pool %s; pick a subnet outside it (or set pool)", s.prefix, pool)})
				continue
			}
			for _, key := range keys {
				ref := b.ifaces[key]
				for _, a := range b.iface(ref).Addresses {
					if s.prefix.Overlaps(a.Masked()) {
						b.errs = append(b.errs, &Error{Pos: s.pos, Field: s.field, Msg: fmt.Sprintf(
							"the IPAM subnet %s overlaps %s of %s (%s)", s.prefix, a, key, ref.path)})
					}
				}
			}
		}
	}
}
