package measure

import (
	"strings"
	"testing"
)

func TestLinearFit(t *testing.T) {
	tests := []struct {
		name    string
		xs, ys  []float64
		want    Fit
		wantErr string
	}{
		{name: "exact line", xs: []float64{0, 1, 2, 3}, ys: []float64{1, 3, 5, 7}, want: Fit{Slope: 2, Intercept: 1, R2: 1}},
		// Worked by hand: mean (2, 5/3), Sxx 2, Sxy 1, SSres 1/6, SStot 2/3.
		{name: "three points", xs: []float64{1, 2, 3}, ys: []float64{1, 2, 2}, want: Fit{Slope: 0.5, Intercept: 2.0 / 3, R2: 0.75}},
		{name: "flat", xs: []float64{1, 2, 3}, ys: []float64{4, 4, 4}, want: Fit{Slope: 0, Intercept: 4, R2: 1}},
		{
			// Kernel bytes for N connections: large offsets must not cost precision.
			name: "bytes per connection",
			xs:   []float64{100_000, 100_001, 100_002, 100_003},
			ys:   []float64{3300*100_000 + 1e9, 3300*100_001 + 1e9, 3300*100_002 + 1e9, 3300*100_003 + 1e9},
			want: Fit{Slope: 3300, Intercept: 1e9, R2: 1},
		},
		{name: "lengths differ", xs: []float64{1, 2}, ys: []float64{1}, wantErr: "2 xs but 1 ys"},
		{name: "one point", xs: []float64{1}, ys: []float64{1}, wantErr: "at least 2 points"},
		{name: "vertical", xs: []float64{2, 2, 2}, ys: []float64{1, 2, 3}, wantErr: "all xs are equal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LinearFit(tt.xs, tt.ys)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !close(got.Slope, tt.want.Slope) || !close(got.Intercept, tt.want.Intercept) || !close(got.R2, tt.want.R2) {
				t.Errorf("LinearFit = %+v, want %+v", got, tt.want)
			}
		})
	}
}
