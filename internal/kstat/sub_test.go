package kstat

import (
	"reflect"
	"testing"
	"time"
)

// The Sub methods share three rules: 32-bit kernel counters survive one
// wrap-around, CPUs are matched by number and only those in both snapshots
// are kept, and a key missing from prev counts from zero.

func TestNetStatAndSockStatSub(t *testing.T) {
	cur := NetStat{"Udp.OutDatagrams": 12, "Tcp.CurrEstab": 1, "IcmpMsg.OutType3": 2}
	prev := NetStat{"Udp.OutDatagrams": 10, "Tcp.CurrEstab": 3, "Gone.Key": 5}
	want := NetStat{"Udp.OutDatagrams": 2, "Tcp.CurrEstab": -2, "IcmpMsg.OutType3": 2}
	if got := cur.Sub(prev); !reflect.DeepEqual(got, want) {
		t.Errorf("NetStat.Sub = %v, want %v", got, want)
	}
	s := SockStat{"TCP.inuse": 1002, "TCP.mem": 130}
	if got := s.Sub(SockStat{"TCP.inuse": 2, "TCP.mem": 134}); !reflect.DeepEqual(got, SockStat{"TCP.inuse": 1000, "TCP.mem": -4}) {
		t.Errorf("SockStat.Sub = %v", got)
	}
}

func TestSoftnetSub(t *testing.T) {
	prev := Softnet{Columns: 15, CPUs: []SoftnetCPU{
		{CPU: 0, Processed: 0xfffffff0, Dropped: 1, BacklogLen: 9},
		{CPU: 2, Processed: 100},
	}}
	cur := Softnet{Columns: 15, CPUs: []SoftnetCPU{
		{CPU: 0, Processed: 0x10, Dropped: 4, TimeSqueeze: 2, BacklogLen: 3, InputQueueLen: 1, ProcessQueueLen: 2},
		{CPU: 1, Processed: 50}, // came online: not in prev
		{CPU: 2, Processed: 160, ReceivedRPS: 7, FlowLimitCount: 1},
	}}
	want := Softnet{Columns: 15, CPUs: []SoftnetCPU{
		{CPU: 0, Processed: 0x20, Dropped: 3, TimeSqueeze: 2, BacklogLen: 3, InputQueueLen: 1, ProcessQueueLen: 2},
		{CPU: 2, Processed: 60, ReceivedRPS: 7, FlowLimitCount: 1},
	}}
	got := cur.Sub(prev)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sub\n got %+v\nwant %+v", got, want)
	}
	total := SoftnetCPU{CPU: -1, Processed: 92, Dropped: 3, TimeSqueeze: 2, ReceivedRPS: 7, FlowLimitCount: 1, BacklogLen: 3, InputQueueLen: 1, ProcessQueueLen: 2}
	if got.Total() != total {
		t.Errorf("Total = %+v, want %+v", got.Total(), total)
	}
}

func TestSoftirqsSub(t *testing.T) {
	prev := Softirqs{CPUs: []int{0, 1, 2}, Counts: map[string][]uint64{
		"NET_RX": {4294967290, 10, 20},
	}}
	cur := Softirqs{CPUs: []int{0, 2, 3}, Counts: map[string][]uint64{
		"NET_RX": {4, 25, 99},
		"NEW":    {1, 2, 3},
	}}
	want := Softirqs{CPUs: []int{0, 2}, Counts: map[string][]uint64{
		"NET_RX": {10, 5},
		"NEW":    {1, 2},
	}}
	got := cur.Sub(prev)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sub\n got %+v\nwant %+v", got, want)
	}
	if got.Total("NET_RX") != 15 || got.Total("NONE") != 0 {
		t.Errorf("Total NET_RX %d NONE %d", got.Total("NET_RX"), got.Total("NONE"))
	}
}

func TestInterruptsSub(t *testing.T) {
	prev := Interrupts{CPUs: []int{0, 1}, IRQs: map[string]IRQ{
		"36":  {PerCPU: []uint64{100, 4294967295}, Total: 4294967395, Desc: "eth0-rx-0"},
		"ERR": {Total: 4294967295},
	}}
	cur := Interrupts{CPUs: []int{0, 1}, IRQs: map[string]IRQ{
		"36":  {PerCPU: []uint64{150, 1}, Total: 151, Desc: "eth0-rx-0"},
		"37":  {PerCPU: []uint64{0, 8}, Total: 8, Desc: "eth0-rx-1"},
		"ERR": {Total: 1},
	}}
	want := Interrupts{CPUs: []int{0, 1}, IRQs: map[string]IRQ{
		"36":  {PerCPU: []uint64{50, 2}, Total: 52, Desc: "eth0-rx-0"},
		"37":  {PerCPU: []uint64{0, 8}, Total: 8, Desc: "eth0-rx-1"},
		"ERR": {Total: 2},
	}}
	got := cur.Sub(prev)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sub\n got %+v\nwant %+v", got, want)
	}
	if n := got.TotalMatching("eth0-rx"); n != 60 {
		t.Errorf("TotalMatching = %d, want 60", n)
	}
}

func TestCPUStatSub(t *testing.T) {
	ms := time.Millisecond
	prev := CPUStat{
		All:  CPUTimes{CPU: -1, User: 100 * ms, SoftIRQ: 10 * ms, Idle: 1000 * ms},
		CPUs: []CPUTimes{{CPU: 0, User: 60 * ms, SoftIRQ: 10 * ms}, {CPU: 1, User: 40 * ms}},
	}
	cur := CPUStat{
		All:  CPUTimes{CPU: -1, User: 300 * ms, SoftIRQ: 50 * ms, Idle: 1100 * ms, Steal: 70 * ms},
		CPUs: []CPUTimes{{CPU: 0, User: 160 * ms, SoftIRQ: 50 * ms}, {CPU: 2, User: 100 * ms}},
	}
	got := cur.Sub(prev)
	want := CPUStat{
		All:  CPUTimes{CPU: -1, User: 200 * ms, SoftIRQ: 40 * ms, Idle: 100 * ms, Steal: 70 * ms},
		CPUs: []CPUTimes{{CPU: 0, User: 100 * ms, SoftIRQ: 40 * ms}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sub\n got %+v\nwant %+v", got, want)
	}
	if got.All.Busy() != 240*ms {
		t.Errorf("Busy = %v, want 240ms (steal and idle excluded)", got.All.Busy())
	}
}

func TestSlabInfoSub(t *testing.T) {
	prev := SlabInfo{
		"TCP":  {ActiveObjs: 26, NumObjs: 26, ObjSize: 2368, ObjPerSlab: 13, PagesPerSlab: 8, ActiveSlabs: 2, NumSlabs: 2},
		"filp": {ActiveObjs: 600, NumObjs: 630, ObjSize: 192, ObjPerSlab: 21, PagesPerSlab: 1, ActiveSlabs: 30, NumSlabs: 30},
	}
	cur := SlabInfo{
		"TCP":  {ActiveObjs: 1026, NumObjs: 1040, ObjSize: 2368, ObjPerSlab: 13, PagesPerSlab: 8, ActiveSlabs: 80, NumSlabs: 80},
		"filp": {ActiveObjs: 567, NumObjs: 567, ObjSize: 192, ObjPerSlab: 21, PagesPerSlab: 1, ActiveSlabs: 27, NumSlabs: 27},
		"new":  {ActiveObjs: 1, NumObjs: 8, ObjSize: 512, ObjPerSlab: 8, PagesPerSlab: 1, ActiveSlabs: 1, NumSlabs: 1},
	}
	got := cur.Sub(prev)
	want := SlabInfo{
		"TCP":  {ActiveObjs: 1000, NumObjs: 1014, ObjSize: 2368, ObjPerSlab: 13, PagesPerSlab: 8, ActiveSlabs: 78, NumSlabs: 78},
		"filp": {ActiveObjs: -33, NumObjs: -63, ObjSize: 192, ObjPerSlab: 21, PagesPerSlab: 1, ActiveSlabs: -3, NumSlabs: -3},
		"new":  cur["new"],
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sub\n got %+v\nwant %+v", got, want)
	}
	if got["TCP"].ActiveBytes() != 1000*2368 || got["filp"].AllocatedBytes() != -63*192 {
		t.Errorf("bytes: TCP %d filp %d", got["TCP"].ActiveBytes(), got["filp"].AllocatedBytes())
	}
}

func TestTaskStatSub(t *testing.T) {
	prev := TaskStat{TID: 14, Comm: "ksoftirqd/0", State: "S", PPID: 2, STime: 130 * time.Millisecond, CPU: 0}
	cur := TaskStat{TID: 14, Comm: "ksoftirqd/0", State: "R", PPID: 2, UTime: 10 * time.Millisecond, STime: 450 * time.Millisecond, CPU: 0}
	got := cur.Sub(prev)
	want := TaskStat{TID: 14, Comm: "ksoftirqd/0", State: "R", PPID: 2, UTime: 10 * time.Millisecond, STime: 320 * time.Millisecond, CPU: 0}
	if got != want || got.CPUTime() != 330*time.Millisecond {
		t.Errorf("Sub = %+v (CPU %v), want %+v", got, got.CPUTime(), want)
	}
}

func TestLinkStatsSub(t *testing.T) {
	prev := LinkStats{
		"lo":   {RxPackets: 10, TxPackets: 10, RxBytes: 1000, TxBytes: 1000},
		"veth": {RxPackets: 500, TxPackets: 400, RxDropped: 3},
	}
	cur := LinkStats{
		"lo":   {RxPackets: 12, TxPackets: 12, RxBytes: 1200, TxBytes: 1200},
		"veth": {RxPackets: 7, TxPackets: 9, RxDropped: 3}, // deleted and created again
		"new":  {RxPackets: 1},
	}
	want := LinkStats{
		"lo":   {RxPackets: 2, TxPackets: 2, RxBytes: 200, TxBytes: 200},
		"veth": {RxPackets: 7, TxPackets: 9},
		"new":  {RxPackets: 1},
	}
	if got := cur.Sub(prev); !reflect.DeepEqual(got, want) {
		t.Errorf("Sub\n got %+v\nwant %+v", got, want)
	}
}

func TestTracepointCountSub(t *testing.T) {
	prev := TracepointCount{Name: "napi:napi_poll", CPUs: []int{0, 1}, PerCPU: []uint64{5, 7}, Total: 12}
	cur := TracepointCount{Name: "napi:napi_poll", CPUs: []int{0, 1}, PerCPU: []uint64{9, 7}, Total: 16}
	want := TracepointCount{Name: "napi:napi_poll", CPUs: []int{0, 1}, PerCPU: []uint64{4, 0}, Total: 4}
	if got := cur.Sub(prev); !reflect.DeepEqual(got, want) {
		t.Errorf("Sub = %+v, want %+v", got, want)
	}
}
