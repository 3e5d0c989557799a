package kstat

import (
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
)

// NetStat holds the SNMP and extended counters of one network namespace,
// keyed "<section>.<name>" as the kernel prints them:
// "TcpExt.BusyPollRxPackets", "Tcp.RetransSegs", "Udp.InDatagrams",
// "IpExt.InOctets". A few entries are gauges or constants rather than
// counters (Tcp.CurrEstab, Tcp.MaxConn = -1, Ip.Forwarding).
type NetStat map[string]int64

// ReadNetStat reads /proc/net/netstat and /proc/net/snmp of the calling
// thread's network namespace (through /proc/thread-self, see procNet), so an
// agent running inside a node reads that node's counters. A goroutine that is
// not locked to its thread reads the namespace of whichever thread runs it;
// in an agent every thread lives in the node's namespace.
func ReadNetStat() (NetStat, error) {
	s, err := readFile(procNet+"netstat", ParseNetStat)
	if err != nil {
		return nil, err
	}
	snmp, err := readFile(procNet+"snmp", ParseNetStat)
	if err != nil {
		return nil, err
	}
	maps.Copy(s, snmp)
	return s, nil
}

// ParseNetStat parses the format of /proc/net/netstat and /proc/net/snmp:
// pairs of lines, a header "Section: Name1 Name2 ..." followed by
// "Section: value1 value2 ...". Older kernels print fewer names; whatever the
// header names is read.
func ParseNetStat(r io.Reader) (NetStat, error) {
	s := NetStat{}
	sc := newScanner(r)
	line := 0
	for sc.Scan() {
		line++
		header := sc.Text()
		if strings.TrimSpace(header) == "" {
			continue
		}
		section, names, ok := strings.Cut(header, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no \"Section:\" prefix in %q", line, header)
		}
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("line %d: header %s has no value line", line, section)
		}
		line++
		vsection, values, ok := strings.Cut(sc.Text(), ":")
		if !ok || vsection != section {
			return nil, fmt.Errorf("line %d: header %q is followed by %q, want its values", line, section, vsection)
		}
		nameFields, valueFields := strings.Fields(names), strings.Fields(values)
		if len(nameFields) != len(valueFields) {
			return nil, fmt.Errorf("line %d: section %s has %d names but %d values", line, section, len(nameFields), len(valueFields))
		}
		for i, name := range nameFields {
			v, err := strconv.ParseInt(valueFields[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s.%s: %w", line, section, name, err)
			}
			s[section+"."+name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Sub returns s - prev for every key of s; a key missing from prev (the
// kernel prints IcmpMsg.OutType3 only once such a message was sent) counts
// from 0.
func (s NetStat) Sub(prev NetStat) NetStat {
	d := make(NetStat, len(s))
	for k, v := range s {
		d[k] = v - prev[k]
	}
	return d
}
