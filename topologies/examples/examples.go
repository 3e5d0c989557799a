// Package examples embeds the example topologies in the labctl binary, so
// that `labctl up quickstart` works on a machine that has only the binary.
package examples

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/labctl/labctl/topologies"
)

// Files holds the examples and the files they refer to (conflists).
//
//go:embed *.yaml *.conflist
var Files embed.FS

// Names lists the embedded examples, without the .yaml suffix.
func Names() []string {
	entries, _ := fs.ReadDir(Files, ".")
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Read returns the text of the example called name and the path it is
// reported under in errors.
func Read(name string) (path string, data []byte, err error) {
	path = "topologies/examples/" + name + ".yaml"
	data, err = Files.ReadFile(name + ".yaml")
	return path, data, err
}

// Plan decodes and plans the example called name, with the files it
// refers to.
func Plan(name string) (*topologies.Plan, error) {
	path, data, err := Read(name)
	if err != nil {
		return nil, err
	}
	t, err := topologies.Decode(path, data)
	if err != nil {
		return nil, err
	}
	t.ReadFiles(Files)
	return t.Plan()
}

// Linear is Mininet's linear,N shape with Linux bridges: N nodes h1..hN,
// each on its own bridge s1..sN, the bridges chained s1-s2-...-sN. Used to
// compare bring-up with Mininet (`mn --topo linear,N --switch lxbr`).
func Linear(lab string, n int, agents bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\ndefaults: {agent: %v}\nnodes:\n", lab, agents)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  h%d: {}\n", i)
	}
	b.WriteString("links:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {type: bridge, name: s%d, endpoints: [h%d:eth0]", i, i)
		if i > 1 {
			fmt.Fprintf(&b, ", bridges: [s%d]", i-1)
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}
