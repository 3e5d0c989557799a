package sock_test

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kernel/kerneltest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/sock/socktest"
)

// Each option is set through the package and read back with a getsockopt
// whose level and name the table states independently, so a setter with the
// wrong level or name fails (the kernel refuses or the read-back differs).
func TestSetOptions(t *testing.T) {
	privtest.Root(t) // raising SO_BUSY_POLL and its budget, SO_PREFER_BUSY_POLL need CAP_NET_ADMIN
	tests := []struct {
		name       string
		set        func(sock.FD) error
		level, opt int
		want       int
	}{
		{"TCP_NODELAY", func(fd sock.FD) error { return sock.SetNoDelay(fd, true) }, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		// TCP_QUICKACK reads back as "not in delayed-ACK mode".
		{"TCP_QUICKACK off", func(fd sock.FD) error { return sock.SetQuickAck(fd, false) }, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0},
		{"TCP_QUICKACK on", func(fd sock.FD) error {
			if err := sock.SetQuickAck(fd, false); err != nil {
				return err
			}
			return sock.SetQuickAck(fd, true)
		}, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1},
		{"SO_BUSY_POLL", func(fd sock.FD) error { return sock.SetBusyPoll(fd, 50*time.Microsecond+999*time.Nanosecond) }, unix.SOL_SOCKET, unix.SO_BUSY_POLL, 50},
		{"SO_PREFER_BUSY_POLL", func(fd sock.FD) error { return sock.SetPreferBusyPoll(fd, true) }, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, 1},
		{"SO_ZEROCOPY", func(fd sock.FD) error { return sock.SetZerocopy(fd, true) }, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1},
		{"SO_REUSEADDR", func(fd sock.FD) error { return sock.SetReuseAddr(fd, true) }, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1},
		{"SO_REUSEPORT", func(fd sock.FD) error { return sock.SetReusePort(fd, true) }, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
		{"SO_RCVLOWAT", func(fd sock.FD) error { return sock.SetRecvLowat(fd, 100) }, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 100},
		// The kernel keeps twice the requested buffer size.
		{"SO_RCVBUF", func(fd sock.FD) error { return sock.SetRecvBuffer(fd, 32768) }, unix.SOL_SOCKET, unix.SO_RCVBUF, 65536},
		{"SO_SNDBUF", func(fd sock.FD) error { return sock.SetSendBuffer(fd, 32768) }, unix.SOL_SOCKET, unix.SO_SNDBUF, 65536},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, _ := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
			if err := tt.set(client); err != nil {
				t.Fatal(err)
			}
			got, err := unix.GetsockoptInt(int(client), tt.level, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("read back %d, want %d", got, tt.want)
			}
		})
	}
}

// The kernel has no getsockopt for SO_BUSY_POLL_BUDGET (ENOPROTOOPT, as of
// Linux 6.18), so the option shows it reached its handler by that handler's
// own answers: a budget within 0..65535 is taken, one above is EINVAL.
func TestSetBusyPollBudget(t *testing.T) {
	privtest.Root(t) // raising the budget needs CAP_NET_ADMIN
	client, _ := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
	if err := sock.SetBusyPollBudget(client, 16); err != nil {
		t.Fatal(err)
	}
	if err := sock.SetBusyPollBudget(client, 1<<16); !errors.Is(err, unix.EINVAL) {
		t.Errorf("budget 65536: %v, want EINVAL", err)
	}
}

func TestBufferGetters(t *testing.T) {
	client, _ := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
	for _, tt := range []struct {
		name string
		set  func(sock.FD, int) error
		get  func(sock.FD) (int, error)
	}{
		{"receive", sock.SetRecvBuffer, sock.RecvBuffer},
		{"send", sock.SetSendBuffer, sock.SendBuffer},
	} {
		if err := tt.set(client, 20000); err != nil {
			t.Fatal(err)
		}
		got, err := tt.get(client)
		if err != nil {
			t.Fatal(err)
		}
		if got != 40000 {
			t.Errorf("%s buffer after setting 20000: %d, want the doubled 40000", tt.name, got)
		}
	}
}

// Over loopback no NAPI context delivers packets, so SO_INCOMING_NAPI_ID is
// 0: the baseline a busy poll experiment reports as "not engaged".
func TestIncomingOnLoopback(t *testing.T) {
	lo := socktest.Loopback(t, 4)
	fresh, err := sock.Listen(sock.UDP, netip.AddrPortFrom(lo, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	cpu, err := sock.IncomingCPU(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if cpu != -1 {
		t.Errorf("SO_INCOMING_CPU of a socket that never received: %d, want -1", cpu)
	}
	client, server := socktest.Pair(t, sock.TCP, lo)
	if _, err := sock.WriteFull(client, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := sock.ReadFull(server, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	id, err := sock.IncomingNAPIID(server)
	if errors.Is(err, unix.ENOPROTOOPT) {
		privtest.Unavailable(t, "kernel without CONFIG_NET_RX_BUSY_POLL: "+err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	if id != 0 {
		t.Errorf("SO_INCOMING_NAPI_ID over loopback = %d, want 0", id)
	}
	cpu, err = sock.IncomingCPU(server)
	if err != nil {
		t.Fatal(err)
	}
	if cpu < 0 || cpu >= runtime.NumCPU() {
		t.Errorf("SO_INCOMING_CPU after receiving = %d, want a CPU below %d", cpu, runtime.NumCPU())
	}
}

// Loopback copies MSG_ZEROCOPY data anyway, so every completion there must
// carry SO_EE_CODE_ZEROCOPY_COPIED.
func TestZerocopyCopiedOnLoopback(t *testing.T) {
	const sends, size = 4, 4096
	for _, tt := range []struct {
		network sock.Network
		version int
	}{
		{sock.TCP, 4}, {sock.TCP, 6}, {sock.UDP, 4}, {sock.UDP, 6},
	} {
		t.Run(fmt.Sprintf("%s%d", tt.network, tt.version), func(t *testing.T) {
			// Nobody reads: sends*size fits the receiver's buffer, and
			// TCP acknowledges (which completes the sends) regardless.
			client, _ := socktest.Pair(t, tt.network, socktest.Loopback(t, tt.version))
			if err := sock.SetZerocopy(client, true); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, size)
			for range sends {
				if n, err := sock.Send(client, buf, unix.MSG_ZEROCOPY); err != nil || n != size {
					t.Fatalf("send: %d, %v", n, err)
				}
			}
			var done []sock.Completion
			next := uint32(0)
			for next < sends {
				// The error queue fills once the sent data is released; POLLERR
				// says so. The timeout only keeps a broken kernel from hanging
				// the test.
				p := sock.Poll{{Fd: int32(client)}}
				if n, err := p.Wait(10 * time.Second); err != nil || n == 0 {
					t.Fatalf("waiting for completions after %v: %d, %v", done, n, err)
				}
				var err error
				done, err = sock.ReadZerocopyCompletions(client, done[:0])
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range done {
					if c.Lo != next {
						t.Fatalf("completion %+v, want one starting at %d", c, next)
					}
					if !c.Copied {
						t.Errorf("completion %+v not flagged COPIED over loopback", c)
					}
					next += c.Sends()
				}
			}
			if next != sends {
				t.Errorf("completions cover %d sends, want %d", next, sends)
			}
			if more, err := sock.ReadZerocopyCompletions(client, nil); err != nil || len(more) != 0 {
				t.Errorf("with the queue drained: %v, %v; want nothing", more, err)
			}
		})
	}
}

func TestPinThread(t *testing.T) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error)
	go func() {
		// Never unlocked: the pinned thread ends with this goroutine.
		runtime.LockOSThread()
		errc <- func() error {
			for cpu := range runtime.NumCPU() {
				if !allowed.IsSet(cpu) {
					continue
				}
				if err := sock.PinThread(cpu); err != nil {
					return err
				}
				if got := sock.CurrentCPU(); got != cpu {
					return fmt.Errorf("pinned to CPU %d, running on %d", cpu, got)
				}
			}
			for _, cpu := range []int{-1, 1 << 20} {
				if err := sock.PinThread(cpu); err == nil {
					return fmt.Errorf("PinThread(%d) succeeded", cpu)
				}
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestEpollBusyPollParams(t *testing.T) {
	ep, err := sock.NewEpoll()
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	want := sock.BusyPollParams{Timeout: 50 * time.Microsecond, Budget: 16, Prefer: true}
	err = ep.SetBusyPollParams(want)
	kerneltest.Skip(t, err)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ep.BusyPollParams()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	if err := ep.SetBusyPollParams(sock.BusyPollParams{Timeout: -time.Microsecond}); err == nil {
		t.Error("a negative busy poll timeout was accepted")
	}
}

// The data path must not allocate, or the garbage collector would become
// part of every latency measured.
func TestNoAllocations(t *testing.T) {
	lo := socktest.Loopback(t, 4)
	client, server := socktest.Pair(t, sock.TCP, lo)
	socktest.Echo(t, sock.TCP, server)
	idle, _ := socktest.Pair(t, sock.TCP, lo, sock.NonBlock)
	udpServer, err := sock.Listen(sock.UDP, netip.AddrPortFrom(lo, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udpServer.Close() })
	socktest.Echo(t, sock.UDP, udpServer)
	udpAddr, err := sock.LocalAddr(udpServer)
	if err != nil {
		t.Fatal(err)
	}
	udpClient, err := sock.Listen(sock.UDP, netip.AddrPortFrom(lo, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udpClient.Close() })
	ep, err := sock.NewEpoll()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	if err := ep.Add(idle, unix.EPOLLIN); err != nil {
		t.Fatal(err)
	}
	events := make([]unix.EpollEvent, 8)
	var p sock.Poll
	p.Add(idle, unix.POLLIN)
	var s sock.Select
	if err := s.Add(idle); err != nil {
		t.Fatal(err)
	}
	msg, buf := make([]byte, 64), make([]byte, 64)
	var completions []sock.Completion

	for _, tt := range []struct {
		name string
		run  func() error
	}{
		{"WriteFull+ReadFull", func() error {
			if _, err := sock.WriteFull(client, msg); err != nil {
				return err
			}
			_, err := sock.ReadFull(client, buf)
			return err
		}},
		{"Send+Recv", func() error {
			if _, err := sock.Send(client, msg, 0); err != nil {
				return err
			}
			_, err := sock.Recv(client, buf, unix.MSG_WAITALL)
			return err
		}},
		{"SendTo+RecvFrom", func() error {
			if _, err := sock.SendTo(udpClient, msg, 0, udpAddr); err != nil {
				return err
			}
			_, _, err := sock.RecvFrom(udpClient, buf, 0)
			return err
		}},
		{"Recv EAGAIN", func() error {
			if _, err := sock.Recv(idle, buf, 0); !errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("Recv on an idle socket: %v, want EAGAIN", err)
			}
			return nil
		}},
		{"Epoll.Wait", func() error { _, err := ep.Wait(events, 0); return err }},
		{"Poll.Wait", func() error { _, err := p.Wait(0); return err }},
		{"Select.Wait", func() error { _, err := s.Wait(0); return err }},
		{"ReadZerocopyCompletions", func() error {
			var err error
			completions, err = sock.ReadZerocopyCompletions(idle, completions[:0])
			return err
		}},
	} {
		var runErr error
		allocs := testing.AllocsPerRun(100, func() {
			if err := tt.run(); err != nil && runErr == nil {
				runErr = err
			}
		})
		if runErr != nil {
			t.Errorf("%s: %v", tt.name, runErr)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per run, want 0", tt.name, allocs)
		}
	}
}
