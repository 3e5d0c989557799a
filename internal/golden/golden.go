// Package golden compares a test's output with a file under testdata/,
// with one -update flag for every package that uses it:
//
//	go test ./topologies -run TestPlanGolden -update
//
// rewrites the files instead of comparing. The file is the whole expected
// output, so a change shows as a diff in review.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ instead of comparing with them")

// Updating reports whether -update was given, for tests that write
// several files or files of their own.
func Updating() bool { return *update }

// Check compares got with the file at path (relative to the package, as
// testdata/x.golden), or writes it with -update.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run with -update to accept it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
