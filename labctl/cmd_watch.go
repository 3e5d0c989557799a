package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/traces"
)

func newWatchCmd(g *globals) *cobra.Command {
	var node string
	var drops bool
	cmd := &cobra.Command{
		Use:   "watch LAB --drops",
		Short: "Show, live, every packet of a lab the kernel drops, with the reason and the place",
		Long: `Watch --drops traces the lab's namespaces with eBPF (on the host that runs
the lab: root and the kernel's BTF) and prints every packet of the lab the
kernel drops, as it drops it: the node, the kernel's drop reason (NO_SOCKET,
NETFILTER_DROP, ...), the code that dropped it, the protocol and addresses.
Each drop is also a span of the command's trace. Ctrl-C stops it.

With -o json, one JSON object a line.`,
		Example: `  labctl watch quickstart --drops
  labctl watch quickstart --node n2 --drops -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !drops {
				return usagef("what to watch? --drops (the drops of the lab's traffic)")
			}
			attrs := []attribute.KeyValue{traces.KeyLab.String(args[0])}
			return g.traced(cmd.Context(), "labctl watch", attrs, func(ctx context.Context) error {
				return watchDrops(ctx, cmd.OutOrStdout(), g, &labv1.WatchDropsRequest{Lab: args[0], Node: node})
			})
		},
	}
	cmd.Flags().BoolVar(&drops, "drops", false, "show the packets the kernel drops")
	cmd.Flags().StringVar(&node, "node", "", "only this node's drops")
	return cmd
}

func watchDrops(ctx context.Context, w io.Writer, g *globals, req *labv1.WatchDropsRequest) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	onFirstInterrupt(stop) // Ctrl-C ends the watch, which is how it ends
	client, done, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	stream, err := client.WatchDrops(ctx, req)
	if err != nil {
		return err
	}
	if g.output != "json" {
		if !g.quiet {
			fmt.Fprintf(w, "watching the drops of lab %s (Ctrl-C stops)\n", req.GetLab())
		}
		fmt.Fprintf(w, "%-15s %-8s %-24s %-32s %-5s %s\n", "TIME", "NODE", "REASON", "WHERE", "PROTO", "PACKET")
	}
	for {
		resp, err := stream.Recv()
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF), status.Code(err) == codes.Canceled:
			return nil
		case err != nil:
			return err
		}
		d := resp.GetDrop()
		if g.output == "json" {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(d)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", b)
			continue
		}
		fmt.Fprintf(w, "%-15s %-8s %-24s %-32s %-5s %s -> %s\n", d.GetTime().AsTime().Local().Format(time.TimeOnly+".000000"),
			d.GetNode(), d.GetReason(), d.GetLocation(), d.GetProtocol(), d.GetSource(), d.GetDestination())
	}
}
