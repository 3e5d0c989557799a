// Package examples embeds the example topologies in the labctl binary, so
// that `labctl up quickstart` works on a machine that has only the binary.
package examples

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Names lists the embedded examples, without the .yaml suffix.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Read returns the text of the example called name and the path it is
// reported under in errors.
func Read(name string) (path string, data []byte, err error) {
	path = "topologies/examples/" + name + ".yaml"
	data, err = files.ReadFile(name + ".yaml")
	return path, data, err
}
