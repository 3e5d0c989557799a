// Package privtest decides what a test that needs root does without it: skip
// with a reason on a developer's machine, fail in CI where
// LABCTL_REQUIRE_PRIV=1 promises that privileged tests really ran.
package privtest

import (
	"os"
	"testing"
)

// Required reports whether privileged tests must run (set by .ci/run).
func Required() bool { return os.Getenv("LABCTL_REQUIRE_PRIV") == "1" }

// Root skips t unless the test runs as root; with LABCTL_REQUIRE_PRIV=1 a
// missing privilege is a failure instead of a skip.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Required() {
		t.Fatal("this test needs root and LABCTL_REQUIRE_PRIV=1 forbids skipping it")
	}
	t.Skip("needs root (network namespaces, netlink); run as root or set LABCTL_REQUIRE_PRIV=1 to make this a failure")
}

// Unavailable skips or fails t for a missing kernel feature or tool the test
// depends on, with the reason; LABCTL_REQUIRE_PRIV=1 makes it a failure, since
// CI installs everything the tests need.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Required() {
		t.Fatalf("required for this test but unavailable: %s", reason)
	}
	t.Skip(reason)
}
