package kstat

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// SoftnetCPU is one row of /proc/net/softnet_stat: the receive work of one
// CPU's softnet_data.
type SoftnetCPU struct {
	// CPU is the CPU number, printed by the kernel since Linux 5.10. Older
	// kernels leave it out and skip offline CPUs, so there it is the row
	// position, which is the CPU number only while every CPU is online.
	CPU int `json:"cpu"`
	// Processed counts packets taken off the backlog or polled by NAPI on
	// this CPU (column 1).
	Processed uint64 `json:"processed"`
	// Dropped counts packets dropped because the backlog was longer than
	// net.core.netdev_max_backlog (column 2).
	Dropped uint64 `json:"dropped"`
	// TimeSqueeze counts net_rx_action runs that stopped with work left,
	// out of netdev_budget packets or netdev_budget_usecs (column 3).
	TimeSqueeze uint64 `json:"time_squeeze"`
	// ReceivedRPS counts IPIs this CPU received to process RPS work
	// (column 10, Linux 2.6.35).
	ReceivedRPS uint64 `json:"received_rps"`
	// FlowLimitCount counts packets dropped by the RPS flow limit
	// (column 11, Linux 3.11).
	FlowLimitCount uint64 `json:"flow_limit_count"`

	// The last three are gauges, the queue lengths at the time of reading.

	// BacklogLen is InputQueueLen + ProcessQueueLen (column 12, Linux 5.10).
	BacklogLen uint64 `json:"backlog_len"`
	// InputQueueLen is the length of input_pkt_queue (column 14, Linux 6.4).
	InputQueueLen uint64 `json:"input_queue_len"`
	// ProcessQueueLen is the length of process_queue (column 15, Linux 6.4).
	ProcessQueueLen uint64 `json:"process_queue_len"`
}

// Softnet is a snapshot of /proc/net/softnet_stat. The file sits under
// /proc/net but its numbers are per CPU and host-wide: every namespace sees
// the same rows.
type Softnet struct {
	// Columns is how many columns the kernel printed: 15 on Linux 6.4 and
	// later, 13 from 5.10, 11 from 3.11, 10 from 2.6.35. Fields the kernel
	// did not print are 0.
	Columns int          `json:"columns"`
	CPUs    []SoftnetCPU `json:"cpus"`
}

// Column positions (0-based) in softnet_seq_show, net/core/net-procfs.c.
// Columns 3 to 8 once held fastroute and cpu_collision statistics and are
// printed as 0 on current kernels.
const (
	snProcessed = iota
	snDropped
	snTimeSqueeze
	snReceivedRPS     = 9
	snFlowLimitCount  = 10
	snBacklogLen      = 11
	snCPU             = 12
	snInputQueueLen   = 13
	snProcessQueueLen = 14
)

// ReadSoftnet reads /proc/net/softnet_stat.
func ReadSoftnet() (Softnet, error) {
	return readFile(procNet+"softnet_stat", ParseSoftnet)
}

// ParseSoftnet parses softnet_stat: one row per online CPU of hexadecimal
// 32-bit columns. Columns beyond the 15 known ones are ignored.
func ParseSoftnet(r io.Reader) (Softnet, error) {
	var s Softnet
	sc := newScanner(r)
	for row := 0; sc.Scan(); row++ {
		f := strings.Fields(sc.Text())
		if len(f) < snTimeSqueeze+1 {
			return Softnet{}, fmt.Errorf("row %d: %d columns, want at least 3", row+1, len(f))
		}
		if row == 0 {
			s.Columns = len(f)
		} else if len(f) != s.Columns {
			return Softnet{}, fmt.Errorf("row %d: %d columns, the first row has %d", row+1, len(f), s.Columns)
		}
		v := make([]uint64, snProcessQueueLen+1)
		for i := range min(len(f), len(v)) {
			n, err := strconv.ParseUint(f[i], 16, 32)
			if err != nil {
				return Softnet{}, fmt.Errorf("row %d column %d: %w", row+1, i+1, err)
			}
			v[i] = n
		}
		cpu := row
		if len(f) > snCPU {
			cpu = int(v[snCPU])
		}
		s.CPUs = append(s.CPUs, SoftnetCPU{
			CPU:             cpu,
			Processed:       v[snProcessed],
			Dropped:         v[snDropped],
			TimeSqueeze:     v[snTimeSqueeze],
			ReceivedRPS:     v[snReceivedRPS],
			FlowLimitCount:  v[snFlowLimitCount],
			BacklogLen:      v[snBacklogLen],
			InputQueueLen:   v[snInputQueueLen],
			ProcessQueueLen: v[snProcessQueueLen],
		})
	}
	if err := sc.Err(); err != nil {
		return Softnet{}, err
	}
	return s, nil
}

// Sub returns the counters gained since prev, CPU by CPU. The kernel keeps
// them as 32-bit unsigned ints, so one wrap-around between the snapshots is
// accounted for. The queue lengths are gauges and keep s's values. CPUs
// missing from prev (brought online in between) are left out.
func (s Softnet) Sub(prev Softnet) Softnet {
	d := Softnet{Columns: s.Columns}
	at := make(map[int]SoftnetCPU, len(prev.CPUs))
	for _, c := range prev.CPUs {
		at[c.CPU] = c
	}
	for _, c := range s.CPUs {
		p, ok := at[c.CPU]
		if !ok {
			continue
		}
		c.Processed = delta32(c.Processed, p.Processed)
		c.Dropped = delta32(c.Dropped, p.Dropped)
		c.TimeSqueeze = delta32(c.TimeSqueeze, p.TimeSqueeze)
		c.ReceivedRPS = delta32(c.ReceivedRPS, p.ReceivedRPS)
		c.FlowLimitCount = delta32(c.FlowLimitCount, p.FlowLimitCount)
		d.CPUs = append(d.CPUs, c)
	}
	return d
}

// Total sums every column over all CPUs; its CPU is -1.
func (s Softnet) Total() SoftnetCPU {
	t := SoftnetCPU{CPU: -1}
	for _, c := range s.CPUs {
		t.Processed += c.Processed
		t.Dropped += c.Dropped
		t.TimeSqueeze += c.TimeSqueeze
		t.ReceivedRPS += c.ReceivedRPS
		t.FlowLimitCount += c.FlowLimitCount
		t.BacklogLen += c.BacklogLen
		t.InputQueueLen += c.InputQueueLen
		t.ProcessQueueLen += c.ProcessQueueLen
	}
	return t
}
