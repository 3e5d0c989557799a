// Package softirq is the experiment behind claims C4, C5, C6 and C18: UDP at
// rising offered load between two nodes, with the kernel's receive-side
// accounting read around each step: packets, NET_RX softirqs, NAPI polls
// (the backlog's and the interface's), hard interrupts, softnet drops and
// time squeezes, RPS IPIs, and the CPU time of softirqs and of ksoftirqd.
package softirq

import (
	"context"
	"fmt"
	"time"

	"github.com/labctl/labctl/experiments"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is softirq; the zero value is ready to use.
type Experiment struct{}

// Spec describes softirq.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "softirq",
		Summary: "Receive-side accounting under rising UDP load: packets vs softirqs vs NAPI polls vs IRQs, backlog drops, RPS, ksoftirqd",
		Description: `The client sends UDP datagrams of size bytes to the server over flows
connected sockets (distinct source ports), at each of rates datagrams per
second for duration, and as fast as it can (rate 0, "flood") for
flood_duration; the server reads them on one socket. Every direct link between
the two nodes is measured (topologies/examples/busy-poll.yaml has two veths:
napi0 with GRO on, plain0 without). Around each step the server reads:
  /proc/net/softnet_stat  processed, dropped, time_squeeze, received_rps per CPU
  /proc/softirqs          NET_RX runs per CPU
  napi:napi_poll          polls per CPU (perf counters): all, those of the
                          per-CPU backlog (dev_name "(no_device)") and those of
                          devices named like the receiving interface (a
                          tracepoint filter on dev_name, evaluated in the
                          kernel; host-wide, so another namespace's interface
                          of the same name counts too)
  /proc/interrupts        device IRQs (host-wide), those naming the interface,
                          and the CAL (function call) IPIs RPS uses
  /proc/stat, ksoftirqd/N softirq time and ksoftirqd CPU time per CPU
  the node's netstat      Udp.InDatagrams, Udp.RcvbufErrors
  SO_INCOMING_NAPI_ID     of the receiving socket
The client counts napi:napi_poll on its sending thread alone (a per-thread
perf counter): the polls that ran inside its own send calls, when bottom
halves were enabled again. That count is exact; the receive path is told by
the socket's NAPI id (only a device's NAPI instance has one).
Everything but the node's counters is host-wide: other work on the host shows
up in it. Each step first reads the same counters over baseline of idle time;
packets_per_softirq and packets_per_poll divide the interface's packets by the
step's softirqs and polls minus what the host did at the baseline's rate
(own_net_rx_softirqs, own_napi_polls); a step whose background would be more
than half of a count leaves that ratio out and says so, and a note flags a
step whose background is more than 10% of its softirqs.

Variants (variants parameter): load is the rates ladder; rps is a flood with
rps_cpus set on every rx queue of the receiving interface (through the
node's own sysfs, restored afterwards); backlog is a flood with
net.core.netdev_max_backlog set to backlog (a host-wide sysctl, restored
afterwards, also when the run is cancelled); rps-backlog is both.

What to expect on veth (Linux 6.x): a veth has no interrupt, so device IRQs
attributable to it are 0 (C4's "10,000 interrupts" has no subject here).
Without GRO, veth_xmit queues each packet to the sending CPU's backlog
(netif_rx) and raises NET_RX; the softirq then runs when the sender's send
call re-enables bottom halves, so each packet tends to get its own softirq and
its own backlog poll: no batching, no backlog build-up, no drops however small
the backlog (C5 does not hold without RPS). With GRO on, veth has its own NAPI
instance, but since Linux 5.13 veth_xmit only hands it packets eligible for
GRO (veth_skb_is_eligible_for_gro): from a sender with TSO on, as veths are
by default, that is UDP to a peer with rx-gro-list or rx-udp-gro-forwarding
on. So with udp_gro_forwarding (default true) the server turns that feature
on, for the step, on an interface that has GRO on (ethtool -K, undone
afterwards); then the interface's own polls count and the socket sees a NAPI
id. With udp_gro_forwarding=false a GRO veth shows the backlog like a plain
one. With RPS the packets are queued
to another CPU's backlog and that CPU, kicked by an IPI, polls many at once:
packets per poll rises, the backlog can overflow (C5), and if the budget
(netdev_budget, netdev_budget_usecs) runs out the rest moves to ksoftirqd
(time_squeeze, C18). Whether RPS raises throughput (C6) depends on spare CPUs:
with 2 vCPUs the receiving CPU also runs the reader. Softirq and ksoftirqd
times come in 10 ms ticks: a 300 ms step resolves about 3%.`,
		Claims:         []string{"C4", "C5", "C6", "C18"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.offered_per_s", "client.sender_polls_per_packet", "server.delivered_per_s", "server.link_rx_packets", "server.own_net_rx_softirqs", "server.own_napi_polls", "server.packets_per_poll", "server.device_irqs", "server.softnet_dropped", "server.time_squeeze", "server.ksoftirqd_share"},
		Params:         experiments.Declare(defaults),
	}
}

type params struct {
	Variants         []string         `param:"variants" choices:"load,rps,backlog,rps-backlog" help:"groups of steps: load (the rates), rps, backlog, rps-backlog (floods)"`
	Rates            []int            `param:"rates" min:"0" max:"5000000" help:"offered loads of the load group, datagrams/s; 0 is a flood"`
	Duration         time.Duration    `param:"duration" min:"100ms" max:"10s" help:"how long each paced load of the rates lasts"`
	FloodDuration    time.Duration    `param:"flood_duration" min:"100ms" max:"1s" help:"how long a flood lasts"`
	Size             experiments.Size `param:"size" min:"1" max:"1472" help:"UDP payload bytes"`
	Flows            int              `param:"flows" min:"1" max:"64" help:"sending sockets (source ports), used in turn: RPS spreads by flow"`
	Backlog          int              `param:"backlog" min:"1" max:"100000" help:"net.core.netdev_max_backlog of the backlog variants"`
	RPSCPUs          string           `param:"rps_cpus" help:"CPUs RPS may steer to: all (every online CPU) or a hex mask such as 2"`
	UDPGROForwarding bool             `param:"udp_gro_forwarding" help:"on a receiving interface with GRO on, turn rx-udp-gro-forwarding on for the step (veth's own NAPI then takes the UDP)"`
	Baseline         time.Duration    `param:"baseline" min:"0s" max:"1s" help:"idle time read before each step, to measure the host's background"`
	experiments.Pinning
	experiments.Rounds
}

// The sender and the reader are pinned apart by default: on two CPUs,
// a flood's softirqs would otherwise share the reader's CPU by chance.
var defaults = params{
	Variants: allGroups, Rates: []int{10000, 100000, 0}, Duration: 300 * time.Millisecond, FloodDuration: 300 * time.Millisecond,
	Size: 64, Flows: 8, Backlog: 8, RPSCPUs: "all", UDPGROForwarding: true, Baseline: 100 * time.Millisecond,
	Pinning: experiments.Pinning{ClientCPU: 0, ServerCPU: 1},
	Rounds:  experiments.Rounds{Repeats: experiments.Repeats{Repeats: 5}, MaxRepeats: 14, Budget: 90 * time.Second},
}

// Steps measures every variant on every direct link from the client to the
// server, interleaved within each repeat.
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	c := experiments.As[params](p)
	client, server := lab.Node(experiments.Client), lab.Node(experiments.Server)
	if client == server {
		return nil, fmt.Errorf("softirq needs the client and the server on two nodes (both are on %s)", client)
	}
	if _, err := rpsMask(c.RPSCPUs, []int{0}); err != nil {
		return nil, err
	}
	var links []experiments.Path
	for _, path := range lab.Paths(client, server) {
		if path.Direct {
			links = append(links, path)
		}
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("node %s has no link of its own to node %s", client, server)
	}
	var steps []*experimentv1.Step
	for rep := range c.Repeats.Repeats {
		for _, l := range links {
			for _, v := range variants(l.Iface, c.Variants, c.Rates, c.Backlog) {
				steps = append(steps, &experimentv1.Step{
					Variant: v.String(), Repeat: int32(rep), Params: stepParams(p, v),
					Roles: []*experimentv1.RoleAssignment{
						{Role: string(experiments.Server), Node: server, Address: l.Addr.String()},
						{Role: string(experiments.Client), Node: client},
					},
				})
			}
		}
	}
	return steps, nil
}

// stepParams are the run's parameters with duration set to what the step
// lasts (flood_duration for a flood), so that roles read one duration and
// the run's time estimate counts floods right.
func stepParams(p experiments.Params, v variant) map[string]string {
	m := p.Map()
	if v.Flood() {
		m["duration"] = m["flood_duration"]
	}
	return m
}

// Run runs the receiver (server) or the sender (client).
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	v, err := parseVariant(env.Step.GetVariant())
	if err != nil {
		return nil, err
	}
	switch env.Role {
	case experiments.Server:
		return receive(ctx, env, v)
	case experiments.Client:
		return flood(ctx, env, v)
	}
	return nil, fmt.Errorf("softirq has no role %q", env.Role)
}

// Figures: over the offered load as measured, the packets each NAPI poll
// took and what was dropped, for the load variants of each receive path.
func (Experiment) Figures() []experiments.Figure {
	load := `^(?P<series>[^/]+)/(?P<x>[0-9]+pps|flood)$`
	return []experiments.Figure{
		{Kind: experiments.Sweep, Title: "Packets per NAPI poll over offered load", Metrics: []string{"server.packets_per_poll"},
			Variants: load, X: "client.offered_per_s", LogX: true, XLabel: "offered packets per second", YLabel: "packets per poll"},
		{Kind: experiments.Sweep, Title: "Drops over offered load", Metrics: []string{"server.softnet_dropped", "server.udp_rcvbuf_errors"},
			Variants: load, X: "client.offered_per_s", LogX: true, XLabel: "offered packets per second", YLabel: "packets dropped in the step"},
		{Kind: experiments.Bars, Title: "Share of NET_RX time in ksoftirqd", Metrics: []string{"server.ksoftirqd_share"}, YLabel: "share"},
	}
}
