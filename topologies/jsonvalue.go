package topologies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// JSON is a value written in YAML that labctl hands on as JSON: a CNI
// network configuration written inline (config:) and a link's runtime
// config. Decoding records where each of its fields is, so that a check
// of, say, plugins[1].type points at that line of the topology.
type JSON struct {
	Value any
}

func (j *JSON) decodeYAML(d *decoder, n *yaml.Node, path string) {
	j.Value = d.anyValue(n, path, 0)
}

// anyValue converts a YAML node into the Go value encoding/json would
// decode from the same document, recording positions as it goes.
func (d *decoder) anyValue(n *yaml.Node, path string, depth int) any {
	n, ok := d.enter(n, path, depth)
	if !ok {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		d.mapping(n, path, func(key string, _, v *yaml.Node, keyPath string) {
			m[key] = d.anyValue(v, keyPath, depth+1)
		})
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, item := range n.Content {
			s[i] = d.anyValue(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		return s
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil
		case "!!bool":
			var b bool
			_ = n.Decode(&b)
			return b
		case "!!int", "!!float":
			// json.Number keeps 100000000 an integer when marshalled.
			var f float64
			if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				d.errorf(n, path, "expected a number JSON can hold, got %q", n.Value)
				return nil
			}
			return json.Number(strconv.FormatFloat(f, 'f', -1, 64))
		}
		return n.Value
	}
	d.errorf(n, path, "unexpected YAML node")
	return nil
}

// jsonDoc is a JSON document with the place of each of its values, so that
// checks made on the decoded value point into the file.
type jsonDoc struct {
	file  string
	data  []byte
	value any
	at    map[string]int // field path (as joinPath makes) -> byte offset of its value
}

// parseJSONDoc decodes data strictly (one value, numbers kept exact) and
// indexes the offset of every value. A syntax error names its line and
// column.
func parseJSONDoc(file string, data []byte) (*jsonDoc, *Error) {
	doc := &jsonDoc{file: file, data: data, at: map[string]int{}}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := doc.walk(dec, "")
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = fmt.Errorf("invalid character after the top-level value")
			if terr != nil {
				err = terr
			}
		}
	}
	if err != nil {
		off := int(dec.InputOffset())
		var se *json.SyntaxError
		if errors.As(err, &se) {
			// A Decoder's offset counts the bytes read before the one it
			// refuses, white space included.
			off = int(se.Offset)
			for off < len(data) && strings.ContainsRune(" \t\r\n", rune(data[off])) {
				off++
			}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			off = len(data)
			err = errors.New("unexpected end of JSON input")
		}
		return nil, &Error{Pos: doc.pos(off), Msg: "invalid JSON: " + err.Error()}
	}
	doc.value = v
	return doc, nil
}

// walk reads one value from dec; path is where it is.
func (doc *jsonDoc) walk(dec *json.Decoder, path string) (any, error) {
	doc.at[path] = doc.skipSpace(int(dec.InputOffset()))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := kt.(string)
			kp := joinPath(path, key)
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("duplicate key %q", key)
			}
			v, err := doc.walk(dec, kp)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		_, err := dec.Token()
		return m, err
	case json.Delim('['):
		var s []any
		for i := 0; dec.More(); i++ {
			v, err := doc.walk(dec, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		_, err := dec.Token()
		return s, err
	}
	return tok, nil
}

// skipSpace returns the offset of the first byte at or after off that is
// not white space or a separator: where the next value starts.
func (doc *jsonDoc) skipSpace(off int) int {
	for off < len(doc.data) {
		switch doc.data[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
		default:
			return off
		}
	}
	return off
}

// pos turns a byte offset into a 1-based line and column.
func (doc *jsonDoc) pos(off int) Pos {
	off = min(max(off, 0), len(doc.data))
	line := 1 + bytes.Count(doc.data[:off], []byte("\n"))
	col := off - (bytes.LastIndexByte(doc.data[:off], '\n') + 1) + 1
	return Pos{File: doc.file, Line: line, Column: col}
}

// posOf returns where the value at path is, or where its closest written
// parent is.
func (doc *jsonDoc) posOf(path string) Pos {
	for p := path; ; p = parentPath(p) {
		if off, ok := doc.at[p]; ok {
			return doc.pos(off)
		}
		if p == "" {
			return Pos{File: doc.file}
		}
	}
}

// parentPath drops the last element of a field path.
func parentPath(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		switch p[i] {
		case '.':
			return p[:i]
		case '[':
			return p[:i]
		}
	}
	return ""
}
