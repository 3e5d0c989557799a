package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
)

func newReportCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report RUN_ID [RUN_ID_B]",
		Short: "Write a run's report: one HTML file with its plots, readable offline",
		Long: `Report renders a stored run as one self-contained HTML page: the verdict and
its explanation, the claim from docs/claims.md, the plots the experiment chose
(latency distributions on a log axis with p50/p99/p99.9 marked, costs over
message size or connection count with fitted lines, counts per variant, the
packet path's "where the time goes" when packets were traced), every plot with
the spread across repeats, the kernel's evidence, the summary, the parameters,
the environment and the topology the run saw.

Nothing on the page is fetched when it is opened (plots are inline SVG, the
font is embedded), so it can be attached to a bug or a review.

With two runs, the page sets the second against the first: what differs
between them (parameters, kernel, machine), each summary metric's change with
the test verdicts use, and both runs in every plot. Over --server the page is
made by the server.`,
		Example: `  labctl report 20261124-113501-rr-7f3a --out rr.html
  labctl report 20261124-113501-rr-7f3a 20261124-120000-rr-1b2c --out compare.html
  labctl report 20261124-113501-rr-7f3a > rr.html`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.GetReport(cmd.Context(), &labv1.GetReportRequest{Ids: args})
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(resp.GetHtml())
				return err
			}
			// Written beside its final name and renamed: an interrupted
			// report never leaves half a page under that name.
			tmp, err := os.CreateTemp(filepath.Dir(out), ".report-*.html")
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(resp.GetHtml()); err != nil {
				tmp.Close()
				return fmt.Errorf("report %s: %w", out, err)
			}
			if err := tmp.Chmod(0o644); err != nil {
				tmp.Close()
				return fmt.Errorf("report %s: %w", out, err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("report %s: %w", out, err)
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return fmt.Errorf("report %s: %w", out, err)
			}
			if !g.quiet {
				abs, _ := filepath.Abs(out)
				fmt.Fprintf(cmd.ErrOrStderr(), "report written to %s (%d KB): open file://%s\n", out, len(resp.GetHtml())/1024, abs)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the page to this file (default: standard output)")
	return cmd
}
