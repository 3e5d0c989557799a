// Package sysctltest holds the key corpus that every package mapping sysctl
// keys to files tests itself against.
package sysctltest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Case is one key of the shared test corpus and what it must map to: a
// path, or an error containing Error.
type Case struct {
	Key   string `json:"key"`
	Path  string `json:"path,omitempty"`
	Error string `json:"error,omitempty"`
}

// Corpus returns the keys of testdata/keys.json, for the tests of every
// package that maps keys to files.
func Corpus(t testing.TB) []Case {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []Case
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	return cases
}
