package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [LAB]",
		Short: "Show the labs that are up, or one lab's nodes, links, agents and drift",
		Long: `Without LAB, status lists the labs that are up. With LAB, it compares the lab
with its plan — namespaces, interfaces (up, MTU, addresses), routes and sysctls —
lists every difference as drift, and asks each agent for its health (SERVING,
NOT_SERVING or UNREACHABLE) and version.`,
		Example: `  labctl status
  labctl status quickstart -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if len(args) == 0 {
				resp, err := client.ListLabs(cmd.Context(), &labv1.ListLabsRequest{})
				if err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), g.output, resp, func(w *tabwriter.Writer) {
					if len(resp.GetLabs()) == 0 {
						fmt.Fprintln(w, "no labs are up (labctl up quickstart starts one)")
						return
					}
					row(w, "LAB", "NODES", "LINKS", "SOURCE")
					for _, l := range resp.GetLabs() {
						row(w, l.GetLab(), l.GetNodes(), l.GetLinks(), l.GetSource())
					}
				})
			}
			resp, err := client.GetStatus(cmd.Context(), &labv1.GetStatusRequest{Lab: args[0]})
			if err != nil {
				return err
			}
			return emit(cmd.OutOrStdout(), g.output, resp.GetStatus(), func(w *tabwriter.Writer) { statusTable(w, resp.GetStatus()) })
		},
	}
}

func statusTable(w *tabwriter.Writer, s *labv1.LabStatus) {
	fmt.Fprintf(w, "lab %s (from %s)\n\n", s.GetLab(), s.GetSource())
	row(w, "NODE", "NAMESPACE", "AGENT", "INTERFACES")
	for _, n := range s.GetNodes() {
		agent := "-"
		if a := n.GetAgent(); a.GetWanted() {
			agent = a.GetHealth()
			if a.GetVersion() != "" {
				agent += " " + a.GetVersion()
			}
		}
		ns := n.GetNamespace()
		if !n.GetPresent() {
			ns += " (missing)"
		}
		var ifs []string
		for _, i := range n.GetInterfaces() {
			state := "up"
			if !i.GetUp() {
				state = "drift"
			}
			ifs = append(ifs, fmt.Sprintf("%s %s %s", i.GetName(), state, strings.Join(i.GetAddresses(), ",")))
		}
		row(w, n.GetName(), ns, agent, strings.Join(ifs, "; "))
	}
	present := 0
	for _, l := range s.GetLinks() {
		if l.GetPresent() {
			present++
		}
	}
	fmt.Fprintf(w, "\nlinks: %d of %d present\n", present, len(s.GetLinks()))
	for _, l := range s.GetLinks() {
		if len(l.GetMade()) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", l.GetId(), strings.Join(l.GetMade(), "; "))
		}
	}
	if len(s.GetDrift()) == 0 {
		fmt.Fprintln(w, "drift: none")
		return
	}
	fmt.Fprintf(w, "drift (%d):\n", len(s.GetDrift()))
	for _, d := range s.GetDrift() {
		fmt.Fprintln(w, "  "+d)
	}
}
