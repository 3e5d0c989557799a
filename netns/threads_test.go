package netns

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/privtest"
)

// threadsIn lists the threads of this process whose network namespace is
// the one whose inode is ino.
func threadsIn(t *testing.T, ino uint64) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range tasks {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Ino == ino {
			out = append(out, strings.Split(p, "/")[4])
		}
	}
	return out
}

// TestDoLeaksNoThread: however a function run in a namespace ends (an
// error, a panic, runtime.Goexit as t.Fatal does), no thread of the test binary is left in that
// namespace, and the caller's goroutine never left its own.
func TestDoLeaksNoThread(t *testing.T) {
	privtest.Root(t)
	ns := "lct-" + uniqueLab(t)
	helperNS(t, ns)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(RunDir, ns), &st); err != nil {
		t.Fatal(err)
	}
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	check := func(how string) {
		t.Helper()
		// Goroutines scheduled after the failure run on whatever threads
		// the runtime has; make it use several.
		done := make(chan string, 64)
		for range 64 {
			go func() {
				l, _ := os.Readlink("/proc/thread-self/ns/net")
				done <- l
			}()
		}
		for range 64 {
			if l := <-done; l != self {
				t.Errorf("%s: a goroutine ran in %s, not the test's namespace %s", how, l, self)
			}
		}
		runtime.GC() // lets the runtime reap threads whose locked goroutine ended
		if left := threadsIn(t, st.Ino); len(left) > 0 {
			t.Errorf("%s: threads %v are still in %s", how, left, ns)
		}
		if l, _ := os.Readlink("/proc/thread-self/ns/net"); l != self {
			t.Errorf("%s: the test's own goroutine is in %s", how, l)
		}
	}

	if err := Do(ns, func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("error: %v", err)
	}
	check("an error")

	func() {
		defer func() {
			if r := recover(); r != boom {
				t.Errorf("the panic came back as %v", r)
			}
		}()
		Do(ns, func() error { panic(boom) })
	}()
	check("a panic")

	if err := Do(ns, func() error { runtime.Goexit(); return nil }); err == nil || !strings.Contains(err.Error(), "Goexit") {
		t.Errorf("Goexit: %v", err)
	}
	check("runtime.Goexit")

	// The same from a goroutine that is not the test's, as when a role's
	// goroutine fails inside a switch.
	ran := make(chan error, 1)
	go func() {
		ran <- Do(ns, func() error {
			runtime.Goexit()
			return nil
		})
	}()
	if err := <-ran; err == nil {
		t.Error("a function that called Goexit on a goroutine of its own returned no error")
	}
	check("Goexit from another goroutine")
}
