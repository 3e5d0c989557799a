// Package socktest sets up loopback sockets for the tests and benchmarks of
// code built on package sock: connected pairs and an echo peer that runs on
// its own locked OS thread. Everything it creates is removed in t.Cleanup.
package socktest

import (
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/sock"
)

// Loopback returns the loopback address of IP version 4 or 6 (127.0.0.1 or
// ::1). A host without IPv6 on lo makes the test unavailable.
func Loopback(t testing.TB, version int) netip.Addr {
	t.Helper()
	switch version {
	case 4:
		return netip.MustParseAddr("127.0.0.1")
	case 6:
		ip := netip.IPv6Loopback()
		fd, err := sock.Listen(sock.UDP, netip.AddrPortFrom(ip, 0), 0)
		if err != nil {
			privtest.Unavailable(t, "IPv6 loopback ::1: "+err.Error())
		}
		fd.Close()
		return ip
	default:
		t.Fatalf("IP version %d is neither 4 nor 6", version)
		return netip.Addr{}
	}
}

// Pair returns two connected sockets over ip (a loopback address): for TCP
// the client from Connect and the server from Accept; for UDP the client
// connected to the server, which is bound but not connected (it answers with
// SendTo). flags apply to the client. Both are closed at cleanup.
func Pair(t testing.TB, network sock.Network, ip netip.Addr, flags ...sock.Flag) (client, server sock.FD) {
	t.Helper()
	ln, err := sock.Listen(network, netip.AddrPortFrom(ip, 0), 1)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := sock.LocalAddr(ln)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	client, err = sock.Connect(network, addr, flags...)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if network == sock.UDP {
		t.Cleanup(func() { ln.Close() })
		return client, ln
	}
	defer ln.Close()
	server, err = sock.Accept(ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// Echo serves fd, a blocking server socket from Pair, on a goroutine locked to
// its own OS thread: over TCP it writes back whatever it reads until the peer
// shuts down; over UDP it returns every datagram to its sender. An error
// fails t. At cleanup it shuts fd down for reading, which wakes a blocked
// receive (for an unconnected UDP socket too: inet_shutdown marks the socket
// and wakes its waiters before it reports ENOTCONN), and waits for the
// goroutine to end.
func Echo(t testing.TB, network sock.Network, fd sock.FD) {
	t.Helper()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		if err := echo(network, fd, &stop); err != nil && !stop.Load() {
			t.Errorf("echo on fd %d: %v", fd, err)
		}
	}()
	t.Cleanup(func() {
		stop.Store(true)
		unix.Shutdown(int(fd), unix.SHUT_RD)
		wg.Wait()
	})
}

func echo(network sock.Network, fd sock.FD, stop *atomic.Bool) error {
	buf := make([]byte, 1<<16)
	for !stop.Load() {
		if network == sock.UDP {
			n, from, err := sock.RecvFrom(fd, buf, 0)
			if err != nil || stop.Load() {
				return err
			}
			if _, err := sock.SendTo(fd, buf[:n], 0, from); err != nil {
				return err
			}
			continue
		}
		n, err := sock.Recv(fd, buf, 0)
		if err != nil || n == 0 {
			return err
		}
		if _, err := sock.WriteFull(fd, buf[:n]); err != nil {
			return err
		}
	}
	return nil
}
