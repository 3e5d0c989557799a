package uring_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/sock/socktest"
	"github.com/labctl/labctl/internal/uring"
)

// newRing sets up a ring closed at cleanup; a kernel or container without
// io_uring makes the test unavailable.
func newRing(t testing.TB, entries uint32, opts ...uring.Option) *uring.Ring {
	t.Helper()
	r, err := uring.New(entries, opts...)
	if errors.Is(err, uring.ErrUnavailable) {
		privtest.Unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// spinCQE waits for a completion without entering the kernel, as a
// busy-polling SQPOLL user does. The deadline only keeps a broken ring from
// hanging the test.
func spinCQE(t testing.TB, r *uring.Ring) *uring.CQE {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		if c := r.PeekCQE(); c != nil {
			return c
		}
		if i%(1<<16) == 0 && time.Now().After(deadline) {
			t.Fatal("no completion within 30s")
		}
	}
}

func TestNop(t *testing.T) {
	r := newRing(t, 8)
	if err := r.PrepNop(42); err != nil {
		t.Fatal(err)
	}
	if n, err := r.SubmitAndWait(1); err != nil || n != 1 {
		t.Fatalf("SubmitAndWait(1) = %d, %v; want 1 submitted", n, err)
	}
	c := r.PeekCQE()
	if c == nil {
		t.Fatal("no completion after SubmitAndWait(1)")
	}
	if c.UserData != 42 || c.Res != 0 || c.Err() != nil {
		t.Errorf("completion %+v, want user data 42 and Res 0", *c)
	}
	r.SeenCQE()
	if c := r.PeekCQE(); c != nil {
		t.Errorf("completion %+v left after SeenCQE", *c)
	}
	if got := r.Enters(); got != 1 {
		t.Errorf("%d io_uring_enter calls for one submit-and-wait, want 1", got)
	}
}

func TestQueueFull(t *testing.T) {
	r := newRing(t, 4)
	for i := range 4 {
		if err := r.PrepNop(uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PrepNop(4); !errors.Is(err, uring.ErrQueueFull) {
		t.Fatalf("fifth PrepNop on a 4-entry ring = %v, want ErrQueueFull", err)
	}
	if _, err := r.SubmitAndWait(4); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		c, err := r.WaitCQE()
		if err != nil {
			t.Fatal(err)
		}
		if c.UserData != uint64(i) {
			t.Errorf("completion %d has user data %d", i, c.UserData)
		}
		r.SeenCQE()
	}
	if err := r.PrepNop(5); err != nil {
		t.Errorf("PrepNop after the queue drained = %v", err)
	}
}

func TestCompletionError(t *testing.T) {
	r := newRing(t, 4)
	if err := r.PrepRecv(-1, make([]byte, 8), 0, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	c, err := r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(c.Err(), unix.EBADF) {
		t.Errorf("recv on fd -1 completed with %+v (%v), want EBADF", *c, c.Err())
	}
	r.SeenCQE()
}

func TestReadWriteFile(t *testing.T) {
	r := newRing(t, 4)
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := []byte("through the rings")
	if err := r.PrepWrite(int(f.Fd()), want, 0, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	c, err := r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if c.Res != int32(len(want)) {
		t.Fatalf("write completed with %+v, want %d bytes", *c, len(want))
	}
	r.SeenCQE()
	got := make([]byte, 64)
	if err := r.PrepRead(int(f.Fd()), got, 0, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatal(err)
	}
	c, err = r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if c.Res < 0 || !bytes.Equal(got[:c.Res], want) {
		t.Errorf("read completed with %+v, data %q; want %q", *c, got[:max(c.Res, 0)], want)
	}
	r.SeenCQE()
}

// waitMode is how a test or benchmark collects completions.
type waitMode int

const (
	submitAndWait waitMode = iota // one io_uring_enter submits and waits
	submitSpin                    // Submit (with SQPOLL: no system call), then spin on PeekCQE
)

// echo sends msg through the ring and receives its echo into buf, looping
// over short receives.
func echo(t testing.TB, r *uring.Ring, fd sock.FD, msg, buf []byte, mode waitMode) {
	if err := r.PrepSend(int(fd), msg, 0, 1); err != nil {
		t.Fatal(err)
	}
	sent, got := false, 0
	for !sent || got < len(buf) {
		if got < len(buf) {
			if err := r.PrepRecv(int(fd), buf[got:], 0, 2); err != nil {
				t.Fatal(err)
			}
		}
		want := uint32(1)
		if !sent {
			want = 2
		}
		if mode == submitAndWait {
			if _, err := r.SubmitAndWait(want); err != nil {
				t.Fatal(err)
			}
		} else if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		for range want {
			var c *uring.CQE
			if mode == submitAndWait {
				c = r.PeekCQE()
			} else {
				c = spinCQE(t, r)
			}
			if c == nil || c.Err() != nil {
				t.Fatalf("completion %+v", c)
			}
			switch c.UserData {
			case 1:
				if c.Res != int32(len(msg)) {
					t.Fatalf("send completed with %d of %d bytes", c.Res, len(msg))
				}
				sent = true
			case 2:
				if c.Res == 0 {
					t.Fatal("echo peer shut down")
				}
				got += int(c.Res)
			}
			r.SeenCQE()
		}
	}
}

func TestEcho(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []uring.Option
		mode waitMode
	}{
		{"enter", nil, submitAndWait},
		{"sqpoll-enter", []uring.Option{uring.WithSQPoll(time.Second)}, submitAndWait},
		{"sqpoll-spin", []uring.Option{uring.WithSQPoll(time.Second)}, submitSpin},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, 8, tt.opts...)
			client, server := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
			socktest.Echo(t, sock.TCP, server)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for _, size := range []int{1, 64, 1500, 1 << 16} {
				msg := bytes.Repeat([]byte{byte(size)}, size)
				msg[0] = 0xaa
				buf := make([]byte, size)
				echo(t, r, client, msg, buf, tt.mode)
				if !bytes.Equal(buf, msg) {
					t.Fatalf("echo of %d bytes came back different", size)
				}
			}
		})
	}
}

// With SQPOLL the kernel thread picks up submissions, so a busy-polling user
// enters the kernel only to wake the thread, not once per request.
func TestSQPollFewerEnters(t *testing.T) {
	const ops = 1000
	r := newRing(t, 8, uring.WithSQPoll(time.Second))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for i := range ops {
		if err := r.PrepNop(uint64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		if c := spinCQE(t, r); c.UserData != uint64(i) {
			t.Fatalf("completion %+v, want user data %d", *c, i)
		}
		r.SeenCQE()
	}
	if got := r.Enters(); got >= ops {
		t.Errorf("%d io_uring_enter calls for %d requests with SQPOLL, want fewer", got, ops)
	}
	t.Logf("%d io_uring_enter calls for %d requests", r.Enters(), ops)
}

// Loopback copies SEND_ZC data, so with SendZCReportUsage every notification
// there must say COPIED; the send result comes first, flagged MORE.
func TestSendZCCopiedOnLoopback(t *testing.T) {
	const size = 16 << 10
	for _, tt := range []struct {
		name  string
		fixed bool
	}{
		{"plain", false},
		{"fixed buffer", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(t, 8)
			probe, err := r.Probe()
			if err != nil {
				t.Fatal(err)
			}
			if err := probe.Require(uring.OpSendZC); err != nil {
				privtest.Unavailable(t, err.Error())
			}
			// Nobody reads: one send fits the receiver's buffer.
			client, _ := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
			buf := make([]byte, 2*size)
			zc := uring.SendZCReportUsage
			if tt.fixed {
				if err := r.RegisterBuffers([][]byte{buf}); err != nil {
					t.Fatal(err)
				}
				zc |= uring.RecvSendFixedBuf
			}
			if err := r.PrepSendZC(int(client), buf[size:], 0, zc, 9); err != nil {
				t.Fatal(err)
			}
			if _, err := r.SubmitAndWait(1); err != nil {
				t.Fatal(err)
			}
			first, err := r.WaitCQE()
			if err != nil {
				t.Fatal(err)
			}
			if first.UserData != 9 || first.Res != size || !first.More() || first.Notif() {
				t.Fatalf("first completion %+v, want %d bytes sent, MORE, no NOTIF", *first, size)
			}
			r.SeenCQE()
			notif, err := r.WaitCQE()
			if err != nil {
				t.Fatal(err)
			}
			if notif.UserData != 9 || !notif.Notif() || notif.More() || notif.Err() != nil {
				t.Fatalf("second completion %+v, want the NOTIF", *notif)
			}
			if !notif.ZCCopied() {
				t.Errorf("notification %+v does not report the copy loopback makes", *notif)
			}
			r.SeenCQE()
		})
	}
}

func TestSendZCFixedBufNotRegistered(t *testing.T) {
	r := newRing(t, 4)
	if err := r.RegisterBuffers([][]byte{make([]byte, 4096)}); err != nil {
		t.Fatal(err)
	}
	err := r.PrepSendZC(0, make([]byte, 64), 0, uring.RecvSendFixedBuf, 1)
	if err == nil {
		t.Error("SEND_ZC from an unregistered buffer with RecvSendFixedBuf was prepared")
	}
}

func TestProbe(t *testing.T) {
	r := newRing(t, 4)
	p, err := r.Probe()
	if err != nil {
		t.Fatal(err)
	}
	if !p.Supports(uring.OpNop) {
		t.Error("the kernel reports no NOP, which every io_uring has")
	}
	for _, op := range []uring.Op{uring.OpRead, uring.OpWrite, uring.OpSend, uring.OpRecv} {
		if !p.Supports(op) {
			t.Errorf("%v unsupported, though this package's tests run it (Linux 5.6+)", op)
		}
	}
	if p.Supports(255) {
		t.Error("opcode 255 reported as supported")
	}
	if err := p.Require(uring.OpNop, 255); !errors.Is(err, kernel.ErrNotSupported) {
		t.Errorf("Require(NOP, 255) = %v, want ErrNotSupported", err)
	}
}

func TestCloseTwice(t *testing.T) {
	r, err := uring.New(4)
	if errors.Is(err, uring.ErrUnavailable) {
		privtest.Unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// The request path must not allocate, or the garbage collector would become
// part of every latency measured.
func TestNoAllocations(t *testing.T) {
	r := newRing(t, 8)
	client, server := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
	socktest.Echo(t, sock.TCP, server)
	msg, buf := make([]byte, 64), make([]byte, 64)
	for _, tt := range []struct {
		name string
		run  func()
	}{
		{"nop", func() {
			if err := r.PrepNop(1); err != nil {
				t.Fatal(err)
			}
			if _, err := r.SubmitAndWait(1); err != nil {
				t.Fatal(err)
			}
			r.SeenCQE()
		}},
		{"send+recv", func() { echo(t, r, client, msg, buf, submitAndWait) }},
	} {
		if allocs := testing.AllocsPerRun(100, tt.run); allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tt.name, allocs)
		}
	}
}
