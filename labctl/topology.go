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
// with the files it refers to.
type topologyFile struct {
	source string // the name errors use for it
	data   []byte
	files  map[string][]byte
}

// readTopology reads a topology from a file or, when no such file exists,
// from the examples embedded in the binary, and the files it refers to
// (conflists) from beside it. Errors in reading those point at the field
// that names them.
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
	t, err := topologies.Decode(tf.source, tf.data)
	if err != nil {
		// The server reports it, with every other problem of the file.
		return tf, nil
	}
	t.ReadFiles(dir)
	tf.files = map[string][]byte{}
	for _, name := range t.Files() {
		if data := t.File(name); data != nil {
			tf.files[name] = data
		}
	}
	return tf, nil
}

// plan decodes and plans the topology.
func (tf *topologyFile) plan() (*topologies.Plan, error) {
	t, err := tf.decode()
	if err != nil {
		return nil, err
	}
	return t.Plan()
}

// decode decodes the topology and gives it its files.
func (tf *topologyFile) decode() (*topologies.Topology, error) {
	t, err := topologies.Decode(tf.source, tf.data)
	if err != nil {
		return nil, err
	}
	for name, data := range tf.files {
		t.SetFile(name, data)
	}
	return t, nil
}

// loadPlan reads and plans a topology.
func loadPlan(arg string) (*topologies.Plan, error) {
	tf, err := readTopology(arg)
	if err != nil {
		return nil, err
	}
	return tf.plan()
}
