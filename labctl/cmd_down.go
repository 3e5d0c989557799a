package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/traces"
)

func newDownCmd(g *globals) *cobra.Command {
	var labFlag string
	cmd := &cobra.Command{
		Use:   "down LAB",
		Short: "Remove a lab and everything its up made",
		Long: `Down stops the lab's agents and every process left in its namespaces, gives
host NICs back to the host with their names, MTU and addresses, and deletes
the lab's namespaces (the kernel frees the veths, bridges and macvlans inside).

It removes only what carries the lab's marker, and works without the lab's
state directory: labctl down --lab NAME finds the lab's namespaces by their
names and markers.`,
		Example: `  labctl down quickstart
  labctl down --lab quickstart`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab := labFlag
			switch {
			case len(args) == 1 && lab != "" && args[0] != lab:
				return usagef("two lab names: %s and --lab %s", args[0], lab)
			case len(args) == 1:
				lab = args[0]
			case lab == "":
				return usagef("which lab? labctl down LAB (labctl status lists them)")
			}
			return g.traced(cmd.Context(), "labctl down", []attribute.KeyValue{traces.KeyLab.String(lab)}, func(ctx context.Context) error {
				return down(ctx, cmd, g, lab)
			})
		},
	}
	cmd.Flags().StringVar(&labFlag, "lab", "", "the lab to remove (same as the argument)")
	return cmd
}

func down(ctx context.Context, cmd *cobra.Command, g *globals, lab string) error {
	return showChange(ctx, cmd, g, "down", func(c labv1.LabServiceClient) (func() (*labv1.DownResponse, error), error) {
		stream, err := c.Down(ctx, &labv1.DownRequest{Lab: lab})
		if err != nil {
			return nil, err
		}
		return stream.Recv, nil
	}, func(w *tabwriter.Writer, change *labv1.Change) {
		if len(change.GetRemoved()) == 0 && len(change.GetAgents()) == 0 {
			fmt.Fprintf(w, "lab %s: nothing to remove\n", lab)
			return
		}
		changeTable(w, change, "down")
	})
}
