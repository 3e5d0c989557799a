package netns

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/internal/privtest"
)

// BenchmarkUpDownLinear builds and removes Mininet's linear,N with Linux
// bridges (N nodes each on its own bridge, the bridges chained: N bridges,
// N node-bridge veths, N-1 bridge-bridge veths) and reports the seconds up
// and down take.
//
// Down returns once the namespaces are unmounted and unlinked; the kernel
// frees them and their devices afterwards, in a workqueue (cleanup_net)
// that holds the RTNL for long stretches and would slow the next
// iteration's up. So after each down the benchmark waits, outside up-s and
// down-s, until the RTNL has been free for two seconds, and reports as
// rtnl-busy-s how long after down's return it stayed busy: how long the
// kernel keeps working on a removed lab.
func BenchmarkUpDownLinear(b *testing.B) {
	privtest.Root(b)
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			ctx := context.Background()
			waitRTNLQuiet(b)
			b.ResetTimer()
			var up, down, busy time.Duration
			for i := 0; i < b.N; i++ {
				lab := uniqueLab(b)
				p := linearPlan(lab, n)
				j, err := OpenJournal(filepath.Join(b.TempDir(), "journal"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { Destroy(ctx, lab, nil, Options{}) })
				start := time.Now()
				if _, err := Apply(ctx, nil, p, Options{Journal: j}); err != nil {
					b.Fatal(err)
				}
				up += time.Since(start)
				start = time.Now()
				if _, err := Destroy(ctx, lab, p, Options{Journal: j}); err != nil {
					b.Fatal(err)
				}
				down += time.Since(start)
				j.Remove()
				busy += waitRTNLQuiet(b)
			}
			b.ReportMetric(up.Seconds()/float64(b.N), "up-s/op")
			b.ReportMetric(down.Seconds()/float64(b.N), "down-s/op")
			b.ReportMetric(busy.Seconds()/float64(b.N), "rtnl-busy-s/op")
		})
	}
}

// waitRTNLQuiet waits until a link dump of the host namespace, which needs
// the RTNL, has finished within 5ms every 50ms for two seconds, and
// returns how long the RTNL stayed busy before that.
func waitRTNLQuiet(b *testing.B) time.Duration {
	b.Helper()
	time.Sleep(100 * time.Millisecond) // let the kernel's cleanup start
	start := time.Now()
	quiet := start
	for time.Since(quiet) < 2*time.Second {
		t := time.Now()
		if _, err := netlink.LinkList(); err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			b.Fatal(err)
		}
		if time.Since(t) > 5*time.Millisecond {
			quiet = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return quiet.Sub(start) + 100*time.Millisecond
}
