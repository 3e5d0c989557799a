package netns

import (
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// CheckHost checks, before anything is touched, that the host can take
// plan: every host interface a host-nic link names exists in the host and
// is not held by another lab, and every namespace name the plan uses is
// free or already this lab's. Problems with a link point at its place in
// the topology file (topologies.Error with Link.Pos), so the CLI shows
// file:line:col; all problems are reported at once as a
// topologies.ErrorList.
func CheckHost(plan *topologies.Plan) error {
	c := newNSCache()
	defer c.close()
	return checkHost(c, plan, objects(plan))
}

// checkHost checks the objects objs of plan.
func checkHost(c *nsCache, plan *topologies.Plan, objs []Object) error {
	var errs topologies.ErrorList
	var held map[string]heldIface // host interface name -> where it is; read on first need
	var root *netlink.Handle
	defer func() {
		if root != nil {
			root.Close()
		}
	}()
	for _, o := range objs {
		switch o.Kind {
		case KindNode, KindFabric:
			if msg := checkSpace(c, plan.Lab, o); msg != "" {
				field := "nodes." + o.Name
				if o.Kind == KindFabric {
					field = ""
				}
				errs = append(errs, &topologies.Error{Field: field, Msg: msg})
			}
		case KindLink:
			l := o.Link
			if l.Kind != topologies.KindMacvlan && l.Kind != topologies.KindMove {
				continue
			}
			if root == nil {
				h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
				if err != nil {
					return fmt.Errorf("host namespace: netlink: %w", err)
				}
				root = h
			}
			msg, err := checkHostIface(root, plan.Lab, l, func() (map[string]heldIface, error) {
				if held == nil {
					h, err := findHeld(c)
					if err != nil {
						return nil, err
					}
					held = h
				}
				return held, nil
			})
			if err != nil {
				return err
			}
			if msg != "" {
				errs = append(errs, &topologies.Error{Pos: l.Pos, Field: "interface", Msg: fmt.Sprintf("link %s: %s", l.ID, msg)})
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// checkSpace returns what is wrong with the name of namespace o, or "".
func checkSpace(c *nsCache, lab string, o Object) string {
	p, err := nsPath(o.Namespace)
	if err != nil {
		return err.Error()
	}
	if _, err := os.Lstat(p); os.IsNotExist(err) {
		return ""
	}
	want := spaceMarker(lab, o)
	// A file left by an interrupted create counts as what it holds.
	alias, ok := leftoverMarker(o.Namespace)
	if ok && unfinished(alias, want) {
		return ""
	}
	if !ok {
		if !Exists(o.Namespace) {
			return fmt.Sprintf("namespace %s: %s exists and is not a network namespace", o.Namespace, p)
		}
		ent, err := c.get(o.Namespace)
		if err != nil {
			return err.Error()
		}
		if alias, err = nsMarkerOf(ent); err != nil {
			return err.Error()
		}
	}
	switch otherLab, node, ok := parseNSMarker(alias); {
	case alias == want:
		return ""
	case ok:
		return fmt.Sprintf("namespace %s exists and belongs to lab %s (%s)", o.Namespace, otherLab, node)
	default:
		return fmt.Sprintf("namespace %s exists and is not labctl's (lo alias %q)", o.Namespace, alias)
	}
}

// heldIface is a host interface that some lab moved into one of its nodes.
type heldIface struct{ lab, namespace string }

// findHeld looks through every labctl namespace for moved host interfaces.
func findHeld(c *nsCache) (map[string]heldIface, error) {
	entries, err := os.ReadDir(RunDir)
	if os.IsNotExist(err) {
		return map[string]heldIface{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("namespaces: %w", err)
	}
	held := map[string]heldIface{}
	for _, de := range entries {
		if !strings.HasPrefix(de.Name(), topologies.NamespacePrefix) || !Exists(de.Name()) {
			continue
		}
		ent, err := c.get(de.Name())
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		links, err := dump(ent.h.LinkList)
		if err != nil {
			return nil, fmt.Errorf("namespace %s: links: %w", ent.name, err)
		}
		for _, lk := range links {
			if lab, st, ok := parseHostMarker(lk.Attrs().Alias); ok {
				held[st.Name] = heldIface{lab, ent.name}
			}
		}
	}
	return held, nil
}

// checkHostIface returns what is wrong with the host interface of a
// host-nic link, or "".
func checkHostIface(root *netlink.Handle, lab string, l *topologies.Link, held func() (map[string]heldIface, error)) (string, error) {
	lk, err := root.LinkByName(l.Host)
	if err != nil && !isNotExist(err) {
		return "", fmt.Errorf("host interface %s: %w", l.Host, err)
	}
	if err == nil {
		if other, _, ok := parseHostMarker(lk.Attrs().Alias); ok && other != lab {
			return fmt.Sprintf("host interface %s is held by lab %s", l.Host, other), nil
		}
		if l.Kind == topologies.KindMove {
			st, err := readHost(root, lk)
			if err != nil {
				return "", fmt.Errorf("host interface %s: %w", l.Host, err)
			}
			if _, err := hostMarker(lab, st); err != nil {
				return fmt.Sprintf("host interface %s cannot be moved: %v", l.Host, err), nil
			}
		}
		return "", nil
	}
	h, err := held()
	if err != nil {
		return "", err
	}
	w, ok := h[l.Host]
	switch {
	case !ok:
		return fmt.Sprintf("host interface %s does not exist", l.Host), nil
	case w.lab == lab && l.Kind == topologies.KindMove && w.namespace == l.Ends[0].Namespace:
		return "", nil // moved in by an earlier up of this lab
	default:
		return fmt.Sprintf("host interface %s is in namespace %s, moved there by lab %s", l.Host, w.namespace, w.lab), nil
	}
}
