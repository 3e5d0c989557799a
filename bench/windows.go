package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/pktpath"
	"github.com/labctl/labctl/topologies"
)

// Windows of one run: the tracer is attached for one window and detached
// for the next, and the first windowSettle of each window is left out (the
// attach or detach itself, and packets sampled before it).
const (
	window       = 500 * time.Millisecond
	windowSettle = 50 * time.Millisecond
)

// tracerInOneRun measures what the packet tracer costs a TCP ping-pong
// between the lab's nodes n1 and n2 within one run: sockperf ping-pong
// (64 B, every round trip logged with its CLOCK_MONOTONIC send time) runs
// for seconds while the tracer, started with opts, is attached and
// detached every window. Each attached window's p50 and p99 are compared
// with the mean of the detached windows either side, which cancels any
// drift slower than a window: between runs this VM drifts by ±15%. The
// tracer's reader runs throughout, so its polling is in both windows.
func tracerInOneRun(ctx context.Context, opts pktpath.Options, lab string, seconds int) (p50, p99 figure, st pktpath.Stats, err error) {
	client, server := topologies.Namespace(lab, "n1"), topologies.Namespace(lab, "n2")
	dir, err := os.MkdirTemp("", "bench-windows")
	if err != nil {
		return nil, nil, st, err
	}
	defer os.RemoveAll(dir)
	t, err := pktpath.Start(opts)
	if err != nil {
		return nil, nil, st, err
	}
	defer t.Close()
	if err := t.SetAttached(false); err != nil {
		return nil, nil, st, err
	}
	const addr, port = "198.18.0.2", "11112"
	stop, err := sockperfServer(ctx, server, nil, addr, port)
	if err != nil {
		return nil, nil, st, err
	}
	defer stop()
	log := filepath.Join(dir, "full.csv")
	var out bytes.Buffer
	cli := exec.CommandContext(ctx, "ip", "netns", "exec", client, "sockperf", "ping-pong", "--tcp", "-m", "64",
		"-i", addr, "-p", port, "-t", strconv.Itoa(seconds), "--no-rdtsc", "--full-log", log)
	cli.Stdout, cli.Stderr = &out, &out
	if err := cli.Start(); err != nil {
		return nil, nil, st, err
	}
	done := make(chan error, 1)
	go func() { done <- cli.Wait() }()
	tick := time.NewTicker(window)
	defer tick.Stop()
	var flips []flip
	for on := false; ; {
		select {
		case err := <-done:
			if err != nil {
				return nil, nil, st, fmt.Errorf("sockperf: %v\n%s", err, out.Bytes())
			}
			st = t.Stats()
			trips, err := readFullLog(log)
			if err != nil {
				return nil, nil, st, err
			}
			ws := windows(flips, trips, windowSettle.Nanoseconds(), 1000)
			return neighbourRatios(ws, func(w stats) float64 { return w.p50 }),
				neighbourRatios(ws, func(w stats) float64 { return w.p99 }), st, nil
		case <-tick.C:
			on = !on
			if on {
				// What the last attached window traced goes, as a run
				// takes its steps' packets: every packet kept for two
				// minutes would be gigabytes for the GC to walk. It goes
				// as an attached window opens, so its cost, if any, is
				// counted against tracing.
				t.Take(time.Time{}, time.Now())
			}
			if err := t.SetAttached(on); err != nil {
				_ = cli.Process.Kill()
				<-done
				return nil, nil, st, err
			}
			flips = append(flips, flip{monotonic(), on})
		}
	}
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// flip is when the tracer was attached (on) or detached, in
// CLOCK_MONOTONIC ns.
type flip struct {
	at int64
	on bool
}

// roundTrip is one round trip: sent at, CLOCK_MONOTONIC ns, taking rtt ns.
type roundTrip struct {
	at, rtt int64
}

// stats are one window's round trips; a window with too few has none
// (n 0).
type stats struct {
	on       bool
	n        int
	p50, p99 float64 // ns
}

// windows files the round trips (in order of sending) under the windows
// the flips open, each but the last closed by the next flip, with the
// first settle ns of each left out. A window with fewer than minN round
// trips has n 0.
func windows(flips []flip, trips []roundTrip, settle int64, minN int) []stats {
	out := make([]stats, len(flips))
	j := 0
	for i, f := range flips {
		out[i].on = f.on
		end := int64(1<<63 - 1)
		if i+1 < len(flips) {
			end = flips[i+1].at
		}
		var rtts []int64
		for ; j < len(trips) && trips[j].at < end; j++ {
			if trips[j].at >= f.at+settle {
				rtts = append(rtts, trips[j].rtt)
			}
		}
		if len(rtts) < minN {
			continue
		}
		slices.Sort(rtts)
		out[i].n = len(rtts)
		out[i].p50 = float64(rtts[len(rtts)/2])
		out[i].p99 = float64(rtts[len(rtts)*99/100])
	}
	return out
}

// neighbourRatios compares each attached window's q with the mean of the
// detached windows either side of it.
func neighbourRatios(ws []stats, q func(stats) float64) figure {
	var r figure
	for i := 1; i+1 < len(ws); i++ {
		prev, w, next := ws[i-1], ws[i], ws[i+1]
		if !w.on || prev.on || next.on || w.n == 0 || prev.n == 0 || next.n == 0 {
			continue
		}
		r = append(r, q(w)/((q(prev)+q(next))/2))
	}
	return r
}

// readFullLog reads sockperf's --full-log: after its header, one line a
// round trip, "packet, txTime(sec), rxTime(sec), latency(usec)", times in
// seconds with 9 decimals (CLOCK_MONOTONIC with --no-rdtsc).
func readFullLog(path string) ([]roundTrip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var trips []roundTrip
	header := false
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.HasPrefix(text, "packet,") {
			header = true
			continue
		}
		if !header || strings.HasPrefix(text, "---") || text == "" {
			continue
		}
		fields := strings.Split(text, ",")
		if len(fields) < 3 {
			return nil, fmt.Errorf("%s:%d: want packet, txTime, rxTime: %q", path, line, text)
		}
		tx, err1 := nanos(fields[1])
		rx, err2 := nanos(fields[2])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s:%d: times: %q", path, line, text)
		}
		trips = append(trips, roundTrip{at: tx, rtt: rx - tx})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(trips) == 0 {
		return nil, fmt.Errorf("%s: no round trips", path)
	}
	return trips, nil
}

// nanos reads "seconds.fraction" exactly (a float64 of 40000.123456789
// keeps only some 100 ns of the fraction).
func nanos(s string) (int64, error) {
	whole, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, err
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	frac += strings.Repeat("0", 9-len(frac))
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, err
	}
	return sec*1e9 + ns, nil
}
