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
	"slices"
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

// Options are where a journal runs what belongs to the host, and how it
// takes the leases of host settings.
type Options struct {
	// Host runs what belongs to the host's network namespace.
	Host Scope
	// LeaseDir holds the leases of host settings; "" is DefaultLeaseDir.
	LeaseDir string
	// Holder names the changer to whoever waits for its lease ("run X,
	// lab L, node N, role R").
	Holder string
	// Waiting, when set, is told when a change waits for another's lease.
	Waiting func(msg string)
}

func (o Options) leaseDir() string {
	if o.LeaseDir == "" {
		return DefaultLeaseDir
	}
	return o.LeaseDir
}

// Journal records changes in a file and undoes them.
type Journal struct {
	mu      sync.Mutex
	opt     Options
	path    string
	f       *os.File
	records []Record
	leases  map[string]*lease // host setting file -> its lease, held until Restore
}

// Open starts a journal at path (its directory must exist). A journal
// that exists already holds changes of a process that died: restore it
// first with RestoreFile.
func Open(path string, opt Options) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("settings journal: %w", err)
	}
	return &Journal{path: path, f: f, opt: opt, leases: map[string]*lease{}}, nil
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
// netdev_max_backlog, ...) exist, and records its old value. It holds the
// setting's lease until Restore, waiting (bounded by ctx) while another
// role holds it (see DefaultLeaseDir).
func (j *Journal) HostSysctl(ctx context.Context, key, value string) error {
	p, err := sysctl.Path(key)
	if err == nil {
		err = j.writeHost(ctx, p, value)
	}
	if err != nil {
		return fmt.Errorf("host sysctl %s: %w", key, err)
	}
	return nil
}

// ReadHostSysctl reads a sysctl of the host's namespace.
func (j *Journal) ReadHostSysctl(key string) (v string, err error) {
	err = j.opt.Host.do(func() (err error) {
		v, err = sysctl.Read(key)
		return err
	})
	return v, err
}

// WriteFile writes value to a settings file of the node (sysfs, procfs)
// after recording its current content. Writing the value it already has
// records nothing.
func (j *Journal) WriteFile(path, value string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cur := strings.TrimSpace(string(old))
	if cur == strings.TrimSpace(value) {
		return nil
	}
	if err := j.append(Record{File: path, Old: cur}); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(value), 0)
}

// writeHost writes a host setting file under its lease.
func (j *Journal) writeHost(ctx context.Context, path, value string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	l := j.leases[path]
	if l == nil {
		var stale *leaseRecord
		var err error
		l, stale, err = acquireLease(ctx, j.opt.leaseDir(), path, j.opt.Waiting)
		if err != nil {
			return err
		}
		if stale != nil {
			// Its holder died with the setting changed: put the original
			// back before reading it as this change's "old".
			if err := j.opt.Host.do(func() error { return os.WriteFile(stale.File, []byte(stale.Old), 0) }); err != nil {
				_ = l.release()
				return fmt.Errorf("restore %s to %q, left by %s: %w", stale.File, stale.Old, stale.describe(), err)
			}
		}
		j.leases[path] = l
	}
	return j.opt.Host.do(func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cur := strings.TrimSpace(string(b))
		if !j.changed(path) {
			// The lease records the original before anything changes it.
			if err := l.record(leaseRecord{File: path, Old: cur, Journal: j.path, Holder: j.opt.Holder, Pid: os.Getpid(), Since: time.Now()}); err != nil {
				return fmt.Errorf("lease of %s: %w", path, err)
			}
		}
		if cur == strings.TrimSpace(value) {
			return nil
		}
		if err := j.append(Record{Host: true, File: path, Old: cur}); err != nil {
			return err
		}
		return os.WriteFile(path, []byte(value), 0)
	})
}

// changed reports whether the journal has changed the host file path.
func (j *Journal) changed(path string) bool {
	for _, r := range j.records {
		if r.Host && r.File == path {
			return true
		}
	}
	return false
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

// Restore undoes every change, newest first, releases the leases of host
// settings (once their values are back), and removes the journal. It tries
// every record even when one fails, and reports all failures.
func (j *Journal) Restore() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := undo(j.records, j.opt.Host)
	for file, l := range j.leases {
		if rerr := l.release(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("release the lease of %s: %w", file, rerr))
		}
	}
	j.leases = map[string]*lease{}
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
// that died, and removes it; opt.Host runs what belongs to the host's
// namespace, and keep, when not nil, chooses the records to undo (the rest
// are dropped). A journal whose last line was cut short by the kill loses
// only that line (its change was never made).
//
// A host setting is put back through its lease: only if the lease still
// records this journal's change (whoever took the lease since has put the
// original back already, and may have changed it again).
func RestoreFile(path string, opt Options, keep func(Record) bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var records []Record
	var hostFiles []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) != nil || (keep != nil && !keep(r)) {
			continue
		}
		if r.Host && r.File != "" {
			if !slices.Contains(hostFiles, r.File) {
				hostFiles = append(hostFiles, r.File)
			}
			continue
		}
		records = append(records, r)
	}
	f.Close()
	err = undo(records, opt.Host)
	for _, file := range hostFiles {
		if herr := restoreHost(opt, path, file); herr != nil {
			err = errors.Join(err, herr)
		}
	}
	if rerr := os.Remove(path); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// restoreHost puts host setting file back to the original that its lease
// records, if the lease records the change of journal.
func restoreHost(opt Options, journal, file string) error {
	ctx, cancel := context.WithTimeout(context.Background(), leaseWait)
	defer cancel()
	l, rec, err := acquireLease(ctx, opt.leaseDir(), file, nil)
	if err != nil {
		return err
	}
	if rec != nil && rec.Journal == journal {
		if err := opt.Host.do(func() error { return os.WriteFile(file, []byte(rec.Old), 0) }); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.f.Close() // keep the record for the next try
			return fmt.Errorf("restore %s to %q: %w", file, rec.Old, err)
		}
		return l.release()
	}
	unlockLease(l.f)
	return nil
}

// RestoreAll restores every leftover journal matching pattern (a glob),
// returning what it restored.
func RestoreAll(pattern string, opt Options, keep func(Record) bool) ([]string, error) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range paths {
		if err := RestoreFile(p, opt, keep); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	return paths, errors.Join(errs...)
}
