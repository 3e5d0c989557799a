package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/traces"
)

func newUpCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "up FILE|EXAMPLE",
		Short: "Build a lab from a topology, or reconcile it with a changed one",
		Long: `Up builds the lab a topology describes: one network namespace per node
(labctl-<lab>.<node>), its links, addresses, routes, sysctls, offloads, qdiscs
and firewall rules, and an agent in every node that asks for one. Progress goes
to stderr.

Up is a transaction: it journals every object as it creates it, and a failure
rolls back everything it made; after a crash or SIGKILL, the next up or down
converges. Up on a lab that is already up changes nothing when the file is
unchanged, and otherwise reconciles: added nodes and links are created,
removed ones deleted, and changed ones recreated (a node whose settings change
is recreated with its links). Agents that died are restarted.

A cni link attaches nodes with a real CNI network configuration list (a
conflist beside the topology, sent with it): its plugins run in the link's host
node, found in --cni-path, $CNI_PATH, bin/cni beside labctl (scripts/cni.sh
builds the plugins go.mod pins), /opt/cni/bin or /usr/lib/cni.

FILE is a topology file, or the name of an embedded example.`,
		Example: `  labctl up quickstart
  labctl up topologies/examples/paths.yaml
  labctl up k8s-node --cni-path /opt/cni/bin
  labctl up my-lab.yaml -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tf, err := readTopology(args[0])
			if err != nil {
				return err
			}
			attrs := []attribute.KeyValue{attribute.String("labctl.source", tf.source)}
			if tf.top != nil {
				// The root names the lab, so that a search by lab finds it.
				attrs = append(attrs, traces.KeyLab.String(tf.top.Name))
			}
			return g.traced(cmd.Context(), "labctl up", attrs, func(ctx context.Context) error {
				return up(ctx, cmd, g, tf)
			})
		},
	}
}

func up(ctx context.Context, cmd *cobra.Command, g *globals, tf *topologyFile) error {
	return showChange(ctx, cmd, g, "up", func(c labv1.LabServiceClient) (func() (*labv1.UpResponse, error), error) {
		stream, err := c.Up(ctx, &labv1.UpRequest{Source: tf.source, Topology: tf.data, Files: tf.files()})
		if err != nil {
			return nil, err
		}
		return stream.Recv, nil
	}, func(w *tabwriter.Writer, change *labv1.Change) {
		changeTable(w, change, "up")
		fmt.Fprintf(w, "\nnext: labctl status %s; labctl exec %s NODE -- CMD; labctl down %s\n", change.GetLab(), change.GetLab(), change.GetLab())
	})
}

// showChange runs up or down (start opens its stream), draws its progress
// and prints the change it ends with, by table unless -o asks otherwise.
func showChange[T changeEvent](ctx context.Context, cmd *cobra.Command, g *globals, verb string,
	start func(labv1.LabServiceClient) (func() (T, error), error), table func(*tabwriter.Writer, *labv1.Change)) error {
	client, done, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	recv, err := start(client)
	if err != nil {
		return err
	}
	change, err := followChange(recv, g.quiet)
	if err != nil {
		return err
	}
	if change == nil {
		return fmt.Errorf("%s ended without saying what it changed", verb)
	}
	change.TraceId = traceID(ctx)
	return emit(cmd.OutOrStdout(), g.output, change, func(w *tabwriter.Writer) { table(w, change) })
}

// changeEvent is an event of the Up or Down stream.
type changeEvent interface {
	GetProgress() *labv1.Progress
	GetChange() *labv1.Change
}

// followChange draws the progress of an Up or Down stream and returns the
// change it ends with.
func followChange[T changeEvent](recv func() (T, error), quiet bool) (*labv1.Change, error) {
	prog := newProgress(quiet)
	defer prog.end()
	var change *labv1.Change
	for {
		ev, err := recv()
		if errors.Is(err, io.EOF) {
			return change, nil
		}
		if err != nil {
			return nil, err
		}
		prog.update(ev.GetProgress())
		if c := ev.GetChange(); c != nil {
			change = c
		}
	}
}

// changeTable prints what up or down did.
func changeTable(w *tabwriter.Writer, c *labv1.Change, verb string) {
	changed := len(c.GetCreated()) + len(c.GetRemoved()) + len(c.GetRecreated())
	if changed == 0 && len(c.GetAgents()) == 0 {
		fmt.Fprintf(w, "lab %s: no changes (%d objects unchanged)\n", c.GetLab(), c.GetUnchanged())
		return
	}
	fmt.Fprintf(w, "lab %s: %s\n", c.GetLab(), map[string]string{"up": "up", "down": "removed"}[verb])
	for _, g := range []struct {
		name  string
		items []string
	}{{"created", c.GetCreated()}, {"recreated", c.GetRecreated()}, {"removed", c.GetRemoved()}, {agentsVerb(verb), c.GetAgents()}} {
		if len(g.items) > 0 {
			row(w, "  "+g.name, len(g.items), summarize(g.items, 6))
		}
	}
	if c.GetUnchanged() > 0 {
		row(w, "  unchanged", c.GetUnchanged(), "")
	}
}

func agentsVerb(verb string) string {
	if verb == "down" {
		return "agents stopped"
	}
	return "agents started"
}

// summarize lists up to n names and counts the rest.
func summarize(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(", ... (%d more)", len(items)-n)
}
