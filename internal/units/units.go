// Package units reads and writes the byte sizes that topologies (tc's
// burst, limits) and experiment parameters (message sizes, buffers) are
// written in, so that both read "4kb", "4K" and "4KiB" alike.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Multiples are binary, as in tc(8) ("kb = 1024 bytes") and as message
// sizes in networking are: 4K is 4096 bytes however it is spelt.
var multiples = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
}

// ParseSize reads a byte count: a number and an optional binary multiple,
// in any case: 64, 1500b, 4K, 4kb, 4KiB, 1.5MiB. It reports whether a unit
// was written, for callers that require one (tc reads a bare number as
// something else).
func ParseSize(s string) (n int64, unit bool, err error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	mult, ok := multiples[t[i:]]
	v, perr := strconv.ParseFloat(t[:i], 64)
	if i == 0 || !ok || perr != nil || v < 0 {
		return 0, false, fmt.Errorf("expected a size such as 64, 1500b, 4KiB, 32kb or 1MiB, got %q", s)
	}
	b := v * float64(mult)
	if b != math.Trunc(b) || b > math.MaxInt64/2 {
		return 0, false, fmt.Errorf("size %q is not a whole number of bytes within range", s)
	}
	return int64(b), i < len(t), nil
}

// FormatSize writes a byte count the way ParseSize reads it, in the
// largest multiple that divides it.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}
