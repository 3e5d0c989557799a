package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Round trips fall in the window their send time is in, after its settle;
// a window with too few has none; each attached window is compared with
// the mean of the detached ones either side, and only then.
func TestWindows(t *testing.T) {
	flips := []flip{{100, false}, {200, true}, {300, false}, {400, true}, {500, false}}
	var trips []roundTrip
	for at := int64(100); at < 600; at += 5 {
		rtt := int64(10)
		if at >= 200 && at < 300 || at >= 400 && at < 500 {
			rtt = 12 // attached
		}
		if at%100 < 10 {
			rtt = 1000 // in the settle: left out
		}
		trips = append(trips, roundTrip{at, rtt})
	}
	ws := windows(flips, trips, 10, 5)
	for i, w := range ws {
		if w.on != flips[i].on || w.n != 18 {
			t.Errorf("window %d: %+v, want on=%v with 18 round trips", i, w, flips[i].on)
		}
	}
	got := neighbourRatios(ws, func(s stats) float64 { return s.p50 })
	if !slices.Equal(got, figure{1.2, 1.2}) {
		t.Errorf("ratios %v, want [1.2 1.2]", got)
	}
	ws[2].n = 0 // a detached window with too few round trips
	if got := neighbourRatios(ws, func(s stats) float64 { return s.p50 }); len(got) != 0 {
		t.Errorf("ratios %v next to an empty window, want none", got)
	}
	if ws := windows(flips, trips, 10, 19); slices.ContainsFunc(ws, func(s stats) bool { return s.n != 0 }) {
		t.Errorf("windows below the minimum kept: %+v", ws)
	}
}

func TestReadFullLog(t *testing.T) {
	log := `sockperf: == version #3.7-no.git ==
------------------------------
packet, txTime(sec), rxTime(sec), latency(usec)
0, 36964.422923278, 36964.422952053, 14.388
1, 36964.4229521, 36964.42298, 14.247
------------------------------
`
	path := filepath.Join(t.TempDir(), "full.csv")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	trips, err := readFullLog(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []roundTrip{{36964422923278, 28775}, {36964422952100, 27900}}
	if !slices.Equal(trips, want) {
		t.Errorf("got %v, want %v", trips, want)
	}
	if err := os.WriteFile(path, []byte("packet, txTime(sec)\n0, x, 1.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readFullLog(path); err == nil {
		t.Error("a bad time read without an error")
	}
}
