package all

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestClaimsAreDocumented: every claim an experiment answers, and every
// claim number cited anywhere in the repository, has its section in
// docs/claims.md.
func TestClaimsAreDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "claims.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (C[0-9]+):`).FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	for _, s := range Registry().Specs() {
		for _, c := range s.GetClaims() {
			for _, id := range strings.Split(c, ",") {
				if id = strings.TrimSpace(id); !documented[id] {
					t.Errorf("experiment %s answers %s, which docs/claims.md does not document", s.GetName(), id)
				}
			}
		}
	}
	cite := regexp.MustCompile(`\bC([0-9]{1,2})\b`)
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if ext := filepath.Ext(path); ext != ".go" && ext != ".md" && ext != ".proto" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range cite.FindAllString(string(b), -1) {
			if !documented[m] {
				t.Errorf("%s cites %s, which docs/claims.md does not document", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
