package all

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestExperimentsExportOnlyWhatOthersUse: every exported top-level name of
// an experiment's package is used by another package (its tests do not
// count), so that a package's exported surface is what others rely on.
// Methods are left out: they satisfy interfaces.
func TestExperimentsExportOnlyWhatOthersUse(t *testing.T) {
	root := filepath.Join("..", "..")
	var sources []string // every Go file of the module, with its directory
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "proto" || d.Name() == "tools") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") {
			sources = append(sources, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob(filepath.Join(root, "experiments", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || filepath.Base(dir) == "all" {
			continue
		}
		pkg := filepath.Base(dir)
		names := exported(t, dir)
		var unused []string
		for _, name := range names {
			use := regexp.MustCompile(`\b` + pkg + `\.` + name + `\b`)
			found := false
			for _, src := range sources {
				if filepath.Dir(src) == dir {
					continue
				}
				b, err := os.ReadFile(src)
				if err != nil {
					t.Fatal(err)
				}
				if use.Match(b) {
					found = true
					break
				}
			}
			if !found {
				unused = append(unused, name)
			}
		}
		t.Logf("%s: %d exported, %d unused outside", pkg, len(names), len(unused))
		if len(unused) > 0 {
			t.Errorf("experiments/%s exports names no other package uses: %s", pkg, strings.Join(unused, ", "))
		}
	}
}

// exported lists the exported top-level names of the package in dir,
// tests left out.
func exported(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					names = append(names, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							names = append(names, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(names)
	return names
}
