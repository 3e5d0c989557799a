package measure

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/golden"
)

func TestBucketLayoutIsContiguousAndFine(t *testing.T) {
	var next uint64
	for i := range numBuckets {
		low, width := bucketRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d (gap or overlap)", i, low, next)
		}
		if got := bucketIndex(low); got != i {
			t.Fatalf("bucketIndex(%d) = %d, want %d", low, got, i)
		}
		if got := bucketIndex(low + width - 1); got != i {
			t.Fatalf("bucketIndex(%d) = %d, want %d", low+width-1, got, i)
		}
		if low >= 2*subBucketCount && width*subBucketCount > low {
			t.Fatalf("bucket %d [%d, +%d) is wider than 1/%d of its start", i, low, width, subBucketCount)
		}
		next = low + width
	}
	if next != maxTrackable+1 {
		t.Fatalf("buckets end at %d, want %d", next, uint64(maxTrackable+1))
	}
}

func TestRecordedValueIsReportedWithinResolution(t *testing.T) {
	for _, v := range []time.Duration{
		1, 7, 255, 256, 257, 1000, 12345, 999_999, time.Millisecond + 7,
		1234567890, 42 * time.Second, 100 * time.Second,
	} {
		// Surround v with far values so that the median is v's bucket and is
		// not clamped to an exact Min or Max.
		var h Histogram
		h.Record(0)
		h.Record(v)
		h.Record(maxTrackable)
		got := h.Quantile(0.5)
		if err := math.Abs(float64(got-v)) / float64(v); err > 1.0/256 {
			t.Errorf("median of {0, %d, max} = %d: relative error %.4f > 1/256", v, got, err)
		}
	}
}

func TestQuantilesMatchExactNearestRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-1ms", func() time.Duration { return time.Duration(rng.Int64N(int64(time.Millisecond))) }},
		{"lognormal around 20µs", func() time.Duration {
			return time.Duration(20_000 * math.Exp(0.8*rng.NormFloat64()))
		}},
		{"bimodal 5µs and 2ms", func() time.Duration {
			if rng.IntN(100) < 3 {
				return 2*time.Millisecond + time.Duration(rng.Int64N(100_000))
			}
			return 5*time.Microsecond + time.Duration(rng.Int64N(500))
		}},
		{"small exact values", func() time.Duration { return time.Duration(rng.Int64N(200)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			xs := make([]time.Duration, 100_000)
			var sum float64
			for i := range xs {
				xs[i] = tt.gen()
				h.Record(xs[i])
				sum += float64(xs[i])
			}
			slices.Sort(xs)
			for _, q := range []float64{0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999} {
				want := xs[int(math.Ceil(q*float64(len(xs))))-1]
				got := h.Quantile(q)
				if d := math.Abs(float64(got - want)); d > float64(want)/256+1 {
					t.Errorf("Quantile(%v) = %v, exact %v", q, got, want)
				}
			}
			if h.Min() != xs[0] || h.Max() != xs[len(xs)-1] || h.Count() != uint64(len(xs)) {
				t.Errorf("min/max/count = %v/%v/%d, want %v/%v/%d", h.Min(), h.Max(), h.Count(), xs[0], xs[len(xs)-1], len(xs))
			}
			mean := sum / float64(len(xs))
			if got := float64(h.Mean()); math.Abs(got-mean) > 0.5 {
				t.Errorf("Mean = %v, exact %v", got, mean)
			}
			var ss float64
			for _, x := range xs {
				ss += (float64(x) - mean) * (float64(x) - mean)
			}
			std := math.Sqrt(ss / float64(len(xs)))
			if got := float64(h.Stddev()); math.Abs(got-std) > std/100+1 {
				t.Errorf("Stddev = %v, exact %v", got, std)
			}
		})
	}
}

func TestHistogramEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		record []time.Duration
		want   Percentiles
	}{
		{name: "empty", want: Percentiles{}},
		{
			name:   "one value is reported exactly",
			record: []time.Duration{12345},
			want:   Percentiles{Count: 1, Min: 12345, P50: 12345, P90: 12345, P99: 12345, P999: 12345, P9999: 12345, Max: 12345, Mean: 12345},
		},
		{
			name:   "negative counts as zero",
			record: []time.Duration{-5, 10},
			want:   Percentiles{Count: 2, Min: 0, P50: 0, P90: 10, P99: 10, P999: 10, P9999: 10, Max: 10, Mean: 5, Stddev: 5},
		},
		{
			name:   "beyond the top bucket keeps exact max and mean",
			record: []time.Duration{200 * time.Second, 300 * time.Second},
			want: Percentiles{Count: 2, Min: 200 * time.Second, P50: 200 * time.Second, P90: 200 * time.Second, P99: 200 * time.Second,
				P999: 200 * time.Second, P9999: 200 * time.Second, Max: 300 * time.Second, Mean: 250 * time.Second, Stddev: 50 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, d := range tt.record {
				h.Record(d)
			}
			if got := h.Summary(); got != tt.want {
				t.Errorf("Summary()\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestQuantileBounds(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{10, 20, 30} { // exact buckets
		h.Record(d)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{
		{-1, 10}, {0, 10}, {math.NaN(), 10}, {0.33, 10}, {0.34, 20}, {0.67, 30}, {1, 30}, {2, 30},
	} {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestMergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b, empty Histogram
	for i := range 10_000 {
		d := time.Duration(rng.Int64N(int64(10 * time.Millisecond)))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged Histogram
	merged.Merge(&empty)
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&empty)
	if !reflect.DeepEqual(merged.Data(), all.Data()) {
		t.Errorf("merge of the parts differs from the whole: %v vs %v", merged.Summary(), all.Summary())
	}
	merged.Reset()
	if merged.Count() != 0 || merged.Data().Buckets != nil {
		t.Errorf("after Reset: count %d, buckets %v", merged.Count(), merged.Data().Buckets)
	}
}

func TestHistogramDataGolden(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{3, 3, 250, 300, 301, 12_000, 12_001, 5 * time.Millisecond, 200 * time.Second} {
		h.Record(d)
	}
	got, err := json.MarshalIndent(h.Data(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "histogram_data.json"), append(got, '\n'))

	var d HistogramData
	if err := json.Unmarshal(got, &d); err != nil {
		t.Fatal(err)
	}
	back, err := d.Histogram()
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if back.Summary() != h.Summary() || !reflect.DeepEqual(back.Data(), h.Data()) {
		t.Errorf("round trip changed the histogram: %v vs %v", back.Summary(), h.Summary())
	}
}

func TestHistogramDataRejectsInconsistentData(t *testing.T) {
	valid := func() HistogramData {
		var h Histogram
		h.Record(100)
		h.Record(5000)
		return h.Data()
	}
	tests := []struct {
		name    string
		edit    func(d *HistogramData)
		wantErr string
	}{
		{"other layout", func(d *HistogramData) { d.SubBucketBits = 5 }, "sub_bucket_bits 5"},
		{"lengths differ", func(d *HistogramData) { d.Counts = d.Counts[:1] }, "2 buckets but 1 counts"},
		{"out of range", func(d *HistogramData) { d.Buckets[1] = numBuckets }, "out of range"},
		{"not ascending", func(d *HistogramData) { d.Buckets[0], d.Buckets[1] = d.Buckets[1], d.Buckets[0] }, "not strictly ascending"},
		{"zero count", func(d *HistogramData) { d.Counts[1] = 0; d.Count = 1 }, "has count 0"},
		{"counts do not add up", func(d *HistogramData) { d.Count = 3 }, "add up to 2, count says 3"},
		{"min above max", func(d *HistogramData) { d.MinNs = 6000 }, "not 0 <= min <= max"},
		{"min in another bucket", func(d *HistogramData) { d.MinNs = 99 }, "min_ns 99 belongs in bucket 99"},
		{"max in another bucket", func(d *HistogramData) { d.MaxNs = 9000 }, "max_ns 9000 belongs in bucket"},
		{"empty with values", func(d *HistogramData) { *d = HistogramData{SubBucketBits: subBucketBits, SumNs: 4} }, "empty histogram"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.edit(&d)
			_, err := d.Histogram()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := (HistogramData{SubBucketBits: subBucketBits}).Histogram(); err != nil {
		t.Errorf("empty histogram refused: %v", err)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	d := time.Duration(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(d); d = d*3 + 17 }); n != 0 {
		t.Errorf("Record allocates %v times per call", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := new(Histogram)
	// Pre-computed, varied durations so the benchmark exercises every branch
	// and bucket range without timing the random generator.
	rng := rand.New(rand.NewPCG(5, 6))
	ds := make([]time.Duration, 4096)
	for i := range ds {
		ds[i] = time.Duration(20_000 * math.Exp(rng.NormFloat64()))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.Record(ds[i&4095])
		i++
	}
}

func BenchmarkHistogramSummary(b *testing.B) {
	var h Histogram
	for i := range 100_000 {
		h.Record(time.Duration(i * 37))
	}
	b.ReportAllocs()
	for b.Loop() {
		h.Summary()
	}
}
