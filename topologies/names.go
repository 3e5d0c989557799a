package topologies

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
)

// labName is the shape of lab and node names: they become parts of
// namespace names, socket paths and span attributes, so keep them plain.
var labName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// MaxNameLen bounds lab and node names so that the agent's Unix socket path
// /run/labctl/<lab>/<node>.sock stays far below the 108 bytes of sun_path.
const MaxNameLen = 32

// CheckName reports whether s can name a lab or a node.
func CheckName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("a name is required")
	case len(s) > MaxNameLen:
		return fmt.Errorf("name %q is %d characters; the limit is %d", s, len(s), MaxNameLen)
	case !labName.MatchString(s):
		return fmt.Errorf("name %q must be lower-case letters, digits and '-', starting and ending with a letter or digit", s)
	}
	return nil
}

// MaxIfnameLen is IFNAMSIZ-1: the kernel stores interface names in 16 bytes
// with the terminating NUL.
const MaxIfnameLen = 15

// CheckIfname applies the kernel's rules for interface names
// (net/core/dev.c dev_valid_name) and refuses to truncate: a name that is
// too long is an error, not a silently different interface.
func CheckIfname(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("an interface name is required")
	case len(s) > MaxIfnameLen:
		return fmt.Errorf("interface name %q is %d characters; the kernel's limit is %d", s, len(s), MaxIfnameLen)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed by the kernel", s)
	case strings.ContainsAny(s, "/:% \t\n\r\v\f"):
		return fmt.Errorf("interface name %q contains a character the kernel refuses ('/', ':', whitespace) or a '%%' template", s)
	case s == "lo":
		return fmt.Errorf("lo is the loopback device every node already has")
	}
	return nil
}

// fabricNames gives the fabric ends of bridge wires short, stable names: a
// hash of the wire's ID, so that adding a link does not rename (and so
// recreate) the others. Collisions are resolved in plan order.
type fabricNames map[string]bool

func (f fabricNames) name(key string) string {
	for i := 0; ; i++ {
		h := fnv.New32a()
		fmt.Fprintf(h, "%s#%d", key, i)
		name := fmt.Sprintf("lc%08x", h.Sum32())
		if !f[name] {
			f[name] = true
			return name
		}
	}
}
