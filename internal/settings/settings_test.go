package settings

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/sysctl"
	"github.com/labctl/labctl/internal/sysctl/sysctltest"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRestoreUndoesInReverse(t *testing.T) {
	dir := t.TempDir()
	knob := filepath.Join(dir, "knob")
	if err := os.WriteFile(knob, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "marker")
	j, err := Open(filepath.Join(dir, "j.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.WriteFile(knob, "50"); err != nil {
		t.Fatal(err)
	}
	if err := j.WriteFile(knob, "100"); err != nil {
		t.Fatal(err)
	}
	if err := j.Run(context.Background(), []string{"rm", marker}, "touch", marker); err != nil {
		t.Fatal(err)
	}
	if read(t, knob) != "100" {
		t.Fatalf("knob is %q", read(t, knob))
	}
	if err := j.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, knob); got != "0" {
		t.Errorf("knob restored to %q, want the first value 0", got)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Error("the undo command did not run")
	}
	if _, err := os.Stat(j.Path()); !os.IsNotExist(err) {
		t.Error("the journal is left after Restore")
	}
}

// A process that dies leaves its journal; RestoreAll undoes it later.
func TestLeftoverJournalIsRestored(t *testing.T) {
	dir := t.TempDir()
	knob := filepath.Join(dir, "knob")
	if err := os.WriteFile(knob, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := Open(filepath.Join(dir, "n1-run-server.settings.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.WriteFile(knob, "7"); err != nil {
		t.Fatal(err)
	}
	// No Restore: the process "died". A torn last line is ignored.
	f, _ := os.OpenFile(j.Path(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"file":"/nonexist`)
	f.Close()
	restored, err := RestoreAll(filepath.Join(dir, "n1-*.settings.jsonl"), Options{}, nil)
	if err != nil || len(restored) != 1 {
		t.Fatalf("restored %v: %v", restored, err)
	}
	if got := read(t, knob); got != "1" {
		t.Errorf("knob is %q after restoring the leftover, want 1", got)
	}
}

func TestSameValueRecordsNothing(t *testing.T) {
	dir := t.TempDir()
	knob := filepath.Join(dir, "knob")
	os.WriteFile(knob, []byte("5\n"), 0o644)
	j, err := Open(filepath.Join(dir, "j"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Restore()
	if err := j.WriteFile(knob, "5"); err != nil {
		t.Fatal(err)
	}
	if len(j.records) != 0 {
		t.Errorf("recorded %v for an unchanged value", j.records)
	}
}

// TestSysctlKeys: a journal maps keys to files by the shared rule. Each
// key is "set" to the value it has, which changes nothing; a key whose
// file does not exist fails naming the file it mapped to.
func TestSysctlKeys(t *testing.T) {
	j, err := Open(filepath.Join(t.TempDir(), "j.jsonl"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Restore()
	for _, c := range sysctltest.Corpus(t) {
		if c.Error != "" {
			if err := j.Sysctl(c.Key, "1"); !errors.Is(err, sysctl.ErrKey) || !strings.Contains(err.Error(), c.Error) {
				t.Errorf("Sysctl(%q) = %v; want an ErrKey containing %q", c.Key, err, c.Error)
			}
			if err := j.HostSysctl(context.Background(), c.Key, "1"); !errors.Is(err, sysctl.ErrKey) {
				t.Errorf("HostSysctl(%q) = %v; want an ErrKey", c.Key, err)
			}
			continue
		}
		cur, err := sysctl.Read(c.Key)
		if err != nil {
			if err := j.Sysctl(c.Key, "1"); err == nil || !strings.Contains(err.Error(), c.Path) {
				t.Errorf("Sysctl(%q) = %v; want an error naming %s", c.Key, err, c.Path)
			}
			continue
		}
		if err := j.Sysctl(c.Key, cur); err != nil {
			t.Errorf("Sysctl(%q, its own value) = %v", c.Key, err)
		}
	}
	if n := len(j.records); n != 0 {
		t.Errorf("the journal recorded %d changes", n)
	}
}
