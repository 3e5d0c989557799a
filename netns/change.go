package netns

import (
	"fmt"
	"strings"
)

// Change is what Apply or Destroy did, object by object ("node n1",
// "bridge br0", "link <id>", "fabric"), for the CLI to print.
type Change struct {
	Created   []string `json:"created,omitempty"`
	Recreated []string `json:"recreated,omitempty"`
	Removed   []string `json:"removed,omitempty"`
	// Reconfigured nodes were left in place but had their routes and
	// sysctls set again because a link of theirs was created or removed.
	Reconfigured []string `json:"reconfigured,omitempty"`
	Unchanged    []string `json:"unchanged,omitempty"`
}

// Changed reports whether anything in the kernel was changed.
func (c Change) Changed() bool {
	return len(c.Created)+len(c.Recreated)+len(c.Removed)+len(c.Reconfigured) > 0
}

// String is one line for the CLI: the counts, with the names of what
// changed ("created 2 (node n3, link l4); unchanged 7"), or "no changes".
func (c Change) String() string {
	var parts []string
	for _, g := range []struct {
		verb  string
		names []string
	}{
		{"created", c.Created},
		{"recreated", c.Recreated},
		{"removed", c.Removed},
		{"reconfigured", c.Reconfigured},
	} {
		if len(g.names) > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%s)", g.verb, len(g.names), strings.Join(g.names, ", ")))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("no changes (%d unchanged)", len(c.Unchanged))
	}
	if len(c.Unchanged) > 0 {
		parts = append(parts, fmt.Sprintf("unchanged %d", len(c.Unchanged)))
	}
	return strings.Join(parts, "; ")
}
