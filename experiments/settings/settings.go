// Package settings changes kernel settings for an experiment and puts them
// back. Every change is recorded in a file before it is made, so that when a
// run is cancelled or fails the deferred Restore undoes it, and when the
// process dies (SIGKILL, a crash) the record is still there for the next
// agent start or for labctl down to undo.
//
// Two kinds of change cover what experiments touch: writing a file (a
// sysctl under /proc/sys, a device attribute under /sys/class/net) with its
// old content saved, and running a command with the command that undoes it
// (ethtool -K, an nft table, attaching XDP).
package settings

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labctl/labctl/internal/sysctl"
)

// Scope runs a function in the host's network namespace. An agent lives in
// its node's namespace, but some settings exist only in the host's (the
// global net.core sysctls such as busy_read); those are written, and
// restored, through Scope. A nil Scope runs functions where the caller is.
type Scope func(fn func() error) error

func (s Scope) do(fn func() error) error {
	if s == nil {
		return fn()
	}
	return s(fn)
}

// Record is one change and how to undo it.
type Record struct {
	// Host: the file belongs to the host's namespace (see Scope).
	Host bool `json:"host,omitempty"`
	// File and Old: the file written and its content before.
	File string `json:"file,omitempty"`
	Old  string `json:"old,omitempty"`
	// Undo: the command that undoes a command's change.
	Undo []string `json:"undo,omitempty"`
}

// Journal records changes in a file and undoes them.
type Journal struct {
	mu      sync.Mutex
	host    Scope
	path    string
	f       *os.File
	records []Record
}

// Open starts a journal at path (its directory must exist). A journal
// that exists already holds changes of a process that died: restore it
// first with RestoreFile.
func Open(path string, host Scope) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("settings journal: %w", err)
	}
	return &Journal{path: path, f: f, host: host}, nil
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

func (j *Journal) append(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// One write per record: a process killed afterwards loses nothing,
	// since the data is in the page cache.
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("settings journal %s: %w", j.path, err)
	}
	j.records = append(j.records, r)
	return nil
}

// Sysctl sets a sysctl (net.* keys follow the network namespace of the
// calling thread) and records its old value.
func (j *Journal) Sysctl(key, value string) error {
	p, err := sysctl.Path(key)
	if err == nil {
		err = j.WriteFile(p, value)
	}
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	return nil
}

// HostSysctl sets a sysctl of the host's network namespace, the only one
// where the global net.core settings (busy_read, busy_poll,
// netdev_max_backlog, ...) exist, and records its old value.
func (j *Journal) HostSysctl(key, value string) error {
	p, err := sysctl.Path(key)
	if err == nil {
		err = j.write(true, p, value)
	}
	if err != nil {
		return fmt.Errorf("host sysctl %s: %w", key, err)
	}
	return nil
}

// ReadHostSysctl reads a sysctl of the host's namespace.
func (j *Journal) ReadHostSysctl(key string) (v string, err error) {
	err = j.host.do(func() (err error) {
		v, err = sysctl.Read(key)
		return err
	})
	return v, err
}

// WriteFile writes value to a settings file (sysfs, procfs) after
// recording its current content. Writing the value it already has records
// nothing.
func (j *Journal) WriteFile(path, value string) error {
	return j.write(false, path, value)
}

func (j *Journal) write(host bool, path, value string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	scope := Scope(nil)
	if host {
		scope = j.host
	}
	return scope.do(func() error {
		old, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cur := strings.TrimSpace(string(old))
		if cur == strings.TrimSpace(value) {
			return nil
		}
		if err := j.append(Record{Host: host, File: path, Old: cur}); err != nil {
			return err
		}
		return os.WriteFile(path, []byte(value), 0)
	})
}

// Run runs a command that changes something, after recording the command
// that undoes it.
func (j *Journal) Run(ctx context.Context, undo []string, argv ...string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(Record{Undo: undo}); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Restore undoes every change, newest first, and removes the journal. It
// tries every record even when one fails, and reports all failures.
func (j *Journal) Restore() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := undo(j.records, j.host)
	j.records = nil
	j.f.Close()
	if rerr := os.Remove(j.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// undoTimeout bounds each undo command (a restore must not hang a down).
const undoTimeout = 10 * time.Second

func undo(records []Record, host Scope) error {
	var errs []error
	for i := len(records) - 1; i >= 0; i-- {
		r := records[i]
		switch {
		case r.File != "":
			scope := Scope(nil)
			if r.Host {
				scope = host
			}
			err := scope.do(func() error { return os.WriteFile(r.File, []byte(r.Old), 0) })
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("restore %s to %q: %w", r.File, r.Old, err))
			}
		case len(r.Undo) > 0:
			ctx, cancel := context.WithTimeout(context.Background(), undoTimeout)
			out, err := exec.CommandContext(ctx, r.Undo[0], r.Undo[1:]...).CombinedOutput()
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("undo %s: %w: %s", strings.Join(r.Undo, " "), err, strings.TrimSpace(string(out))))
			}
		}
	}
	return errors.Join(errs...)
}

// RestoreFile undoes the changes recorded in a journal left by a process
// that died, and removes it; host runs what belongs to the host's
// namespace, and keep, when not nil, chooses the records to undo (the rest
// are dropped). A journal whose last line was cut short by the kill loses only
// that line (its change was never made).
func RestoreFile(path string, host Scope, keep func(Record) bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var records []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && (keep == nil || keep(r)) {
			records = append(records, r)
		}
	}
	f.Close()
	err = undo(records, host)
	if rerr := os.Remove(path); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// RestoreAll restores every leftover journal matching pattern (a glob),
// returning what it restored.
func RestoreAll(pattern string, host Scope, keep func(Record) bool) ([]string, error) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range paths {
		if err := RestoreFile(p, host, keep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return paths, errors.Join(errs...)
}
