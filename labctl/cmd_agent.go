package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/netns"
	"github.com/labctl/labctl/services/agent"
	"github.com/labctl/labctl/traces"
)

// newAgentCmd is the agent that up starts in every node (hidden: users
// never run it by hand).
func newAgentCmd(g *globals) *cobra.Command {
	var lab, node, socket, pidFile, traceDir, settingsDir string
	hostFD, readyFD := -1, -1
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Serve the experiment API inside a node (started by labctl up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := log.New(os.Stderr, fmt.Sprintf("agent %s/%s: ", lab, node), log.LstdFlags|log.Lmicroseconds)
			// Started by netns.Start in a mount namespace of its own: mount
			// a sysfs that shows this node's interfaces.
			if err := netns.MountSysfs(); err != nil {
				logger.Printf("warning: %v (/sys shows another namespace's interfaces)", err)
			}
			os.Remove(socket)
			// The socket is created 0600 from the start: a umask around
			// bind leaves no window in which another user could connect.
			old := syscall.Umask(0o177)
			lis, err := net.Listen("unix", socket)
			syscall.Umask(old)
			if err != nil {
				return fmt.Errorf("agent %s/%s: %w", lab, node, err)
			}
			if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
				return fmt.Errorf("agent %s/%s: pid file: %w", lab, node, err)
			}
			defer os.Remove(pidFile)
			if settingsDir == "" {
				settingsDir = filepath.Join(filepath.Dir(socket), "settings", node)
			}
			svc := &agent.Server{Lab: lab, Node: node, Version: version, Registry: all.Agent(), SettingsDir: settingsDir}
			if hostFD >= 0 {
				svc.Host = func(fn func() error) error { return netns.DoFD("host", hostFD, fn) }
			}
			// Settings a previous agent of this node changed and could not
			// put back (it was killed) are restored before anything runs.
			if restored, err := svc.RestoreSettings(); len(restored) > 0 || err != nil {
				logger.Printf("restored settings left by a previous agent: %v (errors: %v)", restored, err)
			}
			topts := traces.Options{Service: "labctl-agent", Endpoint: g.otlpEndpoint, LocalDir: traceDir,
				Attributes: []attribute.KeyValue{traces.KeyLab.String(lab), traces.KeyNode.String(node)}}
			if hostFD >= 0 {
				// The collector listens in the host's namespace, not this node's.
				topts.Dial = traces.DialInNamespace(hostFD)
			}
			tp, err := traces.Setup(cmd.Context(), topts)
			if err != nil {
				return fmt.Errorf("agent %s/%s: %w", lab, node, err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), traces.ShutdownTimeout+time.Second)
				defer cancel()
				_ = tp.Shutdown(ctx)
			}()
			srv := agent.NewGRPCServer(svc, serverTracing())
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() {
				<-ctx.Done()
				logger.Print("stopping")
				// Running roles get their context cancelled by Stop; give
				// them a moment to restore what they changed.
				t := time.AfterFunc(2*time.Second, srv.Stop)
				srv.GracefulStop()
				t.Stop()
			}()
			logger.Printf("serving on %s (pid %d, version %s)", socket, os.Getpid(), version)
			if readyFD >= 0 {
				// Listening, with health SERVING: connections queue until Serve
				// accepts them, so up can return now.
				ready := os.NewFile(uintptr(readyFD), "ready")
				_, _ = ready.Write([]byte{1})
				ready.Close()
			}
			return srv.Serve(lis)
		},
	}
	cmd.Flags().StringVar(&lab, "lab", "", "lab name")
	cmd.Flags().StringVar(&node, "node", "", "node name")
	cmd.Flags().StringVar(&socket, "socket", "", "Unix socket to listen on")
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "file to write the pid to")
	cmd.Flags().StringVar(&settingsDir, "settings-dir", "", "journals of the settings roles change (default: settings/NODE beside the socket)")
	cmd.Flags().IntVar(&hostFD, "host-netns-fd", -1, "inherited descriptor of the host's network namespace")
	cmd.Flags().StringVar(&traceDir, "trace-dir", "", "local store of the agent's spans")
	cmd.Flags().IntVar(&readyFD, "ready-fd", -1, "inherited pipe to write one byte to once serving")
	for _, f := range []string{"lab", "node", "socket", "pid-file"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
