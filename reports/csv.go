package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// CSV writes every step's metrics, one row per step and role: the run,
// the step's place (index, variant, repeat), the role and its node, then
// one column per metric any role reported (empty where a role did not).
func CSV(w io.Writer, r *experimentv1.Result) error {
	names := map[string]bool{}
	for _, s := range r.GetSteps() {
		for _, rep := range s.GetReports() {
			for m := range rep.GetMetrics() {
				names[m] = true
			}
		}
	}
	metrics := slices.Sorted(maps.Keys(names))
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{"run", "experiment", "step", "variant", "repeat", "role", "node"}, metrics...)); err != nil {
		return fmt.Errorf("result %s: csv: %w", r.GetId(), err)
	}
	for i, s := range r.GetSteps() {
		for _, rep := range s.GetReports() {
			row := []string{r.GetId(), r.GetExperiment(), strconv.Itoa(i), s.GetStep().GetVariant(),
				strconv.Itoa(int(s.GetStep().GetRepeat())), rep.GetRole(), rep.GetNode()}
			for _, m := range metrics {
				v, ok := rep.GetMetrics()[m]
				cell := ""
				if ok {
					cell = strconv.FormatFloat(v, 'g', -1, 64)
				}
				row = append(row, cell)
			}
			if err := cw.Write(row); err != nil {
				return fmt.Errorf("result %s: csv: %w", r.GetId(), err)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("result %s: csv: %w", r.GetId(), err)
	}
	return nil
}
