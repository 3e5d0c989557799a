package kstat

import (
	"bytes"
	"os"
	"testing"

	"github.com/labctl/labctl/internal/privtest"
)

// The Read benchmarks say what a snapshot costs between two measurement
// phases (go test -bench . -benchmem).

func benchRead[T any](b *testing.B, read func() (T, error)) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := read(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadNetStat(b *testing.B)    { benchRead(b, ReadNetStat) }
func BenchmarkReadSockStat(b *testing.B)   { benchRead(b, ReadSockStat) }
func BenchmarkReadSoftnet(b *testing.B)    { benchRead(b, ReadSoftnet) }
func BenchmarkReadSoftirqs(b *testing.B)   { benchRead(b, ReadSoftirqs) }
func BenchmarkReadInterrupts(b *testing.B) { benchRead(b, ReadInterrupts) }
func BenchmarkReadCPUStat(b *testing.B)    { benchRead(b, ReadCPUStat) }
func BenchmarkFindKsoftirqd(b *testing.B)  { benchRead(b, FindKsoftirqd) }
func BenchmarkReadOnlineCPUs(b *testing.B) { benchRead(b, ReadOnlineCPUs) }
func BenchmarkReadLinkStatsNil(b *testing.B) {
	benchRead(b, func() (LinkStats, error) { return ReadLinkStats(nil) })
}

func BenchmarkReadSlabInfo(b *testing.B) {
	privtest.Root(b)
	benchRead(b, ReadSlabInfo)
}

func BenchmarkReadTaskStat(b *testing.B) {
	ks, err := FindKsoftirqd()
	if err != nil {
		b.Fatal(err)
	}
	pid := ks[0].PID
	benchRead(b, func() (TaskStat, error) { return ReadTaskStat(pid, pid) })
}

func BenchmarkTracepointRead(b *testing.B) {
	privtest.Root(b)
	c := openTracepointPrivately(b, "irq", "softirq_entry")
	benchRead(b, c.Read)
}

// BenchmarkParseNetStat separates parsing from the procfs read.
func BenchmarkParseNetStat(b *testing.B) {
	data, err := os.ReadFile("testdata/netstat/netstat-6.18.txt")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseNetStat(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
