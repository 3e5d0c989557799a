package labs

import (
	"context"
	"fmt"
	"sync"

	"github.com/labctl/labctl/netns"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/topologies"
)

// Status compares a lab with its plan and asks every agent for its health.
func (h *Host) Status(ctx context.Context, lab string) (*labv1.LabStatus, error) {
	s, err := h.load(lab)
	if err != nil {
		return nil, err
	}
	live, err := netns.Observe(ctx, s.plan)
	if err != nil {
		return nil, err
	}
	out := &labv1.LabStatus{Lab: lab, Source: s.source}
	nodes := map[string]*labv1.NodeStatus{}
	for _, n := range s.plan.Nodes {
		ns := &labv1.NodeStatus{Name: n.Name, Namespace: n.Namespace, Agent: &labv1.AgentStatus{Wanted: n.Agent}}
		nodes[n.Namespace] = ns
		out.Nodes = append(out.Nodes, ns)
	}
	planned := map[string]topologies.Iface{}
	for _, l := range s.plan.Links {
		for _, e := range l.Ends {
			planned[e.Namespace+"/"+e.Name] = e
		}
	}
	// Interfaces that exist, under their node, with their planned settings;
	// where the kernel differs from the plan, a drift line says how.
	ifaces := map[string]*labv1.InterfaceStatus{}
	for _, it := range live.Items {
		switch it.Kind {
		case "namespace":
			if n := nodes[it.Namespace]; n != nil {
				n.Present = it.State == netns.StatePresent
			}
		case "interface":
			if n := nodes[it.Namespace]; n != nil && it.State != netns.StateMissing {
				is := &labv1.InterfaceStatus{Name: it.Name, Up: it.State == netns.StatePresent}
				if p, ok := planned[it.Namespace+"/"+it.Name]; ok {
					is.Mtu = int32(p.MTU)
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
		out.Links = append(out.Links, &labv1.LinkStatus{Id: l.ID, Kind: l.Kind, Present: present})
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
			a := nodes[n.Namespace].Agent
			a.Health, a.Version, a.Pid, a.Socket, a.Error = st.Health, st.Version, int32(st.Pid), st.Socket, st.Err
		}()
	}
	wg.Wait()
	for _, n := range out.Nodes {
		if a := n.Agent; a.Wanted && a.Health != "SERVING" {
			out.Drift = append(out.Drift, fmt.Sprintf("node %s: agent %s: %s (labctl up restarts it)", n.Name, a.Health, a.Error))
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
