package sock_test

import (
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/sock/socktest"
)

func hot(t *testing.T, fd sock.FD) sock.Hot {
	t.Helper()
	h, err := sock.NewHot(fd)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHotRefusesNonBlocking(t *testing.T) {
	client, _ := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4), sock.NonBlock)
	if _, err := sock.NewHot(client); err == nil {
		t.Error("NewHot accepted a non-blocking socket (its reads would spin)")
	}
}

// A round trip through hot sockets, then the peer's shutdown reads as EOF
// once the data is consumed, as with ReadFull.
func TestHotRoundTripAndEOF(t *testing.T) {
	client, server := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
	c, s := hot(t, client), hot(t, server)
	msg := []byte("ping-pong")
	if _, err := c.WriteFull(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := s.ReadFull(buf); err != nil || string(buf) != string(msg) {
		t.Fatalf("server read %q, %v; want %q", buf, err, msg)
	}
	if err := unix.Shutdown(int(client), unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReadFull(buf); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadFull after the peer's shutdown = %d, %v; want 0, EOF", n, err)
	}
}

// The hazard of raw calls: a goroutine blocked in one holds off a
// stop-the-world. While a hot read and a hot epoll wait wait for a peer that
// stays silent, a GC must still complete (bounded calls, yielding between
// them), and the waits must go on waiting rather than return.
func TestHotWaitsDoNotBlockGC(t *testing.T) {
	client, server := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
	ep, err := sock.NewEpoll()
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	if err := ep.Add(client, unix.EPOLLIN); err != nil {
		t.Fatal(err)
	}
	s := hot(t, server)
	read, wait := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		_, err := s.ReadFull(make([]byte, 1))
		read <- err
	}()
	go func() {
		runtime.LockOSThread()
		_, err := ep.WaitHot(make([]unix.EpollEvent, 1))
		wait <- err
	}()
	// Both are in the kernel, or about to be. A GC that cannot stop the
	// world hangs the whole test binary, its own -timeout alarm included;
	// go test kills it a minute after -timeout. Without the yields in the
	// retry loops, 20 GCs hang here.
	time.Sleep(50 * time.Millisecond)
	for range 20 {
		runtime.GC()
	}
	select {
	case err := <-read:
		t.Fatalf("hot read returned before any data: %v", err)
	case err := <-wait:
		t.Fatalf("hot epoll wait returned before any data: %v", err)
	default:
	}
	// Data for both: the server's read gets a byte, the client's socket
	// (watched by the epoll) gets one back.
	if _, err := sock.WriteFull(client, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Errorf("hot read: %v", err)
	}
	if _, err := s.WriteFull([]byte{2}); err != nil {
		t.Fatal(err)
	}
	if err := <-wait; err != nil {
		t.Errorf("hot epoll wait: %v", err)
	}
}

// The other hot waits of the measured loops: a datagram recv, poll and
// select, each waiting for a silent peer while GCs run; then each returns
// once its data is there.
func TestHotRecvPollSelectDoNotBlockGC(t *testing.T) {
	udpC, udpS := socktest.Pair(t, sock.UDP, socktest.Loopback(t, 4))
	tcpC, tcpS := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
	h := hot(t, udpS)
	var sel sock.Select
	if err := sel.Add(tcpS); err != nil {
		t.Fatal(err)
	}
	p := sock.Poll{{Fd: int32(tcpC), Events: unix.POLLIN}}
	done := make(chan string, 3)
	run := func(name string, fn func() error) {
		go func() {
			runtime.LockOSThread()
			if err := fn(); err != nil {
				done <- name + ": " + err.Error()
				return
			}
			done <- name
		}()
	}
	run("recv", func() error { _, err := h.Recv(make([]byte, 8)); return err })
	run("poll", func() error { _, err := p.WaitHot(); return err })
	run("select", func() error { _, err := sel.WaitHot(); return err })
	time.Sleep(50 * time.Millisecond)
	for range 20 {
		runtime.GC()
	}
	select {
	case what := <-done:
		t.Fatalf("%s returned before any data", what)
	default:
	}
	// A datagram for recv, a byte each way for poll (client) and select
	// (server).
	if _, err := sock.Send(udpC, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sock.WriteFull(tcpC, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := sock.WriteFull(tcpS, []byte{2}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 3 {
		select {
		case what := <-done:
			got[what] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v returned", got)
		}
	}
	if !got["recv"] || !got["poll"] || !got["select"] {
		t.Errorf("returned: %v", got)
	}
	// RecvWithin gives up after about its limit: three bounds of 20 ms,
	// each a socket timeout in jiffies, which may end up to a jiffy early
	// (the first jiffy is already under way: 4 ms at HZ=250, 10 at
	// HZ=100; CI saw 58.5 ms).
	const limit = 60 * time.Millisecond
	start := time.Now()
	if _, err := h.RecvWithin(make([]byte, 8), limit); err != unix.EAGAIN || time.Since(start) < limit/2 {
		t.Errorf("RecvWithin: %v after %v", err, time.Since(start))
	}
}
