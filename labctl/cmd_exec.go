package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/labctl/labctl/labs"
	"github.com/labctl/labctl/netns"
)

func newExecCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec LAB NODE -- COMMAND [ARG...]",
		Short: "Run a command inside a node",
		Long: `Exec runs a command in a node's network namespace, as
ip netns exec labctl-<lab>.<node> COMMAND does (which works too): /sys shows
the node's interfaces, and the exit status is the command's. It runs on this
host only, also with --server.`,
		Example: `  labctl exec quickstart n1 -- ip -br addr
  labctl exec quickstart n1 -- ping -c3 198.18.0.2`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 2 {
				return usagef("usage: labctl exec LAB NODE -- COMMAND [ARG...]")
			}
			lab, node := args[0], args[1]
			plan, err := labs.DefaultHost(version).Plan(lab)
			if err != nil {
				return err
			}
			n, ok := plan.Node(node)
			if !ok {
				return usagef("lab %s has no node %q", lab, node)
			}
			if !netns.Exists(n.Namespace) {
				return fmt.Errorf("node %s: namespace %s is missing (labctl up %s rebuilds it)", node, n.Namespace, lab)
			}
			ip, err := exec.LookPath("ip")
			if err != nil {
				return fmt.Errorf("exec needs iproute2's ip: %w", err)
			}
			argv := append([]string{"ip", "netns", "exec", n.Namespace}, args[2:]...)
			// Replace this process, so that signals, the terminal and the exit
			// status are the command's own.
			return syscall.Exec(ip, argv, os.Environ())
		},
	}
}
