package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/measure"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/traces"
)

func newRunCmd(g *globals) *cobra.Command {
	var (
		list           bool
		params         []string
		client, server string
		nodes          []string
		tracePackets   string
		allStages      bool
	)
	cmd := &cobra.Command{
		Use:   "run EXPERIMENT LAB",
		Short: "Run an experiment between nodes of a lab",
		Long: `Run runs an experiment between nodes of a lab that is up: it starts each role
in the agent of its node (servers first), streams progress to stderr, stores
the result with its environment and evidence, and prints the summary and the
verdict. Ctrl-C cancels every role cleanly; the result is stored as cancelled.

Roles go on nodes with --client and --server (or --node ROLE=NODE); by default
the client runs on the lab's first node and the server on its second.

Each experiment answers claims about the network stack (C1...C18, listed
with their sources and evidence in docs/claims.md) and ends in a verdict:
holds, does not hold, conditional, not engaged, undecided, or measured.
labctl run --list describes every experiment; labctl run EXPERIMENT --help
shows its parameters with defaults and bounds.`,
		Example: `  labctl run --list
  labctl run rr --help
  labctl run rr quickstart --client n1 --server n2 --param size=64 --param duration=10s
  labctl run rr quickstart --trace-packets=0.01
  labctl run rr quickstart --trace-packets=0.01 --trace-all-stages
  labctl run capture-order capture-order --client tx --server rx --trace-packets`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list {
				return nil
			}
			if len(args) != 2 {
				return usagef("usage: labctl run EXPERIMENT LAB (labctl run --list shows the experiments)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				c, done, err := g.connect(cmd.Context())
				if err != nil {
					return err
				}
				defer done()
				resp, err := c.ListExperiments(cmd.Context(), &labv1.ListExperimentsRequest{})
				if err != nil {
					return err
				}
				return emit(cmd.OutOrStdout(), g.output, resp, func(w *tabwriter.Writer) { listExperiments(w, resp.GetExperiments()) })
			}
			req := &labv1.RunRequest{Experiment: args[0], Lab: args[1], Params: map[string]string{}, Nodes: map[string]string{}}
			for _, p := range params {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return usagef("--param wants NAME=VALUE, got %q", p)
				}
				req.Params[k] = v
			}
			for _, n := range nodes {
				role, node, ok := strings.Cut(n, "=")
				if !ok || role == "" || node == "" {
					return usagef("--node wants ROLE=NODE, got %q", n)
				}
				req.Nodes[role] = node
			}
			if client != "" {
				req.Nodes["client"] = client
			}
			if server != "" {
				req.Nodes["server"] = server
			}
			if tracePackets != "" {
				rate, err := strconv.ParseFloat(tracePackets, 64)
				if err != nil || rate <= 0 || rate > 1 {
					return usagef("--trace-packets wants a fraction of packets in (0, 1], got %q", tracePackets)
				}
				req.TracePackets = rate
			}
			if allStages {
				if tracePackets == "" {
					return usagef("--trace-all-stages goes with --trace-packets=RATE")
				}
				req.TraceAllStages = true
			}
			attrs := []attribute.KeyValue{traces.KeyLab.String(req.Lab), traces.KeyExperiment.String(req.Experiment)}
			return g.traced(cmd.Context(), "labctl run "+req.Experiment, attrs, func(ctx context.Context) error {
				return runExperiment(ctx, cmd, g, req)
			})
		},
	}
	cmd.Flags().BoolVar(&list, "list", false, "describe every experiment and its parameters")
	cmd.Flags().StringArrayVarP(&params, "param", "p", nil, "experiment parameter NAME=VALUE (repeatable)")
	cmd.Flags().StringVar(&client, "client", "", "node of the client role")
	cmd.Flags().StringVar(&server, "server", "", "node of the server role")
	cmd.Flags().StringArrayVar(&nodes, "node", nil, "node of another role, ROLE=NODE (repeatable)")
	cmd.Flags().StringVar(&tracePackets, "trace-packets", "", "trace the kernel's path of the lab's packets (eBPF; needs root and BTF): alone every packet, up to a cap; =RATE a sampled fraction such as 0.01. Packets become spans of the run's trace and the result gets a table of where the time goes; drops are always reported")
	cmd.Flags().Lookup("trace-packets").NoOptDefVal = "1"
	cmd.Flags().BoolVar(&allStages, "trace-all-stages", false, "with --trace-packets=RATE: trace every stage of the path, not only its landmarks (the egress hook of the lab's devices, the copy to the reader, drops) and the stages the experiment's verdict reads; each further stage is a tracepoint, a program run for every packet of the host (1-2% of rr's round trip on a veth each, docs/packet-path.md). Tracing every packet traces every stage. Netfilter's hooks are traced when every packet is, in a lab with firewall rules, or when the verdict reads them")
	defaultHelp := cmd.HelpFunc()
	cmd.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		if name := firstArg(args); name != "" && name != "run" {
			if err := experimentHelp(cmd, g, name); err == nil {
				return
			} else {
				fmt.Fprintln(os.Stderr, "labctl:", err)
			}
		}
		defaultHelp(cmd, args)
	})
	return cmd
}

func runExperiment(ctx context.Context, cmd *cobra.Command, g *globals, req *labv1.RunRequest) error {
	c, done, err := g.connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	stream, err := c.Run(ctx, req)
	if err != nil {
		return err
	}
	prog := newProgress(g.quiet)
	var result *experimentv1.Result
	var mu sync.Mutex
	var runID string
	var cancelling, known bool // known: restoring is the server's word
	var restoring []string
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case cancelling && ctx.Err() != nil:
				return interruptedError{leftEarly(runID, req.GetLab(), known, restoring)}
			case cancelling && status.Code(err) == codes.Canceled:
				if len(restoring) > 0 {
					return interruptedError{leftEarly(runID, req.GetLab(), known, restoring)}
				}
				return interruptedError{fmt.Sprintf("run %s cancelled (stored as cancelled); every role stopped and restored what it changed", runID)}
			}
			return err
		}
		if p := ev.GetProgress(); p != nil {
			prog.line("%s", p.GetMessage())
			mu.Lock()
			if runID == "" && p.GetRunId() != "" {
				runID = p.GetRunId()
				// The first Ctrl-C asks the roles to stop and waits for them
				// to restore what they changed; the second leaves at once.
				onFirstInterrupt(func() {
					mu.Lock()
					cancelling = true
					mu.Unlock()
					prog.line("cancelling run %s: waiting for its roles to stop and restore what they changed (Ctrl-C again to leave now)", runID)
					go func() {
						cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
						defer cancel()
						resp, err := c.CancelRun(cctx, &labv1.CancelRunRequest{RunId: runID})
						if err != nil {
							prog.line("labctl: cancel run %s: %s", runID, describe(err))
							return
						}
						mu.Lock()
						if !known {
							restoring = resp.GetStopping()
						}
						mu.Unlock()
					}()
				})
			}
			if p.GetStopping() {
				restoring, known = p.GetRestoring(), true
			}
			mu.Unlock()
		}
		if r := ev.GetResult(); r != nil {
			result = r
		}
	}
	if result == nil {
		return fmt.Errorf("the run ended without a result")
	}
	spec := findSpec(cmd, c, result.GetExperiment())
	return emit(cmd.OutOrStdout(), g.output, result, func(w *tabwriter.Writer) { resultTable(w, result, spec, false) })
}

// leftEarly says what a second Ctrl-C left behind.
func leftEarly(runID, lab string, known bool, restoring []string) string {
	what := "its roles may still be restoring what they changed"
	switch {
	case len(restoring) > 0:
		what = "still to restore what they changed: " + strings.Join(restoring, ", ")
	case known:
		return fmt.Sprintf("left run %s; every role had stopped and restored what it changed", runID)
	}
	return fmt.Sprintf("left run %s without waiting; %s (their agents restore it as the roles stop; if an agent died, labctl down %s restores what it left)",
		runID, what, lab)
}

// firstArg is the first argument after "run" that is not a flag.
func firstArg(args []string) string {
	for i, a := range args {
		if a == "run" && i == 0 {
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

func experimentHelp(cmd *cobra.Command, g *globals, name string) error {
	c, done, err := g.connect(cmd.Context())
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.ListExperiments(cmd.Context(), &labv1.ListExperimentsRequest{})
	if err != nil {
		return err
	}
	for _, s := range resp.GetExperiments() {
		if s.GetName() == name {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			describeExperiment(w, s)
			return w.Flush()
		}
	}
	return fmt.Errorf("no experiment %q (labctl run --list shows them)", name)
}

func listExperiments(w *tabwriter.Writer, specs []*experimentv1.ExperimentSpec) {
	for i, s := range specs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s — %s\n", s.GetName(), s.GetSummary())
		if len(s.GetClaims()) > 0 {
			fmt.Fprintf(w, "  claims: %s\n", strings.Join(s.GetClaims(), ", "))
		}
		fmt.Fprintf(w, "  roles: %s\n", strings.Join(s.GetRoles(), ", "))
		paramTable(w, s)
	}
}

func describeExperiment(w *tabwriter.Writer, s *experimentv1.ExperimentSpec) {
	fmt.Fprintf(w, "%s — %s\n\n%s\n\n", s.GetName(), s.GetSummary(), s.GetDescription())
	if len(s.GetClaims()) > 0 {
		fmt.Fprintf(w, "Claims: %s (see docs/claims.md)\n", strings.Join(s.GetClaims(), ", "))
	}
	fmt.Fprintf(w, "Roles: %s\n\nParameters (--param NAME=VALUE):\n", strings.Join(s.GetRoles(), ", "))
	paramTable(w, s)
	for _, p := range s.GetParams() {
		if p.GetName() == "max_repeats" {
			fmt.Fprintf(w, "\nVerdicts decide or say why not: each comparison is decided (different, or the same within\n"+
				"the claim's margin) at a %.0f%% error rate over the run's looks at the data: after the\n"+
				"first repeats, and after each round of %d more repeats of the variants still undecided,\n"+
				"up to max_repeats and within time_budget. What stays undecided says how many more\n"+
				"repeats would likely decide it (docs/statistics.md).\n", 100*measure.DefaultAlpha, experiments.RoundRepeats)
		}
	}
	fmt.Fprintf(w, "\nUsage: labctl run %s LAB [--client NODE] [--server NODE] [--param NAME=VALUE ...]\n", s.GetName())
}

func paramTable(w *tabwriter.Writer, s *experimentv1.ExperimentSpec) {
	row(w, "  NAME", "DEFAULT", "BOUNDS", "MEANING")
	for _, p := range s.GetParams() {
		bounds := ""
		switch {
		case len(p.GetChoices()) > 0:
			bounds = strings.Join(p.GetChoices(), "|")
		case p.GetMin() != "" || p.GetMax() != "":
			bounds = p.GetMin() + " .. " + p.GetMax()
		}
		if p.GetKind() == experimentv1.ParamKind_PARAM_KIND_LIST {
			bounds = "list of " + strings.TrimPrefix(strings.ToLower(p.GetElement().String()), "param_kind_") + " " + bounds
		}
		row(w, "  "+p.GetName(), p.GetDefault(), bounds, p.GetHelp())
	}
}

func findSpec(cmd *cobra.Command, c labv1.LabServiceClient, name string) *experimentv1.ExperimentSpec {
	resp, err := c.ListExperiments(cmd.Context(), &labv1.ListExperimentsRequest{})
	if err != nil {
		return nil
	}
	for _, s := range resp.GetExperiments() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}
