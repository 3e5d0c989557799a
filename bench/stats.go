package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// figure is one measured quantity over the repetitions.
type figure []float64

func (f figure) sorted() []float64 {
	s := append([]float64(nil), f...)
	sort.Float64s(s)
	return s
}

func (f figure) median() float64 {
	s := f.sorted()
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// cell writes median [min .. max] in unit.
func (f figure) cell(format func(float64) string) string {
	if len(f) == 0 {
		return "–"
	}
	s := f.sorted()
	return fmt.Sprintf("%s [%s .. %s]", format(f.median()), format(s[0]), format(s[len(s)-1]))
}

// ratio divides a by b repetition by repetition.
func ratio(a, b figure) figure {
	var r figure
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return r
}

func secs(v float64) string  { return fmt.Sprintf("%.2f s", v) }
func msecs(v float64) string { return fmt.Sprintf("%.1f ms", v) }
func times(v float64) string { return fmt.Sprintf("%.2f×", v) }
func mib(v float64) string   { return fmt.Sprintf("%.1f MiB", v/1024) } // from KiB
func usec(v float64) string  { return fmt.Sprintf("%.1f µs", v) }
func gbps(v float64) string  { return fmt.Sprintf("%.2f Gbit/s", v/1e9) }
func pct(v float64) string   { return fmt.Sprintf("%+.1f%%", (v-1)*100) }

// table renders a markdown table.
func table(head []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}
