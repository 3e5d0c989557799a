package topologies

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/labctl/labctl/internal/units"
)

// Rates and sizes use tc's units (tc(8), "PARAMETERS"): rates in bits
// (kbit = 1000 bit) or bytes (kbps = 1000 bytes) per second, sizes in bytes
// with binary multiples (kb = 1024 bytes). A unit is required: tc reads a
// bare number as bits per second, which surprises too many people.

var rateUnits = map[string]float64{ // bytes per second per unit
	"bit": 1.0 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8,
	"bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9, "tbps": 1e12,
}

// ParseRate reads a tc rate such as 100mbit and returns bytes per second.
func ParseRate(s string) (uint64, error) {
	v, err := parseUnit(s, rateUnits)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %w", s, err)
	}
	if v < 1 || v > math.MaxUint64/2 {
		return 0, fmt.Errorf("rate %q is out of range", s)
	}
	return uint64(v), nil
}

// ParseSize reads a tc size such as 32kb and returns bytes; unlike an
// experiment's sizes it needs its unit.
func ParseSize(s string) (uint32, error) {
	v, unit, err := units.ParseSize(s)
	if err == nil && !unit {
		err = fmt.Errorf("expected a number followed by a unit (b, kb, mb, gb)")
	}
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if v < 1 || v > math.MaxUint32 {
		return 0, fmt.Errorf("size %q is out of range", s)
	}
	return uint32(v), nil
}

func parseUnit(s string, units map[string]float64) (float64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("expected a number followed by a unit (%s)", unitList(units))
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("expected a number followed by a unit (%s)", unitList(units))
	}
	mult, ok := units[s[i:]]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q; use one of %s", s[i:], unitList(units))
	}
	return n * mult, nil
}

func unitList(units map[string]float64) string {
	names := make([]string, 0, len(units))
	for u := range units {
		names = append(names, u)
	}
	sort.Slice(names, func(i, j int) bool { return units[names[i]] < units[names[j]] })
	return strings.Join(names, ", ")
}

// offloadNames maps the offload names a topology may use to the argument
// ethtool -K takes. tx-checksum and rx-checksum read better in a topology
// than ethtool's one-letter "tx" and "rx".
var offloadNames = map[string]string{
	"gro": "gro", "gso": "gso", "tso": "tso", "lro": "lro", "sg": "sg",
	"tx-checksum": "tx", "rx-checksum": "rx",
	"rxvlan": "rxvlan", "txvlan": "txvlan", "rxhash": "rxhash", "ntuple": "ntuple",
	"rx-gro-hw": "rx-gro-hw", "rx-gro-list": "rx-gro-list",
	"rx-udp-gro-forwarding": "rx-udp-gro-forwarding",
	"tx-udp-segmentation":   "tx-udp-segmentation",
}

// OffloadNames lists the offload names a topology may set, sorted.
func OffloadNames() []string {
	names := make([]string, 0, len(offloadNames))
	for n := range offloadNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
