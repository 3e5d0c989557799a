package traces

import (
	"os"
	"testing"
)

// TestMain lets the test binary double as the child process of
// TestDialInNamespace, which runs it inside a fresh network namespace.
func TestMain(m *testing.M) {
	if addr := os.Getenv(dialChildEnv); addr != "" {
		os.Exit(dialChild(addr))
	}
	os.Exit(m.Run())
}
