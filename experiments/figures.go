package experiments

// Figure is a plot that a report draws from a result: pure data that an
// experiment declares (Figured) and package reports renders. Metrics are
// named as in a result's summary, "role.metric" ("client.rtt_p50_ns").
// Every figure shows the spread across repeats, never a bare median.
type Figure struct {
	Kind  FigureKind
	Title string
	// Caption says what to look for, under the plot.
	Caption string
	// Role is the role whose latency histograms a LatencyCDF draws.
	Role string
	// Metrics are the bars of Bars (one per variant and metric), or the
	// y of Sweep and Fit (one line each).
	Metrics []string
	// Variants, a regular expression, selects the variants drawn (all when
	// empty). For Sweep and Fit it must have the named group "x": the
	// part of a variant's name that is its position on the x axis (a
	// number or a size, "4KiB", unless X names a metric); a variant's line
	// is its name without that part, or the group "series" when there is
	// one.
	Variants string
	// X is the metric whose median over a variant's repeats places it on
	// the x axis of Sweep and Fit ("client.offered_per_s"); empty: the
	// "x" group of Variants.
	X string
	// XLabel and YLabel name the axes; Scale multiplies y for display
	// (1e-3 turns nanoseconds into microseconds; 0 means 1).
	XLabel, YLabel string
	Scale          float64
	// LogX draws x on a log scale (message sizes, rates).
	LogX bool
	// Baseline is what the group "line" of Variants reads in the line a
	// Sweep's other lines are set against: the caption names the x from
	// which each stays below it.
	Baseline string
}

// FigureKind is what a Figure draws.
type FigureKind int

// Figure kinds.
const (
	// LatencyCDF: the distribution of Role's latency per variant, on a log
	// axis, the band spanning the repeats, p50/p99/p99.9 marked.
	LatencyCDF FigureKind = iota + 1
	// Bars: each metric per variant, the bar at the median of the repeats
	// and a line over their range.
	Bars
	// Sweep: each metric over x per series, median and range.
	Sweep
	// Fit: the metric against x with every repeat a point, the
	// least-squares line and its R².
	Fit
)

// Figured is an experiment that says which figures show its results best.
// Reports of experiments that do not implement it draw a latency CDF where
// the reports hold latency histograms and bars of the spec's summary
// metrics.
type Figured interface {
	Figures() []Figure
}

// RoundTrips are the figures of a request-response experiment: the
// client's round-trip time distribution, its percentiles, and the CPU
// each side spent per message.
func RoundTrips() []Figure {
	return []Figure{
		{Kind: LatencyCDF, Title: "Round-trip time", Role: "client"},
		{Kind: Bars, Title: "Round-trip time: p50, p99, p99.9", Metrics: []string{"client.rtt_p50_ns", "client.rtt_p99_ns", "client.rtt_p999_ns"},
			YLabel: "µs", Scale: 1e-3},
		{Kind: Bars, Title: "CPU per message", Metrics: []string{"client.cpu_ns_per_msg", "server.cpu_ns_per_msg"},
			YLabel: "µs of CPU (user + system) per message", Scale: 1e-3},
	}
}
