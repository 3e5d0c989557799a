package kstat

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"strconv"
	"strings"
)

// SockStat holds /proc/net/sockstat and /proc/net/sockstat6 keyed
// "<section>.<field>": "sockets.used", "TCP.inuse", "TCP.orphan", "TCP.tw",
// "TCP.alloc", "TCP.mem", "UDP.inuse", "TCP6.inuse", "FRAG.memory".
//
// Mind the scope of each field (sockstat_seq_show in net/ipv4/proc.c, Linux
// 6.x): "sockets.used", the "inuse" fields, "TCP.tw" (per namespace since
// Linux 5.19) and "FRAG" count the reading thread's namespace, while
// "TCP.orphan", "TCP.alloc" and the "mem" fields are host-wide. "mem" is in
// pages (4 KiB on x86-64), the unit of net.ipv4.tcp_mem.
type SockStat map[string]int64

// ReadSockStat reads /proc/net/sockstat and, when IPv6 is enabled,
// /proc/net/sockstat6, of the calling thread's network namespace (see
// ReadNetStat for what that means in Go).
func ReadSockStat() (SockStat, error) {
	s, err := readFile(procNet+"sockstat", ParseSockStat)
	if err != nil {
		return nil, err
	}
	s6, err := readFile(procNet+"sockstat6", ParseSockStat)
	if errors.Is(err, fs.ErrNotExist) { // booted with ipv6.disable=1
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	maps.Copy(s, s6)
	return s, nil
}

// ParseSockStat parses lines "Section: name value name value ...".
func ParseSockStat(r io.Reader) (SockStat, error) {
	s := SockStat{}
	sc := newScanner(r)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		section, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no \"Section:\" prefix in %q", line, sc.Text())
		}
		f := strings.Fields(rest)
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("line %d: section %s: odd number of name/value fields", line, section)
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s.%s: %w", line, section, f[i], err)
			}
			s[section+"."+f[i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Sub returns s - prev for every key of s. Most sockstat fields are levels,
// so a delta is a change (connections opened, pages gained), not a rate.
func (s SockStat) Sub(prev SockStat) SockStat {
	d := make(SockStat, len(s))
	for k, v := range s {
		d[k] = v - prev[k]
	}
	return d
}
