package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/topologies/examples"
)

// topologyFile is a topology as read from a file or the embedded examples,
// decoded, with the files it refers to read from beside it.
type topologyFile struct {
	source string // the name errors use for it
	data   []byte
	top    *topologies.Topology // nil when the text does not decode
	err    error                // why it does not
}

// readTopology reads a topology from a file or, when no such file exists,
// from the examples embedded in the binary, and the files it refers to
// (conflists) from beside it. A file that cannot be read is reported by
// Plan at the field that names it.
func readTopology(arg string) (*topologyFile, error) {
	var dir fs.FS
	tf := &topologyFile{}
	if _, err := os.Stat(arg); err == nil || !errors.Is(err, fs.ErrNotExist) {
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, err
		}
		tf.source, tf.data, dir = arg, data, os.DirFS(filepath.Dir(arg))
	} else {
		source, data, err := examples.Read(arg)
		if err != nil {
			return nil, usagef("no file %q and no embedded example of that name (examples: %s)", arg, strings.Join(examples.Names(), ", "))
		}
		tf.source, tf.data, dir = source, data, examples.Files
	}
	tf.top, tf.err = topologies.Decode(tf.source, tf.data)
	if tf.top != nil {
		tf.top.ReadFiles(dir)
	}
	return tf, nil
}

// plan plans the topology.
func (tf *topologyFile) plan() (*topologies.Plan, error) {
	if tf.err != nil {
		return nil, tf.err
	}
	return tf.top.Plan()
}

// files are the files the topology refers to that could be read, for a
// lab service to plan it with.
func (tf *topologyFile) files() map[string][]byte {
	if tf.top == nil {
		return nil
	}
	out := map[string][]byte{}
	for _, name := range tf.top.Files() {
		if data := tf.top.File(name); data != nil {
			out[name] = data
		}
	}
	return out
}

// loadPlan reads and plans a topology.
func loadPlan(arg string) (*topologies.Plan, error) {
	tf, err := readTopology(arg)
	if err != nil {
		return nil, err
	}
	return tf.plan()
}
