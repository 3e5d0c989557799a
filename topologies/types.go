package topologies

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Entry is one key of an ordered mapping.
type Entry[T any] struct {
	Key   string
	Value T
}

// Map is a YAML mapping that keeps the order of the file, so that plans,
// errors and graphs come out in the order the user wrote.
type Map[T any] []Entry[T]

// Get returns the value of key.
func (m Map[T]) Get(key string) (T, bool) {
	for _, e := range m {
		if e.Key == key {
			return e.Value, true
		}
	}
	var zero T
	return zero, false
}

func (m *Map[T]) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	d.mapping(n, path, func(key string, _, v *yaml.Node, keyPath string) {
		e := Entry[T]{Key: key}
		d.value(v, reflect.ValueOf(&e.Value).Elem(), keyPath, 1)
		*m = append(*m, e)
	})
}

// Scalar is a string, number or boolean written as a plain scalar, kept as
// the text of the file (sysctl values: 1, "4096 131072 6291456").
type Scalar string

func (s *Scalar) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a value, got %s", describe(n))
		return
	}
	if n.ShortTag() == "!!bool" {
		d.errorf(n, path, "expected a number or a string, got the boolean %s (sysctls take 1 or 0)", n.Value)
		return
	}
	*s = Scalar(n.Value)
}

// Toggle is an on/off setting written as true/false or, as ethtool does,
// on/off.
type Toggle bool

func (t *Toggle) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode {
		switch strings.ToLower(n.Value) {
		case "true", "on":
			*t = true
			return
		case "false", "off":
			*t = false
			return
		}
	}
	d.errorf(n, path, "expected on or off, got %s", describe(n))
}

// PortRange is a port (53) or an inclusive range (1024-65535). The zero value
// means "any port".
type PortRange struct {
	Lo, Hi uint16
}

// IsZero reports whether no port was given.
func (p PortRange) IsZero() bool { return p.Lo == 0 && p.Hi == 0 }

func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return strconv.Itoa(int(p.Lo))
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

func (p *PortRange) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a port or a range lo-hi, got %s", describe(n))
		return
	}
	if err := p.UnmarshalText([]byte(n.Value)); err != nil {
		d.errorf(n, path, "%v", err)
	}
}

// UnmarshalText reads a port (53) or a range (1024-65535).
func (p *PortRange) UnmarshalText(text []byte) error {
	s := string(text)
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	switch {
	case err1 != nil || err2 != nil:
		return fmt.Errorf("expected a port (1-65535) or a range lo-hi, got %q", s)
	case l == 0 || h == 0:
		return fmt.Errorf("port 0 is not a port; ports are 1-65535")
	case l > h:
		return fmt.Errorf("range %q runs backwards", s)
	}
	*p = PortRange{Lo: uint16(l), Hi: uint16(h)}
	return nil
}

// endpointFields has EndpointSpec's fields without its decodeYAML method, so that
// the long form decodes as a plain struct.
type endpointFields EndpointSpec

func (e *EndpointSpec) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.MappingNode {
		d.structure(n, reflect.ValueOf((*endpointFields)(e)).Elem(), path, 1)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected node:interface or a mapping with node and interface, got %s", describe(n))
		return
	}
	node, iface, ok := strings.Cut(n.Value, ":")
	if !ok || node == "" || iface == "" || strings.Contains(iface, ":") {
		d.errorf(n, path, "expected node:interface, got %q", n.Value)
		return
	}
	e.Node, e.Interface = node, iface
	d.pos[path+".node"] = d.at(n)
	// Point at the interface itself: a plain scalar starts at its column, a
	// quoted one a character later.
	col := n.Column + len(node) + 1
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		col++
	}
	d.pos[path+".interface"] = Pos{File: d.file, Line: n.Line, Column: col}
}

// String is the short form node:interface.
func (e EndpointSpec) String() string { return e.Node + ":" + e.Interface }

// MarshalText writes a port range as the file does: 53 or 1024-65535.
func (p PortRange) MarshalText() ([]byte, error) { return []byte(p.String()), nil }
