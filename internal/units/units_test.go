package units

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		unit bool
		ok   bool
	}{
		{"64", 64, false, true},
		{"1500b", 1500, true, true},
		{"4K", 4096, true, true},
		{"4k", 4096, true, true},
		{"4kb", 4096, true, true},
		{"32KB", 32768, true, true},
		{"4KiB", 4096, true, true},
		{"1MiB", 1 << 20, true, true},
		{"1mb", 1 << 20, true, true},
		{"1.5MiB", 3 << 19, true, true},
		{"2GiB", 2 << 30, true, true},
		{"", 0, false, false},
		{"kb", 0, false, false},
		{"-1", 0, false, false},
		{"4kbit", 0, false, false},
		{"0.5b", 0, false, false},
		{"1e3", 0, false, false},
	} {
		got, unit, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want || unit != tc.unit {
			t.Errorf("ParseSize(%q) = %d, %v, %v; want %d, %v, ok=%v", tc.in, got, unit, err, tc.want, tc.unit, tc.ok)
		}
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1024, 4096, 1 << 20, 3 << 19, 1 << 30, 5 << 30, 1<<30 + 1} {
		s := FormatSize(n)
		got, _, err := ParseSize(s)
		if err != nil || got != n {
			t.Errorf("FormatSize(%d) = %q, read back as %d, %v", n, s, got, err)
		}
	}
}
