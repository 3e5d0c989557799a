package kstat

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/labctl/labctl/internal/golden"
	"github.com/vishvananda/netlink"
)

// parseAs adapts a typed Parse function to the table below.
func parseAs[T any](parse func(io.Reader) (T, error)) func(io.Reader) (any, error) {
	return func(r io.Reader) (any, error) { return parse(r) }
}

// TestParseGolden runs every sample testdata/<dir>/<case>.txt through its
// parser and compares the result, as JSON or as "error: ...", with
// <case>.golden. Samples named err-* must fail, all others must parse.
func TestParseGolden(t *testing.T) {
	parsers := []struct {
		dir   string
		parse func(io.Reader) (any, error)
	}{
		{"netstat", parseAs(ParseNetStat)},
		{"sockstat", parseAs(ParseSockStat)},
		{"softnet", parseAs(ParseSoftnet)},
		{"softirqs", parseAs(ParseSoftirqs)},
		{"interrupts", parseAs(ParseInterrupts)},
		{"cpustat", parseAs(ParseCPUStat)},
		{"slabinfo", parseAs(ParseSlabInfo)},
		{"taskstat", parseAs(ParseTaskStat)},
	}
	for _, p := range parsers {
		samples, err := filepath.Glob(filepath.Join("testdata", p.dir, "*.txt"))
		if err != nil || len(samples) == 0 {
			t.Fatalf("no samples in testdata/%s: %v", p.dir, err)
		}
		for _, sample := range samples {
			name := filepath.Base(sample)
			t.Run(p.dir+"/"+name, func(t *testing.T) {
				f, err := os.Open(sample)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				v, err := p.parse(f)
				var got []byte
				if err != nil {
					got = []byte("error: " + err.Error() + "\n")
				} else if got, err = json.MarshalIndent(v, "", "  "); err != nil {
					t.Fatal(err)
				} else {
					got = append(got, '\n')
				}
				if wantErr := strings.HasPrefix(name, "err-"); wantErr != bytes.HasPrefix(got, []byte("error: ")) {
					t.Errorf("sample %s: want error %v, got %s", name, wantErr, got)
				}
				golden.Check(t, strings.TrimSuffix(sample, ".txt")+".golden", got)
			})
		}
	}
}

// TestParsedSamples spot-checks the meaning of a few samples, so that a
// golden file regenerated with a parser bug in it does not go unnoticed.
func TestParsedSamples(t *testing.T) {
	tests := []struct {
		sample string
		check  func(t *testing.T, r io.Reader)
	}{
		{"netstat/netstat-6.18.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseNetStat(r))(t)
			if s["TcpExt.TCPPureAcks"] != 418 || s["IpExt.InOctets"] != 929957777 || s["MPTcpExt.WinProbe"] != 0 {
				t.Errorf("TCPPureAcks %d InOctets %d", s["TcpExt.TCPPureAcks"], s["IpExt.InOctets"])
			}
			if _, ok := s["TcpExt.BusyPollRxPackets"]; !ok {
				t.Error("no TcpExt.BusyPollRxPackets")
			}
		}},
		{"netstat/snmp-6.18.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseNetStat(r))(t)
			if s["Tcp.MaxConn"] != -1 || s["Udp.OutDatagrams"] != 204 || s["IcmpMsg.InType3"] != 1 {
				t.Errorf("MaxConn %d OutDatagrams %d InType3 %d", s["Tcp.MaxConn"], s["Udp.OutDatagrams"], s["IcmpMsg.InType3"])
			}
		}},
		{"softnet/6.18-2cpu.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseSoftnet(r))(t)
			if s.Columns != 15 || len(s.CPUs) != 2 || s.CPUs[1].CPU != 1 || s.CPUs[1].Processed != 0x10d6a {
				t.Errorf("%+v", s)
			}
		}},
		{"softnet/5.10-13col-cpu1-offline.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseSoftnet(r))(t)
			want := []SoftnetCPU{
				{CPU: 0, Processed: 123456, TimeSqueeze: 3, ReceivedRPS: 16},
				{CPU: 2, Processed: 0xffffffff, Dropped: 42, TimeSqueeze: 1, BacklogLen: 5},
				{CPU: 3, Processed: 256, FlowLimitCount: 1},
			}
			if !reflect.DeepEqual(s.CPUs, want) {
				t.Errorf("got %+v\nwant %+v", s.CPUs, want)
			}
		}},
		{"softnet/future-17col.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseSoftnet(r))(t)
			if s.Columns != 17 || s.CPUs[0].ProcessQueueLen != 3 || s.CPUs[0].CPU != 0 {
				t.Errorf("%+v", s)
			}
		}},
		{"softirqs/4.4-12cpu-block-iopoll.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseSoftirqs(r))(t)
			if len(s.CPUs) != 12 || s.CPUs[11] != 11 || s.Counts["NET_RX"][11] != 2000000 || s.Total("NET_RX") != 4294967295+3000111 {
				t.Errorf("CPUs %v NET_RX %v", s.CPUs, s.Counts["NET_RX"])
			}
		}},
		{"interrupts/x86-cpu1-offline.txt", func(t *testing.T, r io.Reader) {
			in := must(ParseInterrupts(r))(t)
			if !reflect.DeepEqual(in.CPUs, []int{0, 2, 3}) {
				t.Errorf("CPUs %v", in.CPUs)
			}
			want := map[string]IRQ{
				"123": {PerCPU: []uint64{2000000, 300000, 12}, Total: 2300012, Desc: "PCI-MSI-0000:03:00.0 0-edge enp3s0-TxRx-0"},
				"124": {PerCPU: []uint64{0, 0, 0}, Desc: "PCI-MSI-0000:03:00.0 1-edge enp3s0-TxRx-1, enp3s0-extra"},
				"ERR": {Total: 3},
				"LOC": {PerCPU: []uint64{1000000, 2000000, 3000000}, Total: 6000000, Desc: "Local timer interrupts"},
			}
			for name, irq := range want {
				if !reflect.DeepEqual(in.IRQs[name], irq) {
					t.Errorf("IRQ %s = %+v, want %+v", name, in.IRQs[name], irq)
				}
			}
			if got := in.TotalMatching("enp3s0-TxRx"); got != 2300012 {
				t.Errorf("TotalMatching = %d", got)
			}
		}},
		{"cpustat/2.6.32-9col-cpu1-offline.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseCPUStat(r))(t)
			if len(s.CPUs) != 2 || s.CPUs[1].CPU != 2 || s.All.CPU != -1 {
				t.Errorf("%+v", s)
			}
			// user 1000 + nice 20 + system 300 + irq 6 + softirq 7 ticks of 10 ms.
			if s.All.Busy() != 13330*time.Millisecond || s.All.SoftIRQ != 70*time.Millisecond || s.All.GuestNice != 0 {
				t.Errorf("busy %v softirq %v", s.All.Busy(), s.All.SoftIRQ)
			}
		}},
		{"slabinfo/6.18-slub.txt", func(t *testing.T, r io.Reader) {
			s := must(ParseSlabInfo(r))(t)
			tcp := s["TCP"]
			if tcp.ActiveBytes() != 26*2368 || tcp.AllocatedBytes() != 26*2368 || tcp.PagesPerSlab != 8 || tcp.NumSlabs != 2 {
				t.Errorf("TCP %+v", tcp)
			}
		}},
		{"taskstat/comm-with-parens.txt", func(t *testing.T, r io.Reader) {
			got := must(ParseTaskStat(r))(t)
			want := TaskStat{TID: 4321, Comm: "a (weird) name", State: "R", PPID: 1, UTime: 2500 * time.Millisecond, STime: 750 * time.Millisecond, CPU: 1}
			if got != want {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.sample, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.sample))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tt.check(t, f)
		})
	}
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "0-1\n", want: []int{0, 1}},
		{in: "0", want: []int{0}},
		{in: "0,2-3,8", want: []int{0, 2, 3, 8}},
		{in: "", want: nil},
		{in: "1-0", wantErr: `bad range "1-0"`},
		{in: "0,x", wantErr: `bad cpu "x"`},
		{in: "2,1", wantErr: "not in ascending order"},
		{in: "-1", wantErr: `bad cpu ""`},
	}
	for _, tt := range tests {
		got, err := ParseCPUList(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCPUList(%q) err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestFindKsoftirqd(t *testing.T) {
	stat := func(line string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(line + "\n")} }
	proc := fstest.MapFS{
		"1/stat":    stat("1 (systemd) S 0 1 1 0 -1 4194560 0 0 0 0 10 20 0 0 20 0 1 0 1 0 0"),
		"2/stat":    stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0"),
		"22/stat":   stat("22 (ksoftirqd/1) S 2 0 0 0 -1 69238848 0 0 0 0 0 7 0 0 20 0 1 0 20 0 0"),
		"14/stat":   stat("14 (ksoftirqd/0) S 2 0 0 0 -1 69238848 0 0 0 0 0 13 0 0 20 0 1 0 20 0 0"),
		"999/stat":  stat("999 (ksoftirqd/0) R 1 999 999 0 -1 4194304 0 0 0 0 5 5 0 0 20 0 1 0 500 0 0"),
		"1000/stat": stat("1000 (ksoftirqd/x) S 2 0 0 0 -1 69238848 0 0 0 0 0 13 0 0 20 0 1 0 20 0 0"),
		"self":      &fstest.MapFile{Data: []byte("not a process")},
		"sys/stat":  stat("not a process either"),
	}
	got, err := findKsoftirqd(proc)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Ksoftirqd{{CPU: 0, PID: 14}, {CPU: 1, PID: 22}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := findKsoftirqd(fstest.MapFS{"1/stat": proc["1/stat"]}); err == nil || !strings.Contains(err.Error(), "host PID namespace") {
		t.Errorf("no ksoftirqd: err = %v", err)
	}
}

func TestLinkStatsFromLinks(t *testing.T) {
	links := []netlink.Link{
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Statistics: &netlink.LinkStatistics{
			RxPackets: 10, TxPackets: 10, RxBytes: 840, TxBytes: 840,
		}}},
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth-a", Statistics: &netlink.LinkStatistics{
			RxPackets: 1, TxPackets: 2, RxBytes: 3, TxBytes: 4, RxDropped: 5, TxDropped: 6, RxErrors: 7, TxErrors: 8, Multicast: 9,
		}}},
		&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "nostats"}},
	}
	want := LinkStats{
		"lo":     {RxPackets: 10, TxPackets: 10, RxBytes: 840, TxBytes: 840},
		"veth-a": {RxPackets: 1, TxPackets: 2, RxBytes: 3, TxBytes: 4, RxDropped: 5, TxDropped: 6, RxErrors: 7, TxErrors: 8},
	}
	if got := linkStats(links); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}
