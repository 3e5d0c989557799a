// Package kernel holds kernel features as data: the version of Linux that
// brought each, and one error for "this kernel cannot do that" that carries
// the feature and its version, so that a result can say what is missing
// and a test can tell "too old" (skip) from "broken" (fail).
package kernel

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Version is a kernel's major and minor version.
type Version struct{ Major, Minor int }

// V is Version{major, minor}.
func V(major, minor int) Version { return Version{major, minor} }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v is o or later.
func (v Version) AtLeast(o Version) bool {
	return v.Major > o.Major || v.Major == o.Major && v.Minor >= o.Minor
}

// Number is major*1000+minor, for a metric.
func (v Version) Number() float64 { return float64(v.Major*1000 + v.Minor) }

// ParseRelease reads a release such as "6.18.44-fc-v782" as 6.18.
func ParseRelease(release string) (Version, error) {
	var v Version
	if _, err := fmt.Sscanf(release, "%d.%d", &v.Major, &v.Minor); err != nil {
		return Version{}, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return v, nil
}

var running = sync.OnceValues(func() (Version, string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Version{}, ""
	}
	release := unix.ByteSliceToString(u.Release[:])
	v, _ := ParseRelease(release)
	return v, release
})

// Running is the version and release of the running kernel.
func Running() (Version, string) { return running() }

// Feature is something a kernel has from a version on. Since is zero for a
// feature that depends on the device or the configuration, not the version
// (a driver's XDP support, CONFIG_NET_RX_BUSY_POLL).
type Feature struct {
	Name  string
	Since Version
}

func (f Feature) String() string {
	if f.Since == (Version{}) {
		return f.Name
	}
	return f.Name + " (Linux " + f.Since.String() + ")"
}

// ErrNotSupported is what every NotSupportedError is (errors.Is).
var ErrNotSupported = errors.New("not supported by this kernel")

// NotSupportedError says this kernel (or device) lacks a feature; Err is
// how it said so (an errno), when it did.
type NotSupportedError struct {
	Feature Feature
	Err     error
}

func (e *NotSupportedError) Error() string {
	if e.Err == nil {
		return e.Feature.String() + ": not supported here"
	}
	return e.Feature.String() + ": not supported here: " + e.Err.Error()
}

func (e *NotSupportedError) Unwrap() error { return e.Err }

// Is makes every NotSupportedError match ErrNotSupported.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

// NotSupported is the error for a feature this kernel lacks; err is the
// kernel's answer, or nil.
func NotSupported(f Feature, err error) error { return &NotSupportedError{Feature: f, Err: err} }
