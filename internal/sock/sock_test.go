package sock_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/sock/socktest"
)

// A waiter blocks until the client socket is readable, through one of the
// multiplexers; nil means the socket itself blocks or the reader spins.
type waiter func(t *testing.T) error

// ioModes are the ways the echo test reads its replies. Each one sets up its
// multiplexer on the client socket and returns how to wait for readability.
var ioModes = []struct {
	name  string
	flags []sock.Flag
	setup func(t *testing.T, fd sock.FD) waiter
}{
	{"blocking", nil, func(*testing.T, sock.FD) waiter { return nil }},
	{"nonblocking-spin", []sock.Flag{sock.NonBlock}, func(*testing.T, sock.FD) waiter { return nil }},
	{"epoll-level", []sock.Flag{sock.NonBlock}, func(t *testing.T, fd sock.FD) waiter { return epollWaiter(t, fd, unix.EPOLLIN) }},
	{"epoll-edge", []sock.Flag{sock.NonBlock}, func(t *testing.T, fd sock.FD) waiter { return epollWaiter(t, fd, unix.EPOLLIN|unix.EPOLLET) }},
	{"poll", []sock.Flag{sock.NonBlock}, func(t *testing.T, fd sock.FD) waiter {
		var p sock.Poll
		p.Add(fd, unix.POLLIN)
		return func(t *testing.T) error {
			if _, err := p.Wait(-1); err != nil {
				return err
			}
			if p[0].Revents&unix.POLLIN == 0 {
				return fmt.Errorf("poll woke with revents %#x, no POLLIN", p[0].Revents)
			}
			return nil
		}
	}},
	{"select", []sock.Flag{sock.NonBlock}, func(t *testing.T, fd sock.FD) waiter {
		var s sock.Select
		if err := s.Add(fd); err != nil {
			t.Fatal(err)
		}
		return func(t *testing.T) error {
			if _, err := s.Wait(-1); err != nil {
				return err
			}
			if !s.Ready(fd) {
				return fmt.Errorf("select woke without fd %d ready", fd)
			}
			return nil
		}
	}},
}

func epollWaiter(t *testing.T, fd sock.FD, events uint32) waiter {
	ep, err := sock.NewEpoll()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ep.Close() })
	if err := ep.Add(fd, events); err != nil {
		t.Fatal(err)
	}
	ev := make([]unix.EpollEvent, 4)
	return func(t *testing.T) error {
		n, err := ep.Wait(ev, -1)
		if err != nil {
			return err
		}
		if n != 1 || ev[0].Fd != int32(fd) || ev[0].Events&unix.EPOLLIN == 0 {
			return fmt.Errorf("epoll woke with %d events, first %+v; want EPOLLIN on fd %d", n, ev[0], fd)
		}
		return nil
	}
}

// send writes all of msg (one datagram over UDP), spinning while a
// non-blocking send buffer is full.
func send(t *testing.T, network sock.Network, fd sock.FD, msg []byte) {
	t.Helper()
	if network == sock.UDP {
		n, err := sock.Send(fd, msg, 0)
		if err != nil || n != len(msg) {
			t.Fatalf("send %d bytes: sent %d, %v", len(msg), n, err)
		}
		return
	}
	for sent := 0; sent < len(msg); {
		n, err := sock.WriteFull(fd, msg[sent:])
		sent += n
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			t.Fatal(err)
		}
	}
}

// receive fills buf (or reads one datagram of len(buf) bytes), waiting with
// wait whenever the socket has nothing queued.
func receive(t *testing.T, network sock.Network, fd sock.FD, buf []byte, wait waiter) {
	t.Helper()
	for got := 0; got < len(buf); {
		var n int
		var err error
		if network == sock.TCP {
			n, err = sock.ReadFull(fd, buf[got:])
		} else {
			n, err = sock.Recv(fd, buf, 0)
			if err == nil && n != len(buf) {
				t.Fatalf("datagram of %d bytes, want %d", n, len(buf))
			}
		}
		got += n
		switch {
		case errors.Is(err, unix.EAGAIN) && wait != nil:
			if err := wait(t); err != nil {
				t.Fatal(err)
			}
		case errors.Is(err, unix.EAGAIN): // spin
		case err != nil:
			t.Fatal(err)
		}
	}
}

func TestEcho(t *testing.T) {
	sizes := map[sock.Network][]int{
		sock.TCP: {1, 64, 1500, 1 << 16},
		sock.UDP: {1, 64, 1472, 9000},
	}
	for _, network := range []sock.Network{sock.TCP, sock.UDP} {
		for _, version := range []int{4, 6} {
			for _, mode := range ioModes {
				t.Run(fmt.Sprintf("%s%d/%s", network, version, mode.name), func(t *testing.T) {
					client, server := socktest.Pair(t, network, socktest.Loopback(t, version), mode.flags...)
					socktest.Echo(t, network, server)
					wait := mode.setup(t, client)
					for _, size := range sizes[network] {
						msg := bytes.Repeat([]byte{byte(size)}, size)
						msg[0] = 0xaa
						got := make([]byte, size)
						send(t, network, client, msg)
						receive(t, network, client, got, wait)
						if !bytes.Equal(got, msg) {
							t.Fatalf("echo of %d bytes came back different", size)
						}
					}
				})
			}
		}
	}
}

// Level triggering reports a socket as long as data is queued; edge
// triggering only when new data arrives.
func TestEpollTriggers(t *testing.T) {
	for _, tt := range []struct {
		name   string
		events uint32
		again  int // events reported by a second wait after a partial read
	}{
		{"level", unix.EPOLLIN, 1},
		{"edge", unix.EPOLLIN | unix.EPOLLET, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4), sock.NonBlock)
			ep, err := sock.NewEpoll()
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			if err := ep.Add(client, tt.events); err != nil {
				t.Fatal(err)
			}
			if _, err := sock.WriteFull(server, []byte("ab")); err != nil {
				t.Fatal(err)
			}
			ev := make([]unix.EpollEvent, 1)
			if n, err := ep.Wait(ev, -1); err != nil || n != 1 {
				t.Fatalf("first wait: %d events, %v", n, err)
			}
			if _, err := sock.ReadFull(client, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			n, err := ep.Wait(ev, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.again {
				t.Errorf("with one byte still queued, a second wait reports %d events, want %d", n, tt.again)
			}
			if err := ep.Mod(client, unix.EPOLLOUT); err != nil {
				t.Fatal(err)
			}
			if n, err := ep.Wait(ev, 0); err != nil || n != 1 || ev[0].Events&unix.EPOLLOUT == 0 {
				t.Errorf("after Mod to EPOLLOUT: %d events %+v, %v; want EPOLLOUT", n, ev[0], err)
			}
			if err := ep.Del(client); err != nil {
				t.Fatal(err)
			}
			if n, err := ep.Wait(ev, 0); err != nil || n != 0 {
				t.Errorf("after Del: %d events, %v; want none", n, err)
			}
		})
	}
}

func TestSelectLimit(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur <= unix.FD_SETSIZE {
		privtest.Unavailable(t, fmt.Sprintf("RLIMIT_NOFILE %d leaves no descriptor above FD_SETSIZE", rl.Cur))
	}
	high, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, unix.FD_SETSIZE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(high)
	var s sock.Select
	for _, fd := range []sock.FD{sock.FD(high), -1} {
		if err := s.Add(fd); !errors.Is(err, sock.ErrSelectLimit) {
			t.Errorf("Add(%d) = %v, want ErrSelectLimit", fd, err)
		}
	}
	if err := s.Add(unix.FD_SETSIZE - 1); err != nil {
		t.Errorf("Add(FD_SETSIZE-1) = %v, want success", err)
	}
}

func TestReadFullEOF(t *testing.T) {
	for _, tt := range []struct {
		name   string
		sent   []byte
		wantN  int
		wantIs error
	}{
		{"nothing sent", nil, 0, io.EOF},
		{"partial", []byte("abc"), 3, io.ErrUnexpectedEOF},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4))
			if len(tt.sent) > 0 {
				if _, err := sock.WriteFull(client, tt.sent); err != nil {
					t.Fatal(err)
				}
			}
			if err := unix.Shutdown(int(client), unix.SHUT_WR); err != nil {
				t.Fatal(err)
			}
			n, err := sock.ReadFull(server, make([]byte, 8))
			if n != tt.wantN || !errors.Is(err, tt.wantIs) {
				t.Errorf("ReadFull = %d, %v; want %d, %v", n, err, tt.wantN, tt.wantIs)
			}
		})
	}
}

// A non-blocking write into a full send buffer stops with EAGAIN after a
// partial write (claim C17, docs/claims.md).
func TestWriteFullEAGAIN(t *testing.T) {
	client, _ := socktest.Pair(t, sock.TCP, socktest.Loopback(t, 4), sock.NonBlock)
	if err := sock.SetSendBuffer(client, 4096); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16<<20)
	n, err := sock.WriteFull(client, buf)
	if !errors.Is(err, unix.EAGAIN) || n == 0 || n >= len(buf) {
		t.Errorf("WriteFull of %d bytes with nobody reading = %d, %v; want a partial write and EAGAIN", len(buf), n, err)
	}
	if n, err := sock.Recv(client, make([]byte, 1), 0); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("Recv with nothing queued = %d, %v; want EAGAIN", n, err)
	}
}

func TestOpenFlags(t *testing.T) {
	lo := socktest.Loopback(t, 4)
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(lo, 0), 4, sock.NonBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := sock.Accept(ln); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("Accept on an empty non-blocking listener = %v, want EAGAIN", err)
	}
	addr, err := sock.LocalAddr(ln)
	if err != nil {
		t.Fatal(err)
	}
	blocking, err := sock.Connect(sock.TCP, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer blocking.Close()
	nonblocking, err := sock.Connect(sock.TCP, addr, sock.NonBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer nonblocking.Close()
	var p sock.Poll
	p.Add(ln, unix.POLLIN)
	if _, err := p.Wait(-1); err != nil {
		t.Fatal(err)
	}
	accepted, err := sock.Accept(ln, sock.NonBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	for _, tt := range []struct {
		name     string
		fd       sock.FD
		nonblock bool
	}{
		{"listener", ln, true},
		{"connected", blocking, false},
		{"connected nonblocking", nonblocking, true},
		{"accepted nonblocking", accepted, true},
	} {
		fdFlags, err := unix.FcntlInt(uintptr(tt.fd), unix.F_GETFD, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fdFlags&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: no FD_CLOEXEC", tt.name)
		}
		flFlags, err := unix.FcntlInt(uintptr(tt.fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := flFlags&unix.O_NONBLOCK != 0; got != tt.nonblock {
			t.Errorf("%s: O_NONBLOCK %v, want %v", tt.name, got, tt.nonblock)
		}
	}
	if _, err := sock.PeerAddr(nonblocking); err != nil {
		t.Errorf("non-blocking Connect returned before the handshake: %v", err)
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := sock.Listen(sock.TCP, netip.AddrPortFrom(socktest.Loopback(t, 4), 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sock.LocalAddr(ln)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	for _, flags := range [][]sock.Flag{nil, {sock.NonBlock}} {
		fd, err := sock.Connect(sock.TCP, addr, flags...)
		if err == nil {
			fd.Close()
		}
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("Connect%v to a closed port = %v, want ECONNREFUSED", flags, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tt := range []struct {
		name    string
		network sock.Network
		addr    netip.AddrPort
	}{
		{"unknown network", "sctp", netip.MustParseAddrPort("127.0.0.1:0")},
		{"invalid address", sock.TCP, netip.AddrPort{}},
		{"unknown zone", sock.UDP, netip.MustParseAddrPort("[fe80::1%labctl-no-such-if]:0")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fd, err := sock.Listen(tt.network, tt.addr, 1)
			if err == nil {
				fd.Close()
				t.Fatalf("Listen(%q, %v) succeeded", tt.network, tt.addr)
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	for _, network := range []sock.Network{sock.TCP, sock.UDP} {
		for _, version := range []int{4, 6} {
			t.Run(fmt.Sprintf("%s%d", network, version), func(t *testing.T) {
				lo := socktest.Loopback(t, version)
				client, server := socktest.Pair(t, network, lo)
				serverAddr, err := sock.LocalAddr(server)
				if err != nil {
					t.Fatal(err)
				}
				peer, err := sock.PeerAddr(client)
				if err != nil {
					t.Fatal(err)
				}
				if peer != serverAddr || serverAddr.Addr() != lo || serverAddr.Port() == 0 {
					t.Errorf("client's peer %v, server's address %v; want equal, on %v with a port", peer, serverAddr, lo)
				}
				clientAddr, err := sock.LocalAddr(client)
				if err != nil {
					t.Fatal(err)
				}
				if clientAddr.Addr() != lo || clientAddr.Port() == 0 || clientAddr == serverAddr {
					t.Errorf("client address %v", clientAddr)
				}
			})
		}
	}
}
