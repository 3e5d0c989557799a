// Command labctl builds labs for the Linux network stack out of network
// namespaces and runs experiments in them. See `labctl --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/services/rpcerr"

	"github.com/labctl/labctl/topologies"
)

// Exit codes: 2 means the input was wrong (a bad topology, a bad flag) and
// nothing was changed; 1 means the host or an experiment failed; 130 means
// the user interrupted.
const (
	exitFailure     = 1
	exitInvalid     = 2
	exitInterrupted = 130
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := interruptible(context.Background())
	args := rootServerFirst(os.Args[1:])
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	interrupted := ctx.Err() != nil || errors.As(err, new(interruptedError))
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "labctl:", describe(err))
	switch {
	case topologies.IsInvalid(err) || errors.As(err, new(usageError)) || rpcerr.IsInvalid(err):
		os.Exit(exitInvalid)
	case interrupted:
		os.Exit(exitInterrupted)
	}
	os.Exit(exitFailure)
}

// gentle is the handler of the first Ctrl-C, when a command set one (see
// onFirstInterrupt); nil cancels the command's context at once.
var gentle struct {
	sync.Mutex
	fn func()
}

// onFirstInterrupt lets the command that calls it handle the first Ctrl-C
// itself (run asks the roles to stop and waits until they have restored
// what they changed); a second Ctrl-C, or SIGTERM, still cancels the
// command's context at once. fn must return quickly: the second Ctrl-C
// waits for it.
func onFirstInterrupt(fn func()) {
	gentle.Lock()
	gentle.fn = fn
	gentle.Unlock()
}

// interruptible returns a context that SIGTERM, or Ctrl-C without a
// handler of its own, cancels.
func interruptible(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for sig := range sigs {
			gentle.Lock()
			fn := gentle.fn
			gentle.fn = nil
			gentle.Unlock()
			if sig == os.Interrupt && fn != nil {
				fn()
				continue
			}
			cancel()
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// interruptedError ends a command that the user interrupted, though its
// context was not cancelled (it stopped gently): exit code 130.
type interruptedError struct{ msg string }

func (e interruptedError) Error() string { return e.msg }

// describe is an error as the user reads it: a gRPC status by its message,
// with its code when the code says something the message may not
// (Unavailable, Unauthenticated, NotFound, ...).
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.Unknown, codes.Internal:
		return st.Message()
	}
	return st.Message() + " [" + st.Code().String() + "]"
}

// rootValueFlags are the root flags that take a separate value.
var rootValueFlags = map[string]bool{"-o": true, "--output": true, "--server": true, "--token-file": true,
	"--server-ca": true, "--client-cert": true, "--client-key": true}

// rootServerFirst takes a --server written before the command name out of
// the arguments and into $LABCTL_SERVER, the default of the root's --server.
// run has a --server flag of its own (the node of the server role), which
// shadows the root's after "run"; so in `labctl --server HOST:PORT run rr
// LAB --server n2` the first is the remote service and the second the node.
// Cobra cannot scope a flag by its position; this does.
func rootServerFirst(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...) // the command name: stop
		}
		if v, ok := strings.CutPrefix(a, "--server="); ok {
			os.Setenv("LABCTL_SERVER", v)
			continue
		}
		if a == "--server" && i+1 < len(args) {
			os.Setenv("LABCTL_SERVER", args[i+1])
			i++
			continue
		}
		out = append(out, a)
		if rootValueFlags[a] && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// usageError is a bad argument or flag; it exits with code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// globals are the flags every command shares.
type globals struct {
	output string
	quiet  bool
	server string // remote LabService address; empty for this host
	remoteFlags
	otlpEndpoint string // OTLP collector; "" means $OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4317
	cniPath      string // where cni links' plugins are; "" means $CNI_PATH, else cni.DefaultPath
	jaegerURL    string // Jaeger query service, for trace links and labctl trace
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "labctl",
		Short: "A lab for the Linux network stack",
		Long: `labctl builds a lab on one Linux host from a topology file — nodes are network
namespaces, links are veth pairs, bridges or host NICs — and runs experiments
between its nodes that check claims about the kernel's network stack with
numbers and the kernel's own evidence.

Start with the embedded example:
  labctl up quickstart
  labctl status quickstart
  labctl exec quickstart n1 -- ping -c3 198.18.0.2
  labctl down quickstart`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch g.output {
			case "table", "json", "yaml":
				return nil
			}
			return usagef("--output must be table, json or yaml, not %q", g.output)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.PersistentFlags().BoolVarP(&g.quiet, "quiet", "q", false, "no progress on stderr")
	pf := root.PersistentFlags()
	pf.StringVar(&g.server, "server", os.Getenv("LABCTL_SERVER"), "use the lab service at HOST:PORT (labctl serve) instead of this host [$LABCTL_SERVER]")
	pf.StringVar(&g.tokenFile, "token-file", os.Getenv("LABCTL_TOKEN_FILE"), "bearer token for --server [$LABCTL_TOKEN_FILE]")
	pf.StringVar(&g.otlpEndpoint, "otlp-endpoint", "", "OTLP collector for traces (default $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317; \"none\" to keep traces only locally)")
	pf.StringVar(&g.jaegerURL, "jaeger-url", envOr("LABCTL_JAEGER_URL", defaultJaegerURL), "Jaeger query service, for trace links and labctl trace [$LABCTL_JAEGER_URL]")
	pf.StringVar(&g.cniPath, "cni-path", "", "directories of CNI plugins for cni links, separated by ':' (default $CNI_PATH, else bin/cni beside labctl, /opt/cni/bin, /usr/lib/cni)")
	pf.StringVar(&g.tlsCA, "server-ca", "", "CA certificate that signed --server's certificate; enables TLS")
	pf.StringVar(&g.tlsCert, "client-cert", "", "client certificate for mutual TLS to --server")
	pf.StringVar(&g.tlsKey, "client-key", "", "client key for mutual TLS to --server")
	root.AddCommand(
		newPlanCmd(g),
		newUpCmd(g),
		newDownCmd(g),
		newStatusCmd(g),
		newExecCmd(g),
		newGraphCmd(g),
		newRunCmd(g),
		newResultsCmd(g),
		newReportCmd(g),
		newServeCmd(g),
		newTraceCmd(g),
		newWatchCmd(g),
		newSchemaCmd(),
		newAgentCmd(g),
	)
	argsAreUsage(root)
	return root
}

// argsAreUsage makes a wrong number of arguments a usage error (exit 2,
// nothing changed) in every command, as a bad flag already is.
func argsAreUsage(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usagef("%s: %v (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		argsAreUsage(sub)
	}
}
