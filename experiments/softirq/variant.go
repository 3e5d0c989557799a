package softirq

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// variant is what one step does: the offered load on one link, with or
// without RPS on the receiving interface and a small backlog limit.
type variant struct {
	// Iface is the server's interface the datagrams arrive on.
	Iface string
	// Rate is the offered load in datagrams per second; 0 is a flood (as
	// fast as the sender can).
	Rate int
	// RPS steers the receive work of Iface to the CPUs of rps_cpus.
	RPS bool
	// Backlog, when > 0, is the net.core.netdev_max_backlog of the step.
	Backlog int
}

// String names the variant: "plain0/10000pps", "napi0/flood+rps+backlog=8".
func (v variant) String() string {
	var b strings.Builder
	b.WriteString(v.Iface + "/")
	if v.Rate > 0 {
		fmt.Fprintf(&b, "%dpps", v.Rate)
	} else {
		b.WriteString("flood")
	}
	if v.RPS {
		b.WriteString("+rps")
	}
	if v.Backlog > 0 {
		fmt.Fprintf(&b, "+backlog=%d", v.Backlog)
	}
	return b.String()
}

// Flood reports whether the variant sends as fast as it can.
func (v variant) Flood() bool { return v.Rate == 0 }

// parseVariant reads what String writes.
func parseVariant(s string) (variant, error) {
	iface, rest, ok := strings.Cut(s, "/")
	if !ok || iface == "" {
		return variant{}, fmt.Errorf("variant %q is not IFACE/LOAD[+rps][+backlog=N]", s)
	}
	v := variant{Iface: iface}
	parts := strings.Split(rest, "+")
	switch load := parts[0]; {
	case load == "flood":
	case strings.HasSuffix(load, "pps"):
		n, err := strconv.Atoi(strings.TrimSuffix(load, "pps"))
		if err != nil || n <= 0 {
			return variant{}, fmt.Errorf("variant %q: load %q is not a positive rate", s, load)
		}
		v.Rate = n
	default:
		return variant{}, fmt.Errorf("variant %q: load %q is neither flood nor Npps", s, load)
	}
	for _, p := range parts[1:] {
		switch {
		case p == "rps":
			v.RPS = true
		case strings.HasPrefix(p, "backlog="):
			n, err := strconv.Atoi(strings.TrimPrefix(p, "backlog="))
			if err != nil || n <= 0 {
				return variant{}, fmt.Errorf("variant %q: %q is not a positive backlog", s, p)
			}
			v.Backlog = n
		default:
			return variant{}, fmt.Errorf("variant %q: unknown part %q", s, p)
		}
	}
	return v, nil
}

// Groups of variants a run can ask for.
const (
	groupLoad       = "load"        // every rate, RPS off, backlog as it is
	groupRPS        = "rps"         // flood with RPS
	groupBacklog    = "backlog"     // flood with a small backlog, RPS off
	groupRPSBacklog = "rps-backlog" // flood with a small backlog and RPS
)

// allGroups lists the groups in the order a run measures them.
var allGroups = []string{groupLoad, groupRPS, groupBacklog, groupRPSBacklog}

// variants expands the groups for one link.
func variants(iface string, groups []string, rates []int, backlog int) []variant {
	var out []variant
	for _, g := range allGroups {
		if !slices.Contains(groups, g) {
			continue
		}
		switch g {
		case groupLoad:
			for _, r := range rates {
				out = append(out, variant{Iface: iface, Rate: r})
			}
		case groupRPS:
			out = append(out, variant{Iface: iface, RPS: true})
		case groupBacklog:
			out = append(out, variant{Iface: iface, Backlog: backlog})
		case groupRPSBacklog:
			out = append(out, variant{Iface: iface, RPS: true, Backlog: backlog})
		}
	}
	return out
}

// rpsMask turns the rps_cpus parameter into the hex mask sysfs takes:
// "all" is every CPU of cpus; otherwise the parameter is a hex mask
// already ("2", "0x3", "f").
func rpsMask(param string, cpus []int) (string, error) {
	if param == "all" {
		var mask uint64
		for _, c := range cpus {
			if c >= 64 {
				return "", fmt.Errorf("rps_cpus=all: CPU %d is beyond a 64-bit mask; give the mask in hex", c)
			}
			mask |= 1 << c
		}
		return strconv.FormatUint(mask, 16), nil
	}
	h := strings.TrimPrefix(strings.ToLower(param), "0x")
	n, err := strconv.ParseUint(h, 16, 64)
	if err != nil || n == 0 {
		return "", fmt.Errorf("rps_cpus %q: want all or a non-zero hex CPU mask such as 2 or 3", param)
	}
	return strconv.FormatUint(n, 16), nil
}
