package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/labctl/labctl/netns"
	"github.com/labctl/labctl/netns/cni"
	"github.com/labctl/labctl/topologies"
)

func newPlanCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "plan FILE|EXAMPLE",
		Short: "Show what up would create, touching nothing",
		Long: `Plan reads a topology, checks it (every problem with file:line:column), checks
the host read-only (host interfaces exist, namespace names are free), and prints
what labctl up would create: namespaces, links with their interface names,
addresses and settings, routes, sysctls and firewall rules.

FILE is a topology file, or the name of an embedded example (quickstart, paths,
capture-order, busy-poll, routed). -o json prints the full plan.`,
		Example: `  labctl plan topologies/examples/quickstart.yaml
  labctl plan routed -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := loadPlan(args[0])
			if err != nil {
				return err
			}
			if err := netns.CheckHost(plan); err != nil {
				return err
			}
			if len(plan.CNI) > 0 {
				r := &cni.Runner{Path: g.cniPaths()}
				if err := r.Check(cmd.Context(), plan.CNI); err != nil {
					return err
				}
			}
			return emit(cmd.OutOrStdout(), g.output, plan, func(w *tabwriter.Writer) { planTable(w, plan) })
		},
	}
}

func planTable(w *tabwriter.Writer, p *topologies.Plan) {
	fmt.Fprintf(w, "lab %s: %d nodes, %d bridges, %d links (address pool %s)\n\n", p.Lab, len(p.Nodes), len(p.Bridges), len(p.Links), p.Pool)
	row(w, "NODE", "NAMESPACE", "AGENT", "SETTINGS")
	for _, n := range p.Nodes {
		var s []string
		for _, x := range n.Sysctls {
			s = append(s, x.Key+"="+x.Value)
		}
		for _, r := range n.Routes {
			s = append(s, "route "+routeText(r))
		}
		for _, r := range n.Firewall {
			s = append(s, "rule "+ruleText(r))
		}
		for _, e := range n.Exec {
			s = append(s, "exec "+e)
		}
		row(w, n.Name, n.Namespace, n.Agent, strings.Join(s, "; "))
	}
	fmt.Fprintln(w)
	row(w, "LINK", "KIND", "ENDS")
	for _, l := range p.Links {
		var ends []string
		for _, e := range l.Ends {
			ends = append(ends, ifaceText(e))
		}
		if l.Host != "" {
			ends = append(ends, "host "+l.Host)
		}
		row(w, l.ID, l.Kind, strings.Join(ends, "  <->  "))
	}
	for _, c := range p.CNI {
		row(w, c.ID, "cni", fmt.Sprintf("%s:%s by %s, run in %s", c.Node, c.Interface, strings.Join(c.Types(), " → "), c.Host))
	}
}

func ifaceText(e topologies.Iface) string {
	who := e.Node
	if who == "" {
		who = "fabric"
	}
	s := who + ":" + e.Name
	var attrs []string
	for _, a := range e.Addresses {
		attrs = append(attrs, a.String())
	}
	if e.Master != "" {
		attrs = append(attrs, "on "+e.Master)
	}
	if e.MTU != 0 {
		attrs = append(attrs, fmt.Sprintf("mtu %d", e.MTU))
	}
	for _, o := range e.Offloads {
		attrs = append(attrs, fmt.Sprintf("%s %s", o.Name, map[bool]string{true: "on", false: "off"}[o.On]))
	}
	if e.Qdisc != nil {
		attrs = append(attrs, "qdisc "+e.Qdisc.Kind)
	}
	if len(attrs) > 0 {
		s += " (" + strings.Join(attrs, ", ") + ")"
	}
	return s
}

func routeText(r topologies.Route) string {
	s := r.Dst.String()
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

func ruleText(r topologies.Rule) string {
	parts := []string{r.Chain}
	if r.Proto != "" {
		parts = append(parts, r.Proto)
	}
	if r.Src.IsValid() {
		parts = append(parts, "src "+r.Src.String())
	}
	if r.Dst.IsValid() {
		parts = append(parts, "dst "+r.Dst.String())
	}
	if !r.Dport.IsZero() {
		parts = append(parts, "dport "+r.Dport.String())
	}
	if !r.Sport.IsZero() {
		parts = append(parts, "sport "+r.Sport.String())
	}
	return strings.Join(append(parts, r.Action), " ")
}
