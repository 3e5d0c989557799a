package netns

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/labctl/labctl/topologies"
)

// Ownership markers. A lab's namespaces are named labctl-<lab>.<node> (the
// fabric labctl-<lab>.fabric), which no other lab can make, but labs made by
// earlier versions used labctl-<lab>-<node>, where lab "a" (node "b-n1")
// and lab "a-b" (node "n1") share a name; and a name says nothing of who
// made the namespace: the ifalias of lo in each namespace decides. Interfaces labctl creates carry the alias
// labctl:<lab>; a host interface moved into a node carries a host marker that
// also records how to give it back.
const markerPrefix = "labctl:"

// nsMarker is the ifalias of lo in a node's namespace.
func nsMarker(lab, node string) string { return markerPrefix + lab + ":" + node }

// fabricMarker is the ifalias of lo in a lab's fabric namespace.
func fabricMarker(lab string) string { return nsMarker(lab, topologies.FabricNode) }

// spaceMarker is the lo alias of namespace object o of lab: the fabric's or
// its node's.
func spaceMarker(lab string, o Object) string {
	if o.Kind == KindFabric {
		return fabricMarker(lab)
	}
	return nsMarker(lab, o.Name)
}

// ifaceMarker is the ifalias of every interface labctl creates.
func ifaceMarker(lab string) string { return markerPrefix + lab }

// parseNSMarker returns the lab and node (or "fabric") that a lo alias names.
// Node names never contain ':', so the last ':' splits lab from node.
func parseNSMarker(alias string) (lab, node string, ok bool) {
	rest, ok := strings.CutPrefix(alias, markerPrefix)
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// hostState is what a host interface looked like before labctl moved it
// into a node: everything down restores.
type hostState struct {
	Name  string         `json:"name"`
	MTU   int            `json:"mtu"`
	MAC   string         `json:"mac,omitempty"`
	Up    bool           `json:"up,omitempty"`
	Addrs []netip.Prefix `json:"addrs,omitempty"`
	Alias string         `json:"alias,omitempty"`
}

// hostSep separates the lab from the recorded state in a host marker.
const hostSep = ":host:"

// maxAlias is the longest ifalias the kernel stores (IFALIASZ is 256 with
// the terminating NUL).
const maxAlias = 255

// hostMarker is the ifalias of a moved host interface:
// labctl:<lab>:host:<state as JSON>. Keeping the state on the interface
// itself means down can restore it even when the lab's state directory
// (and so its journal) is lost.
func hostMarker(lab string, s hostState) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	m := markerPrefix + lab + hostSep + string(b)
	if len(m) > maxAlias {
		return "", fmt.Errorf("recording its state (name, MTU, MAC, up, %d addresses, alias) needs %d bytes of ifalias, the kernel keeps %d", len(s.Addrs), len(m), maxAlias)
	}
	return m, nil
}

// parseHostMarker reads a host marker back.
func parseHostMarker(alias string) (lab string, s hostState, ok bool) {
	rest, ok := strings.CutPrefix(alias, markerPrefix)
	if !ok {
		return "", s, false
	}
	lab, state, ok := strings.Cut(rest, hostSep)
	if !ok || lab == "" || !strings.HasPrefix(state, "{") {
		return "", s, false
	}
	if err := json.Unmarshal([]byte(state), &s); err != nil || s.Name == "" {
		return "", hostState{}, false
	}
	return lab, s, true
}
