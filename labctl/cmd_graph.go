package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/labctl/labctl/labs"
	"github.com/labctl/labctl/topologies"
)

func newGraphCmd(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "graph LAB|FILE",
		Short: "Draw a lab as a Mermaid or Graphviz graph",
		Long: `Graph draws a lab that is up (by name) or a topology file: nodes as boxes,
bridges as circles, host interfaces as parallelograms, and each link with the
interface names and addresses at its ends.`,
		Example: `  labctl graph quickstart -f mermaid
  labctl graph topologies/examples/paths.yaml -f dot | dot -Tsvg > paths.svg`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var plan *topologies.Plan
			p, err := labs.DefaultHost(version).Plan(args[0])
			switch {
			case err == nil:
				plan = p
			case errors.Is(err, labs.ErrNoLab):
				if plan, err = loadPlan(args[0]); err != nil {
					return err
				}
			default:
				return err
			}
			switch format {
			case "mermaid":
				fmt.Fprint(cmd.OutOrStdout(), plan.Mermaid())
			case "dot":
				fmt.Fprint(cmd.OutOrStdout(), plan.Dot())
			default:
				return usagef("--format must be mermaid or dot, not %q", format)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "mermaid", "mermaid or dot")
	return cmd
}
