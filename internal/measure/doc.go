// Package measure holds the numbers every labctl experiment reports: latency
// histograms with percentiles up to p99.99 (Histogram, Percentiles), CPU time
// and context switches of a thread or process (Usage), the spread of repeated
// runs and whether two variants really differ (Spread, Compare), and
// straight-line fits (LinearFit).
//
// Everything here is pure Go except ThreadUsage and ProcessUsage, which call
// getrusage(2). A typical measured loop:
//
//	runtime.LockOSThread()
//	defer runtime.UnlockOSThread()
//	var h measure.Histogram
//	before, _ := measure.ThreadUsage()
//	for range n {
//		t0 := time.Now()
//		// send, receive (raw syscalls)
//		h.Record(time.Since(t0))
//	}
//	after, _ := measure.ThreadUsage()
//	perMsg := after.Sub(before).PerOp(int64(n))
//	summary := h.Summary()
//
// Histograms travel between agents as HistogramData (JSON or protobuf) and
// merge on the other side. Kernel counters (softirqs, netstat, slab, ...) live
// in package kstat.
package measure
