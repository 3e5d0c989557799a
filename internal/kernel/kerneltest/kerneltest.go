// Package kerneltest lets a test meet a feature the kernel may lack: it
// skips on a kernel older than the feature and fails on one that should
// have it, instead of matching the text of notes.
package kerneltest

import (
	"errors"
	"testing"

	"github.com/labctl/labctl/internal/kernel"
)

// Skip skips the test when err says a feature is missing on a kernel
// older than the feature, and fails it when the kernel is new enough (or
// the feature depends on no version: then the machine is expected to have
// it). It returns when err is nil or not a NotSupportedError.
func Skip(t testing.TB, err error) {
	t.Helper()
	var ns *kernel.NotSupportedError
	if !errors.As(err, &ns) {
		return
	}
	v, release := kernel.Running()
	if ns.Feature.Since != (kernel.Version{}) && !v.AtLeast(ns.Feature.Since) {
		t.Skipf("Linux %s: %v", release, err)
	}
	t.Fatalf("Linux %s should support it: %v", release, err)
}
