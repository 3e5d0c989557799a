package settings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A host setting (a global sysctl such as net.core.busy_read) is one for
// the whole machine, whichever lab or terminal changes it. Two roles that
// change it at once would measure each other's value, and would put it back
// in the wrong order: the second saves the first's value as "old" and,
// ending last, restores that. So every change of a host setting is made
// under a lease: an exclusive flock on a file per setting in LeaseDir, held
// from the first change until the role's Restore has put the value back. A
// second role waits for it (and says so), and then reads the true original.
//
// The lease file also records the original value and the journal of the
// change while it is held. A holder that dies (SIGKILL) loses the flock
// with its process but leaves that record: whoever takes the lease next
// finds it and puts the original back first, and a restore of the dead
// holder's journal (by the next agent, or labctl down) puts it back only if
// the record is still its own, so the value is restored once, in order.

// DefaultLeaseDir holds the leases of host settings. It is one directory
// for the machine, not per lab (nor per LABCTL_RUN_DIR): the settings are
// the machine's.
const DefaultLeaseDir = "/run/labctl/leases"

// leaseWait bounds how long a role waits for another's lease: a role
// holds one for one step, which lasts seconds.
const leaseWait = 2 * time.Minute

// leaseRecord is what a lease file holds while its setting is changed.
type leaseRecord struct {
	File    string    `json:"file"`
	Old     string    `json:"old"`
	Journal string    `json:"journal"`
	Holder  string    `json:"holder"`
	Pid     int       `json:"pid"`
	Since   time.Time `json:"since"`
}

func (r *leaseRecord) describe() string {
	return fmt.Sprintf("%s, pid %d, since %s", r.Holder, r.Pid, r.Since.Format(time.TimeOnly))
}

// leaseFile is the lease of setting file in dir.
func leaseFile(dir, file string) string {
	return filepath.Join(dir, strings.ReplaceAll(strings.Trim(file, "/"), "/", "_")+".lease")
}

// lease is a held lease: the locked file.
type lease struct {
	f *os.File
}

// acquireLease takes the lease of setting file, waiting (bounded by ctx
// and leaseWait) while another holds it; waiting, when not nil, is told
// once who holds it. It returns the record a dead holder left, if any.
func acquireLease(ctx context.Context, dir, file string, waiting func(string)) (*lease, *leaseRecord, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("lease of %s: %w", file, err)
	}
	f, err := os.OpenFile(leaseFile(dir, file), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("lease of %s: %w", file, err)
	}
	deadline := time.Now().Add(leaseWait)
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, nil, fmt.Errorf("lease of %s: %w", file, err)
		}
		holder := "another labctl"
		if r, _ := readLease(f); r != nil {
			holder = r.describe()
		}
		if !told && waiting != nil {
			waiting(fmt.Sprintf("waiting for %s: another run is changing it (%s)", settingName(file), holder))
			told = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, nil, fmt.Errorf("%s is being changed by %s and did not come free within %v", settingName(file), holder, leaseWait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	stale, err := readLease(f)
	if err != nil {
		unlockLease(f)
		return nil, nil, fmt.Errorf("lease of %s: %w", file, err)
	}
	return &lease{f: f}, stale, nil
}

// settingName is how a user names a setting file: a sysctl by its key.
func settingName(file string) string {
	if k, ok := strings.CutPrefix(file, "/proc/sys/"); ok {
		return strings.ReplaceAll(k, "/", ".")
	}
	return file
}

// readLease reads the record in a lease file, nil if it holds none.
func readLease(f *os.File) (*leaseRecord, error) {
	b := make([]byte, 4096)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	text := strings.TrimSpace(string(b[:n]))
	if text == "" {
		return nil, nil
	}
	var r leaseRecord
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return &r, nil
}

// record writes r into the lease.
func (l *lease) record(r leaseRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err = l.f.WriteAt(append(b, '\n'), 0)
	return err
}

// release clears the lease's record and unlocks it: the setting is back.
func (l *lease) release() error {
	err := l.f.Truncate(0)
	unlockLease(l.f)
	return err
}

func unlockLease(f *os.File) {
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	f.Close()
}

// SweepLeases puts back the host settings whose lease holder died without
// restoring them (its lease is free and still holds its record): what a
// killed process left. host runs what belongs to the host's namespace. It
// returns the settings it put back.
func SweepLeases(dir string, host Scope) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.lease"))
	if err != nil {
		return nil, err
	}
	var restored []string
	var errs []error
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // held: its holder is alive
			continue
		}
		r, err := readLease(f)
		if err != nil || r == nil {
			unlockLease(f)
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := host.do(func() error { return os.WriteFile(r.File, []byte(r.Old), 0) }); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("restore %s to %q, left by %s: %w", settingName(r.File), r.Old, r.describe(), err))
			unlockLease(f)
			continue
		}
		if err := (&lease{f: f}).release(); err != nil {
			errs = append(errs, err)
		}
		restored = append(restored, fmt.Sprintf("%s = %s (left by %s)", settingName(r.File), r.Old, r.describe()))
	}
	return restored, errors.Join(errs...)
}
