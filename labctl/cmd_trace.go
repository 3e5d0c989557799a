package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/term"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/traces"
)

func newTraceCmd(g *globals) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "trace RUN_ID|TRACE_ID",
		Short: "Show the trace of a run (or of up/down) as a waterfall",
		Long: `Trace draws a trace in the terminal: every span in tree order with its
service and node, duration, place on the time axis and key attributes. It reads
the trace from Jaeger's query API (--jaeger-url) when it answers, and otherwise
from the local copy that labctl and its agents keep of every trace. It prints
the Jaeger UI link. -o json prints the spans as OTLP JSON.

RUN_ID is a stored run (labctl results list); up and down print their trace
ids.`,
		Example: `  labctl trace 20261124-113501-rr-7f3a
  labctl trace 4bf92f3577b34da6a3ce929d0e0e4736 --local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, done, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			id, err := traces.ParseTraceID(args[0])
			if err != nil {
				resp, rerr := c.GetResult(cmd.Context(), &labv1.GetResultRequest{Id: args[0]})
				if rerr != nil {
					return usagef("%q is neither a trace id (32 hex digits) nor a stored run: %s", args[0], describe(rerr))
				}
				if id = resp.GetResult().GetTraceId(); id == "" {
					return fmt.Errorf("run %s has no trace", resp.GetResult().GetId())
				}
			}
			spans, from, err := fetchTrace(cmd.Context(), c, g.jaegerURL, id, local)
			if err != nil {
				return err
			}
			if g.output != "table" {
				b, err := traces.MarshalTrace(spans)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(append(b, '\n'))
				return err
			}
			width := 100
			if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil && w > 40 {
				width = w
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trace %s, from %s\n", id, from)
			if err := traces.Render(cmd.OutOrStdout(), spans, traces.RenderOptions{Width: width}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", traces.UILink(g.jaegerURL, id))
			return nil
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "use the local copy even when Jaeger answers")
	return cmd
}

// fetchTrace asks Jaeger first, briefly, then the local copy.
func fetchTrace(ctx context.Context, c labv1.LabServiceClient, jaegerURL, id string, local bool) ([]*tracepb.ResourceSpans, string, error) {
	var jerr error
	if !local {
		jctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		spans, err := traces.FetchJaeger(jctx, jaegerURL, id)
		cancel()
		if err == nil {
			return spans, "Jaeger at " + jaegerURL, nil
		}
		jerr = err
	}
	resp, err := c.GetTrace(ctx, &labv1.GetTraceRequest{Id: id})
	if err != nil {
		if jerr != nil {
			return nil, "", fmt.Errorf("trace %s: not from Jaeger (%v), nor locally (%s)", id, jerr, describe(err))
		}
		return nil, "", err
	}
	spans, err := traces.UnmarshalTrace(resp.GetOtlpJson())
	return spans, "the local copy", err
}
