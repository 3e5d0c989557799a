package sock_test

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/sock/socktest"
)

// BenchmarkPingPong measures one 64-byte TCP round trip over loopback to an
// echo peer that uses blocking read and write on its own thread; ns/op is the
// round-trip time as the client's receive mechanism sees it.
func BenchmarkPingPong(b *testing.B) {
	for _, bm := range []struct {
		name  string
		flags []sock.Flag
		round func(b *testing.B, fd sock.FD, ep *sock.Epoll, events []unix.EpollEvent, msg, buf []byte)
	}{
		{"blocking", nil, func(b *testing.B, fd sock.FD, _ *sock.Epoll, _ []unix.EpollEvent, msg, buf []byte) {
			if _, err := sock.WriteFull(fd, msg); err != nil {
				b.Fatal(err)
			}
			if _, err := sock.ReadFull(fd, buf); err != nil {
				b.Fatal(err)
			}
		}},
		{"nonblocking-spin", []sock.Flag{sock.NonBlock}, func(b *testing.B, fd sock.FD, _ *sock.Epoll, _ []unix.EpollEvent, msg, buf []byte) {
			if _, err := sock.WriteFull(fd, msg); err != nil {
				b.Fatal(err)
			}
			for got := 0; got < len(buf); {
				n, err := sock.ReadFull(fd, buf[got:])
				got += n
				if err != nil && !errors.Is(err, unix.EAGAIN) {
					b.Fatal(err)
				}
			}
		}},
		{"epoll", []sock.Flag{sock.NonBlock}, func(b *testing.B, fd sock.FD, ep *sock.Epoll, events []unix.EpollEvent, msg, buf []byte) {
			if _, err := sock.WriteFull(fd, msg); err != nil {
				b.Fatal(err)
			}
			for got := 0; got < len(buf); {
				if _, err := ep.Wait(events, -1); err != nil {
					b.Fatal(err)
				}
				n, err := sock.ReadFull(fd, buf[got:])
				got += n
				if err != nil && !errors.Is(err, unix.EAGAIN) {
					b.Fatal(err)
				}
			}
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			client, server := socktest.Pair(b, sock.TCP, socktest.Loopback(b, 4), bm.flags...)
			if err := sock.SetNoDelay(client, true); err != nil {
				b.Fatal(err)
			}
			if err := sock.SetNoDelay(server, true); err != nil {
				b.Fatal(err)
			}
			socktest.Echo(b, sock.TCP, server)
			ep, err := sock.NewEpoll()
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ep.Close() })
			if err := ep.Add(client, unix.EPOLLIN); err != nil {
				b.Fatal(err)
			}
			events := make([]unix.EpollEvent, 1)
			msg, buf := make([]byte, 64), make([]byte, 64)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			for b.Loop() {
				bm.round(b, client, ep, events, msg, buf)
			}
		})
	}
}
