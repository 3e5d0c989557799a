package topologies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads a topology file, decodes it strictly, validates it and resolves
// it into a Plan. Every error names file:line:column and the field.
func Load(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Decode(path, data)
	if err != nil {
		return nil, err
	}
	t.ReadFiles(os.DirFS(filepath.Dir(path)))
	return t.Plan()
}

// maxNodes bounds the work a hostile file can cause through aliases
// ("billion laughs"): a real topology of 2,000 nodes is far below it.
const maxNodes = 1 << 20

// Decode parses one YAML document into a Topology. Decoding is strict: unknown
// fields, duplicate keys, wrong types and extra documents are errors.
func Decode(file string, data []byte) (*Topology, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ErrorList{{Pos: Pos{File: file}, Msg: "empty file: a topology needs at least a name and nodes"}}
		}
		return nil, ErrorList{syntaxError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		e := &Error{Pos: Pos{File: file, Line: extra.Line, Column: extra.Column}, Msg: "only one YAML document is allowed"}
		if err != nil {
			e = syntaxError(file, err)
		}
		return nil, ErrorList{e}
	}
	d := &decoder{file: file, pos: map[string]Pos{}}
	t := &Topology{file: file}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.value(root, reflect.ValueOf(t).Elem(), "", 0)
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	t.pos = d.pos
	return t, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 parse error, which knows the line but not the
// column, into an Error at that line.
func syntaxError(file string, err error) *Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Pos: Pos{File: file, Line: line, Column: 1}, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{Pos: Pos{File: file}, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// decoder walks a yaml.Node tree into Go values by reflection, recording the
// position of every field so that later semantic checks can point at it.
type decoder struct {
	file   string
	pos    map[string]Pos
	errs   ErrorList
	visits int
}

// unmarshaler is implemented by the types whose YAML form is not a plain
// struct, list or scalar (short endpoint strings, on/off toggles, ordered maps).
type unmarshaler interface {
	decodeYAML(d *decoder, n *yaml.Node, path string)
}

func (d *decoder) at(n *yaml.Node) Pos { return Pos{File: d.file, Line: n.Line, Column: n.Column} }

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: d.at(n), Field: path, Msg: fmt.Sprintf(format, args...)})
}

// enter follows aliases to the node at path, counts it against the bounds
// on what a file may expand to, and records where it is; false when a
// bound is passed (reported once).
func (d *decoder) enter(n *yaml.Node, path string, depth int) (*yaml.Node, bool) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.visits++
	if d.visits > maxNodes || depth > 64 {
		if d.visits == maxNodes+1 || depth == 65 {
			d.errorf(n, path, "document too large or too deeply nested (aliases expanding?)")
		}
		return n, false
	}
	d.pos[path] = d.at(n)
	return n, true
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int) {
	n, ok := d.enter(n, path, depth)
	if !ok {
		return
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(unmarshaler); ok {
			if !isNull(n) {
				u.decodeYAML(d, n, path)
			}
			return
		}
	}
	if isNull(n) {
		return // an empty value keeps the zero value: `n1:` is a node with no settings
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.value(n, p.Elem(), path, depth+1)
		v.Set(p)
	case reflect.Struct:
		d.structure(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	case reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.errorf(n, path, "expected an integer, got %s", describe(n))
			return
		}
		var i int
		if err := n.Decode(&i); err != nil {
			d.errorf(n, path, "expected an integer, got %q", n.Value)
			return
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorf(n, path, "expected true or false, got %s", describe(n))
			return
		}
		var b bool
		_ = n.Decode(&b) // the tag check above guarantees a boolean
		v.SetBool(b)
	default:
		panic(fmt.Sprintf("topologies: no YAML decoding for %s", v.Type()))
	}
}

// scalar accepts a string, number or boolean written as a plain scalar and
// returns its text; fields such as sysctl values are often written unquoted.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := yamlFields(v.Type())
	d.mapping(n, path, func(key string, k, val *yaml.Node, keyPath string) {
		i, ok := fields[key]
		if !ok {
			d.errorf(k, keyPath, "unknown field %q%s", key, suggest(key, fields))
			return
		}
		d.value(val, v.Field(i), keyPath, depth+1)
	})
}

// mapping iterates the pairs of a mapping node, rejecting non-string keys,
// merge keys and duplicates, and calls f with the field path of each value.
func (d *decoder) mapping(n *yaml.Node, path string, f func(key string, k, v *yaml.Node, keyPath string)) {
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		for k.Kind == yaml.AliasNode {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.errorf(k, path, "keys must be non-empty strings, got %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.errorf(k, path, "merge keys (<<) are not supported; repeat the fields or use defaults")
			continue
		}
		keyPath := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, keyPath, "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		f(k.Value, k, val, keyPath)
	}
}

var identifier = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func joinPath(path, key string) string {
	if !identifier.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected YAML node"
}

// yamlFields maps the yaml tag of each exported field to its index.
func yamlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("yaml"); f.IsExported() && tag != "" {
			fields[tag] = i
		}
	}
	return fields
}

// suggest returns ` (did you mean "x"?)` for a near miss of a known field.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(key, name); dist < bestDist || (dist == bestDist && name < best) {
			best, bestDist = name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
