package labs

import (
	"context"
	"fmt"
	"sync"

	"github.com/labctl/labctl/netns"
	"github.com/labctl/labctl/topologies"
)

// LabStatus is a lab as the kernel and its agents have it, beside its plan.
type LabStatus struct {
	Lab, Source string
	Nodes       []*NodeStatus
	Links       []LinkStatus
	// Drift lists the differences between the plan and the kernel, one
	// line each.
	Drift []string
}

// NodeStatus is one node: its namespace, interfaces and agent.
type NodeStatus struct {
	Name, Namespace string
	Present         bool
	Interfaces      []*InterfaceStatus
	Agent           AgentState
}

// InterfaceStatus is one interface of a node, with its planned settings.
type InterfaceStatus struct {
	Name      string
	Up        bool
	MTU       int
	Addresses []string
}

// LinkStatus is one link of the plan and whether all its ends exist.
type LinkStatus struct {
	ID, Kind string
	Present  bool
	Made     []string // a cni attachment: what its plugins reported making
}

// Status compares a lab with its plan and asks every agent for its health.
func (h *Host) Status(ctx context.Context, lab string) (*LabStatus, error) {
	s, err := h.load(lab)
	if err != nil {
		return nil, err
	}
	live, err := netns.Observe(ctx, s.plan)
	if err != nil {
		return nil, err
	}
	out := &LabStatus{Lab: lab, Source: s.source}
	nodes := map[string]*NodeStatus{}
	for _, n := range s.plan.Nodes {
		ns := &NodeStatus{Name: n.Name, Namespace: n.Namespace, Agent: AgentState{Wanted: n.Agent}}
		nodes[n.Namespace] = ns
		out.Nodes = append(out.Nodes, ns)
	}
	planned := map[string]topologies.Iface{}
	for _, l := range s.plan.Links {
		for _, e := range l.Ends {
			planned[e.Namespace+"/"+e.Name] = e
		}
	}
	for _, c := range s.plan.CNI {
		planned[c.Namespace+"/"+c.Interface] = topologies.Iface{Name: c.Interface, Addresses: c.Addresses()}
	}
	// Interfaces that exist, under their node, with their planned settings;
	// where the kernel differs from the plan, a drift line says how.
	ifaces := map[string]*InterfaceStatus{}
	for _, it := range live.Items {
		switch it.Kind {
		case "namespace":
			if n := nodes[it.Namespace]; n != nil {
				n.Present = it.State == netns.StatePresent
			}
		case "interface":
			if n := nodes[it.Namespace]; n != nil && it.State != netns.StateMissing {
				is := &InterfaceStatus{Name: it.Name, Up: it.State == netns.StatePresent}
				if p, ok := planned[it.Namespace+"/"+it.Name]; ok {
					is.MTU = p.MTU
					for _, a := range p.Addresses {
						is.Addresses = append(is.Addresses, a.String())
					}
				}
				ifaces[it.Namespace+"/"+it.Name] = is
				n.Interfaces = append(n.Interfaces, is)
			}
		}
		if it.State != netns.StatePresent {
			out.Drift = append(out.Drift, driftLine(it))
		}
	}
	for _, l := range s.plan.Links {
		present := true
		for _, e := range l.Ends {
			if _, ok := ifaces[e.Namespace+"/"+e.Name]; !ok && e.Node != "" {
				present = false
			}
		}
		out.Links = append(out.Links, LinkStatus{ID: l.ID, Kind: l.Kind, Present: present})
	}
	for _, c := range s.plan.CNI {
		_, present := ifaces[c.Namespace+"/"+c.Interface]
		out.Links = append(out.Links, LinkStatus{ID: c.ID, Kind: "cni", Present: present, Made: c.Result.Describe(c.Host, c.Node)})
	}
	var wg sync.WaitGroup
	for _, n := range s.plan.Nodes {
		if !n.Agent {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := h.AgentStatus(ctx, lab, n.Name)
			st.Wanted = true
			nodes[n.Namespace].Agent = st
		}()
	}
	wg.Wait()
	for _, n := range out.Nodes {
		if a := n.Agent; a.Wanted && a.Health != "SERVING" {
			out.Drift = append(out.Drift, fmt.Sprintf("node %s: agent %s: %s (labctl up restarts it)", n.Name, a.Health, a.Err))
		}
	}
	return out, nil
}

func driftLine(it netns.Item) string {
	s := fmt.Sprintf("%s %s %s: %s", it.Namespace, it.Kind, it.Name, it.State)
	if it.Want != "" || it.Got != "" {
		s += fmt.Sprintf(" (want %q, got %q)", it.Want, it.Got)
	}
	return s
}
