package settings

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostKnob is a file standing in for a host setting, and a lease directory
// of the test's own.
func hostKnob(t *testing.T) (knob string, opt func(holder string) Options) {
	t.Helper()
	dir := t.TempDir()
	knob = filepath.Join(dir, "busy_read")
	if err := os.WriteFile(knob, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	leases := filepath.Join(dir, "leases")
	return knob, func(holder string) Options { return Options{LeaseDir: leases, Holder: holder} }
}

func openJ(t *testing.T, opt Options) *Journal {
	t.Helper()
	j, err := Open(filepath.Join(t.TempDir(), "j.settings.jsonl"), opt)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestLeaseOrdersChanges: a second change of a host setting waits for the
// first to be restored, says who it waits for, then saves the true
// original; after both, the original is back.
func TestLeaseOrdersChanges(t *testing.T) {
	knob, opt := hostKnob(t)
	ctx := context.Background()
	a := openJ(t, opt("run A"))
	if err := a.writeHost(ctx, knob, "50"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var waited []string
	bo := opt("run B")
	bo.Waiting = func(msg string) { mu.Lock(); waited = append(waited, msg); mu.Unlock() }
	b := openJ(t, bo)
	done := make(chan error, 1)
	go func() { done <- b.writeHost(ctx, knob, "100") }()
	select {
	case err := <-done:
		t.Fatalf("B changed the setting while A held it: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if got := read(t, knob); got != "50" {
		t.Errorf("while A holds it: %q", got)
	}
	if err := a.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := read(t, knob); got != "100" {
		t.Errorf("after A, B's change: %q", got)
	}
	if err := b.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, knob); got != "0" {
		t.Errorf("after both: %q, want the original 0", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waited) != 1 || !strings.Contains(waited[0], "run A") || !strings.Contains(waited[0], "busy_read") {
		t.Errorf("B was told %q; want one line naming the setting and run A", waited)
	}
}

// die leaves j as a killed process would: its flocks gone, its lease
// records and its journal file in place.
func die(j *Journal) {
	for _, l := range j.leases {
		l.f.Close()
	}
	j.f.Close()
}

// TestLeaseAfterDeadHolder: a holder killed with the setting changed.
// Whoever takes the lease next puts the original back first; a restore of
// the dead journal afterwards leaves the setting alone.
func TestLeaseAfterDeadHolder(t *testing.T) {
	knob, opt := hostKnob(t)
	ctx := context.Background()
	a := openJ(t, opt("run A"))
	if err := a.writeHost(ctx, knob, "50"); err != nil {
		t.Fatal(err)
	}
	die(a)
	b := openJ(t, opt("run B"))
	if err := b.writeHost(ctx, knob, "100"); err != nil {
		t.Fatal(err)
	}
	if got := b.records[0].Old; got != "0" {
		t.Errorf("B saved %q as the original, want 0", got)
	}
	if err := b.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := RestoreFile(a.path, opt(""), nil); err != nil {
		t.Fatal(err)
	}
	if got := read(t, knob); got != "0" {
		t.Errorf("after B and A's restore: %q, want 0", got)
	}

	// Killed, and restored by the next agent before anyone else came.
	c := openJ(t, opt("run C"))
	if err := c.writeHost(ctx, knob, "25"); err != nil {
		t.Fatal(err)
	}
	die(c)
	if err := RestoreFile(c.path, opt(""), nil); err != nil {
		t.Fatal(err)
	}
	if got := read(t, knob); got != "0" {
		t.Errorf("after C's restore: %q, want 0", got)
	}
	if _, err := os.Stat(c.path); !os.IsNotExist(err) {
		t.Errorf("C's journal is left: %v", err)
	}
}

// TestLeaseWaitEndsWithContext: a change waiting for a lease gives up when
// its role is cancelled, changing nothing.
func TestLeaseWaitEndsWithContext(t *testing.T) {
	knob, opt := hostKnob(t)
	a := openJ(t, opt("run A"))
	if err := a.writeHost(context.Background(), knob, "50"); err != nil {
		t.Fatal(err)
	}
	defer a.Restore()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b := openJ(t, opt("run B"))
	if err := b.writeHost(ctx, knob, "100"); err == nil {
		t.Fatal("B changed a setting A holds")
	}
	if len(b.records) != 0 || read(t, knob) != "50" {
		t.Errorf("B recorded %v; the setting is %q", b.records, read(t, knob))
	}
	if err := b.Restore(); err != nil {
		t.Fatal(err)
	}
}

// TestSweepLeases: a change whose holder died is put back by a sweep, and
// a change whose holder is alive is left alone.
func TestSweepLeases(t *testing.T) {
	knob, opt := hostKnob(t)
	other := filepath.Join(filepath.Dir(knob), "busy_poll")
	if err := os.WriteFile(other, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dead := openJ(t, opt("run dead"))
	if err := dead.writeHost(context.Background(), knob, "50"); err != nil {
		t.Fatal(err)
	}
	die(dead)
	alive := openJ(t, opt("run alive"))
	if err := alive.writeHost(context.Background(), other, "70"); err != nil {
		t.Fatal(err)
	}
	defer alive.Restore()
	restored, err := SweepLeases(opt("").LeaseDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(restored) != 1 || !strings.Contains(restored[0], "run dead") {
		t.Errorf("restored %q", restored)
	}
	if read(t, knob) != "0" || read(t, other) != "70" {
		t.Errorf("after the sweep: %s=%q, %s=%q", knob, read(t, knob), other, read(t, other))
	}
}
