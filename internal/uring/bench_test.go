package uring_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/sock/socktest"
	"github.com/labctl/labctl/internal/uring"
)

// BenchmarkPingPong measures one 64-byte TCP round trip over loopback to an
// echo peer that uses blocking read and write on its own thread (as
// internal/sock's BenchmarkPingPong does), the client sending and
// receiving through the ring. enters/op is io_uring_enter calls per round
// trip: 1 when one call submits the send and receive and waits, less with
// SQPOLL and a spinning client.
func BenchmarkPingPong(b *testing.B) {
	for _, bm := range []struct {
		name string
		opts []uring.Option
		mode waitMode
	}{
		{"uring", nil, submitAndWait},
		{"uring-sqpoll-enter", []uring.Option{uring.WithSQPoll(time.Second)}, submitAndWait},
		{"uring-sqpoll-spin", []uring.Option{uring.WithSQPoll(time.Second)}, submitSpin},
	} {
		b.Run(bm.name, func(b *testing.B) {
			r := newRing(b, 8, bm.opts...)
			client, server := socktest.Pair(b, sock.TCP, socktest.Loopback(b, 4))
			if err := sock.SetNoDelay(client, true); err != nil {
				b.Fatal(err)
			}
			if err := sock.SetNoDelay(server, true); err != nil {
				b.Fatal(err)
			}
			socktest.Echo(b, sock.TCP, server)
			msg, buf := make([]byte, 64), make([]byte, 64)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			start := r.Enters()
			for b.Loop() {
				echo(b, r, client, msg, buf, bm.mode)
			}
			b.ReportMetric(float64(r.Enters()-start)/float64(b.N), "enters/op")
		})
	}
}
