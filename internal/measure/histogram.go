package measure

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Bucket layout (HDR style). Values below 2^(subBucketBits+1) ns get one
// bucket per nanosecond. Above that every power of two [2^k, 2^(k+1)) is cut
// into 2^subBucketBits equal buckets, so a bucket is at most 1/128 of its
// lower bound wide and the value reported for it (its midpoint) is within
// 1/256 ≈ 0.4% of every duration it holds.
//
// The index of value v is shift<<subBucketBits + v>>shift, where
// shift = max(0, bitlen(v) - (subBucketBits+1)); the layout is contiguous and
// monotonic, which is what lets the wire form carry bare bucket indexes.
const (
	subBucketBits  = 7
	subBucketCount = 1 << subBucketBits
	// maxTrackable is the largest duration with a bucket of its own: 2^37-1 ns
	// ≈ 137 s, the first power of two above the 100 s an experiment may wait.
	maxTrackable = 1<<37 - 1
	numBuckets   = (37-subBucketBits-1)<<subBucketBits + 2*subBucketCount
)

func bucketIndex(v uint64) int {
	shift := max(bits.Len64(v)-(subBucketBits+1), 0)
	return shift<<subBucketBits + int(v>>shift)
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (low, width uint64) {
	if i < 2*subBucketCount {
		return uint64(i), 1
	}
	shift := i>>subBucketBits - 1
	return uint64(i-shift<<subBucketBits) << shift, 1 << shift
}

// Histogram records durations with a relative error of at most 0.4% from
// 1 ns to 137 s (exact below 256 ns). Count, Min, Max and Mean are exact;
// quantiles and Stddev come from the buckets.
//
// The zero value is an empty histogram ready to use. A Histogram holds its
// buckets inline (32 KiB): pass it by pointer. It is not safe for concurrent
// use; give each measuring thread its own and Merge them afterwards.
type Histogram struct {
	count  uint64
	min    int64
	max    int64
	sum    int64
	counts [numBuckets]uint64
}

// Record adds one duration. It does not allocate and costs a few ns, so it can
// sit between two syscalls of a measured loop. Negative durations count as 0
// (a monotonic clock never produces them); durations above 137 s land in the
// top bucket, while Min, Max and Mean keep their exact value.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketIndex(uint64(min(v, maxTrackable)))]++
	if h.count == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.count++
	h.sum += v
}

// Merge adds every duration recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.count += o.count
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Reset empties h, for example after a warm-up phase.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count is the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.count }

// Min is the smallest recorded duration, 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max is the largest recorded duration, 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the exact arithmetic mean, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(math.Round(float64(h.sum) / float64(h.count)))
}

// Stddev is the population standard deviation around the exact mean, with
// every duration taken at its bucket's midpoint (so within 0.4% of the truth).
func (h *Histogram) Stddev() time.Duration {
	if h.count == 0 {
		return 0
	}
	mean := float64(h.sum) / float64(h.count)
	var ss float64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		x := float64(h.value(i)) - mean
		ss += float64(c) * x * x
	}
	return time.Duration(math.Round(math.Sqrt(ss / float64(h.count))))
}

// Quantile returns the duration below or at which a fraction q of the
// recorded durations fall (nearest rank): Quantile(0.99) is p99. q <= 0 gives
// Min and q >= 1 gives Max exactly; other quantiles are a bucket midpoint,
// kept within [Min, Max]. An empty histogram returns 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	switch {
	case h.count == 0:
		return 0
	case !(q > 0): // also catches NaN
		return time.Duration(h.min)
	case q >= 1:
		return time.Duration(h.max)
	}
	rank := max(uint64(math.Ceil(q*float64(h.count))), 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(h.value(i))
		}
	}
	return time.Duration(h.max) // unreachable: the counts add up to h.count
}

// value is the duration reported for bucket i: its midpoint, clamped to the
// exact Min and Max so that a single-valued histogram reports that value.
func (h *Histogram) value(i int) int64 {
	low, width := bucketRange(i)
	mid := int64(low + (width-1)/2)
	return min(max(mid, h.min), h.max)
}

// Percentiles is the summary every experiment reports for a latency
// distribution. All durations are nanoseconds on the wire.
type Percentiles struct {
	Count  uint64        `json:"count"`
	Min    time.Duration `json:"min_ns"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	P999   time.Duration `json:"p999_ns"`
	P9999  time.Duration `json:"p9999_ns"`
	Max    time.Duration `json:"max_ns"`
	Mean   time.Duration `json:"mean_ns"`
	Stddev time.Duration `json:"stddev_ns"`
}

// Summary computes the Percentiles of h. Note that p99.99 needs at least
// 10,000 durations to be more than the maximum of a smaller sample.
func (h *Histogram) Summary() Percentiles {
	return Percentiles{
		Count:  h.count,
		Min:    h.Min(),
		P50:    h.Quantile(0.50),
		P90:    h.Quantile(0.90),
		P99:    h.Quantile(0.99),
		P999:   h.Quantile(0.999),
		P9999:  h.Quantile(0.9999),
		Max:    h.Max(),
		Mean:   h.Mean(),
		Stddev: h.Stddev(),
	}
}

// String formats p on one line for logs, e.g.
// "n=1000 min=8µs p50=10µs p90=12µs p99=20µs p99.9=31µs p99.99=40µs max=41µs mean=10.5µs stddev=2.1µs".
func (p Percentiles) String() string {
	return fmt.Sprintf("n=%d min=%v p50=%v p90=%v p99=%v p99.9=%v p99.99=%v max=%v mean=%v stddev=%v",
		p.Count, p.Min, p.P50, p.P90, p.P99, p.P999, p.P9999, p.Max, p.Mean, p.Stddev)
}

// HistogramData is the wire form of a Histogram: only the non-empty buckets,
// as parallel slices of bucket indexes (ascending) and counts, so that
// another package can copy it field by field into a protobuf message
// (uint32/uint64/int64 and repeated fields of them).
//
// Bucket i covers the durations [low, low+width) in ns: for i < 256,
// low = i and width = 1; otherwise with shift = i/128 - 1,
// low = (i - 128*shift) << shift and width = 1 << shift.
// SubBucketBits (7) names that layout so a receiver can refuse another one.
type HistogramData struct {
	SubBucketBits uint32   `json:"sub_bucket_bits"`
	Count         uint64   `json:"count"`
	MinNs         int64    `json:"min_ns"`
	MaxNs         int64    `json:"max_ns"`
	SumNs         int64    `json:"sum_ns"`
	Buckets       []uint32 `json:"buckets"`
	Counts        []uint64 `json:"counts"`
}

// Data returns the wire form of h.
func (h *Histogram) Data() HistogramData {
	d := HistogramData{
		SubBucketBits: subBucketBits,
		Count:         h.count,
		MinNs:         h.min,
		MaxNs:         h.max,
		SumNs:         h.sum,
	}
	for i, c := range h.counts {
		if c != 0 {
			d.Buckets = append(d.Buckets, uint32(i))
			d.Counts = append(d.Counts, c)
		}
	}
	return d
}

// Histogram rebuilds a Histogram from its wire form, checking that the data
// is consistent (layout, bucket order and range, counts adding up, Min and
// Max in the first and last buckets), so that a corrupted or foreign
// histogram is refused instead of silently merged.
func (d HistogramData) Histogram() (*Histogram, error) {
	if d.SubBucketBits != subBucketBits {
		return nil, fmt.Errorf("histogram sub_bucket_bits %d: only %d is supported", d.SubBucketBits, subBucketBits)
	}
	if len(d.Buckets) != len(d.Counts) {
		return nil, fmt.Errorf("histogram has %d buckets but %d counts", len(d.Buckets), len(d.Counts))
	}
	h := &Histogram{count: d.Count, min: d.MinNs, max: d.MaxNs, sum: d.SumNs}
	var total uint64
	for k, b := range d.Buckets {
		switch {
		case b >= numBuckets:
			return nil, fmt.Errorf("histogram bucket %d out of range [0, %d)", b, numBuckets)
		case k > 0 && b <= d.Buckets[k-1]:
			return nil, fmt.Errorf("histogram buckets not strictly ascending at position %d (%d after %d)", k, b, d.Buckets[k-1])
		case d.Counts[k] == 0:
			return nil, fmt.Errorf("histogram bucket %d has count 0; empty buckets are left out", b)
		}
		h.counts[b] = d.Counts[k]
		total += d.Counts[k]
	}
	if total != d.Count {
		return nil, fmt.Errorf("histogram bucket counts add up to %d, count says %d", total, d.Count)
	}
	if d.Count == 0 {
		if d.MinNs != 0 || d.MaxNs != 0 || d.SumNs != 0 {
			return nil, errors.New("empty histogram with non-zero min_ns, max_ns or sum_ns")
		}
		return h, nil
	}
	if d.MinNs < 0 || d.MinNs > d.MaxNs {
		return nil, fmt.Errorf("histogram min_ns %d and max_ns %d are not 0 <= min <= max", d.MinNs, d.MaxNs)
	}
	if first := bucketIndex(uint64(min(d.MinNs, maxTrackable))); first != int(d.Buckets[0]) {
		return nil, fmt.Errorf("histogram min_ns %d belongs in bucket %d, but the first bucket is %d", d.MinNs, first, d.Buckets[0])
	}
	if last := bucketIndex(uint64(min(d.MaxNs, maxTrackable))); last != int(d.Buckets[len(d.Buckets)-1]) {
		return nil, fmt.Errorf("histogram max_ns %d belongs in bucket %d, but the last bucket is %d", d.MaxNs, last, d.Buckets[len(d.Buckets)-1])
	}
	return h, nil
}
