package main

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/topologies/examples"
)

// readTopology reads a topology from a file or, when no such file exists,
// from the examples embedded in the binary. It returns the name errors
// should use for it.
func readTopology(arg string) (source string, data []byte, err error) {
	if _, err := os.Stat(arg); err == nil || !errors.Is(err, fs.ErrNotExist) {
		data, err := os.ReadFile(arg)
		return arg, data, err
	}
	source, data, err = examples.Read(arg)
	if err != nil {
		return "", nil, usagef("no file %q and no embedded example of that name (examples: %s)", arg, strings.Join(examples.Names(), ", "))
	}
	return source, data, nil
}

// loadPlan reads and plans a topology.
func loadPlan(arg string) (*topologies.Plan, error) {
	source, data, err := readTopology(arg)
	if err != nil {
		return nil, err
	}
	t, err := topologies.Decode(source, data)
	if err != nil {
		return nil, err
	}
	return t.Plan()
}
