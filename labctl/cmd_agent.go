package main

import (
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/labctl/labctl/experiments/all"
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
			return agent.Daemon{Lab: lab, Node: node, Version: version, Registry: all.Agent(), Socket: socket, PidFile: pidFile,
				SettingsDir: settingsDir, HostFD: hostFD, Ready: readyFD,
				Traces:        traces.Options{Endpoint: g.otlpEndpoint, LocalDir: traceDir},
				ServerOptions: []grpc.ServerOption{serverTracing()},
			}.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&lab, "lab", "", "lab name")
	cmd.Flags().StringVar(&node, "node", "", "node name")
	cmd.Flags().StringVar(&socket, "socket", "", "Unix socket to listen on")
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "file to write the pid to")
	cmd.Flags().StringVar(&settingsDir, "settings-dir", "", "journals of the settings roles change (default: settings/NODE beside the socket)")
	cmd.Flags().IntVar(&hostFD, "host-netns-fd", -1, "inherited descriptor of the host's network namespace (labs.AgentHostNetnsFD)")
	cmd.Flags().StringVar(&traceDir, "trace-dir", "", "local store of the agent's spans")
	cmd.Flags().IntVar(&readyFD, "ready-fd", -1, "inherited pipe to write one byte to once serving (labs.AgentReadyFD)")
	for _, f := range []string{"lab", "node", "socket", "pid-file"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
