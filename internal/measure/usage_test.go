package measure

import (
	"runtime"
	"testing"
	"time"
)

func TestUsageSubAndPerOp(t *testing.T) {
	before := Usage{User: 10 * time.Millisecond, System: 5 * time.Millisecond, Voluntary: 7, Involuntary: 1}
	after := Usage{User: 13 * time.Millisecond, System: 9 * time.Millisecond, Voluntary: 207, Involuntary: 3}
	d := after.Sub(before)
	if want := (Usage{User: 3 * time.Millisecond, System: 4 * time.Millisecond, Voluntary: 200, Involuntary: 2}); d != want {
		t.Fatalf("Sub = %+v, want %+v", d, want)
	}
	if d.CPU() != 7*time.Millisecond {
		t.Errorf("CPU = %v, want 7ms", d.CPU())
	}
	tests := []struct {
		n    int64
		want UsagePerOp
	}{
		{1000, UsagePerOp{CPUNs: 7000, UserNs: 3000, SystemNs: 4000, Voluntary: 0.2, Involuntary: 0.002}},
		{0, UsagePerOp{}},
		{-1, UsagePerOp{}},
	}
	for _, tt := range tests {
		if got := d.PerOp(tt.n); got != tt.want {
			t.Errorf("PerOp(%d) = %+v, want %+v", tt.n, got, tt.want)
		}
	}
}

// TestThreadUsageSeesThisThread checks that the snapshot belongs to the locked
// thread: it advances while the thread computes, and sleeping (the thread
// blocks in futex) counts a voluntary context switch.
func TestThreadUsageSeesThisThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	before, err := ThreadUsage()
	if err != nil {
		t.Fatal(err)
	}
	spun := 0
	for ; spun < 1e9; spun++ {
		now, err := ThreadUsage()
		if err != nil {
			t.Fatal(err)
		}
		if now.CPU() > before.CPU() {
			break
		}
	}
	if spun == 1e9 {
		t.Fatal("thread CPU time did not advance over 1e9 getrusage calls")
	}

	before, err = ThreadUsage()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	after, err := ThreadUsage()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(before); d.Voluntary < 1 {
		t.Errorf("sleeping on a locked thread: voluntary context switches %+v, want >= 1", d)
	}

	proc, err := ProcessUsage()
	if err != nil {
		t.Fatal(err)
	}
	if proc.CPU() < after.CPU() {
		t.Errorf("process CPU %v is less than one of its threads' %v", proc.CPU(), after.CPU())
	}
}

func BenchmarkThreadUsage(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ThreadUsage(); err != nil {
			b.Fatal(err)
		}
	}
}
