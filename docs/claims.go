// Package docs holds labctl's documentation pages; the claims page is
// embedded so that reports quote each claim as the repository states it.
package docs

import (
	_ "embed"
	"regexp"
	"strings"
)

//go:embed claims.md
var claimsPage string

// Claim is one claim of docs/claims.md.
type Claim struct {
	ID, Title string
	// Text, Source and Evidence are the section's paragraphs of those
	// names, Markdown marks removed.
	Text, Source, Evidence string
}

var section = regexp.MustCompile(`(?m)^## (C[0-9]+): (.*)$`)

// Claims returns the claims documented in docs/claims.md, by id.
func Claims() map[string]Claim {
	out := map[string]Claim{}
	idx := section.FindAllStringSubmatchIndex(claimsPage, -1)
	for i, m := range idx {
		end := len(claimsPage)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		c := Claim{ID: claimsPage[m[2]:m[3]], Title: claimsPage[m[4]:m[5]]}
		body := claimsPage[m[1]:end]
		if j := strings.Index(body, "\n## "); j >= 0 {
			body = body[:j]
		}
		for _, item := range strings.Split(body, "\n- ") {
			item = strings.Join(strings.Fields(item), " ")
			for name, dst := range map[string]*string{"**Claim.** ": &c.Text, "**Source.** ": &c.Source, "**Evidence.** ": &c.Evidence} {
				if rest, ok := strings.CutPrefix(item, name); ok {
					*dst = strings.ReplaceAll(rest, "`", "")
					*dst = strings.ReplaceAll(*dst, "**", "")
				}
			}
		}
		out[c.ID] = c
	}
	return out
}
