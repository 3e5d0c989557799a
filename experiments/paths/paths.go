// Package paths is the experiment behind claim C12: a request/response and
// a bulk stream over every path a packet can take between two sockets of a
// lab (127.0.0.1, the node's own address, a veth, a bridge, a macvlan on a
// NIC, a moved NIC), with the interface counters of both nodes showing which
// device carried the packets.
package paths

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/experiments/rr"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is paths; the zero value is ready to use.
type Experiment struct{}

// Spec describes paths.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "paths",
		Summary: "RTT and throughput over 127.0.0.1, the node's own IP, veth, bridge, macvlan and NIC, with the device that carried them",
		Description: `Claim C12 says that 127.0.0.1 and a host's own IP address both go over the
loopback device, not the NIC, and at the same speed. The kernel's local
routing table holds a route of type local for every address of the host, and
such routes send packets through lo (ip route get <own address> shows "local
... dev lo"); nothing reaches the NIC's driver.

Every path starts in the client's node (--client, default the lab's first
node): loopback (127.0.0.1) and own-ip (the node's first lab address) keep
all roles in that node; veth, bridge, macvlan and nic put the server and the
sink on the node at the far end of the first direct path of that kind from
the client (--server is not used). macvlan is a path with a macvlan at one
end (its packets leave through the parent NIC); nic is a moved NIC reached
without a macvlan. In topologies/examples/paths.yaml the NIC is a veth pair
standing in for one, and the result says so (the interface kind is
recorded): the macvlan path there crosses macvlan + veth, not a NIC driver.

Each step measures its path twice from the client: rr's TCP request/response
against the server role (size bytes each way, RTT percentiles, CPU and
context switches per message), then one TCP stream of write_size writes for
bulk_duration into the sink role, which times the bytes from its first to its
last read (so bytes still in the send buffer when the client stops count only
once read). Evidence, in every role: the rx+tx packet delta of each interface
of the role's node over the step (rtnetlink IFLA_STATS64, per namespace), so
the result names the device that carried the packets; and from the client,
the route the kernel chose for the server's address.

Expected: loopback and own-ip carried by lo with the lab interfaces at
(almost) 0 packets, and the same RTT and throughput within the spread of
repeats; veth and bridge slower than lo (a bridge adds a hop); macvlan over
the veth stand-in close to veth. The verdict compares loopback and own-ip with
an equivalence test: the same speed means the confidence interval of their
ratio lies within ±5%; while that is undecided, the run adds rounds of
repeats of both, up to max_repeats within its budget (docs/statistics.md). The local table
has worked this way since Linux 2.2; lo's 64 KiB MTU (Linux 3.6 and later)
is why bulk over lo moves far larger packets than a veth with MTU 1500.`,
		Claims:         []string{"C12"},
		Roles:          experiments.RoleNames(experiments.Server, sink, experiments.Client),
		SummaryMetrics: []string{"client.rtt_p50_ns", "client.rtt_p99_ns", "client.msgs_per_s", "sink.throughput_bps", "client.cpu_ns_per_msg", "server.cpu_ns_per_msg"},
		Params:         experiments.Declare(defaults),
	}
}

// sink is the role the client's bulk stream goes to, on the server's node.
const sink experiments.Role = "sink"

type params struct {
	Paths []string         `param:"paths" choices:"loopback,own-ip,veth,bridge,macvlan,nic" help:"kinds of path to measure; kinds the lab has no path for are named in the verdict"`
	Size  experiments.Size `param:"size" min:"1" max:"1MiB" help:"rr: bytes per request and per response"`
	experiments.Timing
	WriteSize    experiments.Size `param:"write_size" min:"1" max:"4MiB" help:"bulk: bytes per write"`
	BulkDuration time.Duration    `param:"bulk_duration" min:"50ms" max:"1m" help:"bulk: time the client writes"`
	experiments.Rounds
	experiments.Pinning
}

var defaults = params{
	Paths:        allKinds,
	Size:         64,
	Timing:       experiments.Timing{Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond},
	WriteSize:    64 << 10,
	BulkDuration: 300 * time.Millisecond,
	Rounds:       experiments.Rounds{Repeats: experiments.Repeats{Repeats: 5}, MaxRepeats: 14, Budget: 90 * time.Second},
	Pinning:      experiments.Unpinned,
}

// Steps measures each kind of path found from the client's node, the kinds
// interleaved within each repeat.
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	c := experiments.As[params](p)
	client := lab.Node(experiments.Client)
	targets, missing := targets(lab, client, c.Paths)
	if len(targets) == 0 {
		return nil, fmt.Errorf("node %s has no path of the kinds asked for (%v)", client, missing)
	}
	var steps []*experimentv1.Step
	for rep := range c.Repeats.Repeats {
		for _, t := range targets {
			steps = append(steps, &experimentv1.Step{
				Variant: t.Kind,
				Repeat:  int32(rep),
				Params:  p.Map(),
				Roles: []*experimentv1.RoleAssignment{
					{Role: string(experiments.Server), Node: t.Node, Address: t.Addr.String()},
					{Role: string(sink), Node: t.Node, Address: t.Addr.String()},
					{Role: string(experiments.Client), Node: client},
				},
			})
		}
	}
	return steps, nil
}

// Run runs one role of one step, with the node's interface counters read
// before and after it.
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	before, err := kstat.ReadLinkStats(nil)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	var r *experimentv1.RoleReport
	switch env.Role {
	case experiments.Server:
		r, err = rr.Serve(ctx, env, int(p.Size), p.ServerCPU, nil)
	case sink:
		r, err = serveBulk(ctx, env, int(p.WriteSize), p.ServerCPU)
	case experiments.Client:
		r, err = client(ctx, env, p)
	default:
		return nil, fmt.Errorf("paths has no role %q", env.Role)
	}
	if err != nil {
		return nil, err
	}
	after, err := kstat.ReadLinkStats(nil)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	addLinkEvidence(r, env.Node, after.Sub(before))
	return r, nil
}

// client runs rr against the server, then the bulk stream into the sink,
// and reports both in one report (their metric names differ by unit).
func client(ctx context.Context, env *experiments.Env, p params) (*experimentv1.RoleReport, error) {
	server, err := env.Peer(experiments.Server)
	if err != nil {
		return nil, err
	}
	sink, err := env.Peer(sink)
	if err != nil {
		return nil, err
	}
	r, err := rr.Client(ctx, env, server, rr.ClientOptions{Size: int(p.Size), Duration: p.Duration,
		Warmup: p.Warmup, CPU: p.ClientCPU}, nil)
	if err != nil {
		return nil, err
	}
	bulk, err := sendBulk(ctx, env, sink, bulkOptions{Chunk: int(p.WriteSize), Duration: p.BulkDuration, CPU: p.ClientCPU})
	if err != nil {
		return nil, err
	}
	for k, v := range bulk.GetMetrics() {
		r.Metrics[k] = v
	}
	r.Evidence = append(r.Evidence, bulk.GetEvidence()...)
	r.Notes = append(r.Notes, routeNote(server.Addr().AsSlice()))
	return r, nil
}

// routeNote says which device the kernel routes dst through, as
// `ip route get` does.
func routeNote(dst net.IP) string {
	routes, err := netlink.RouteGet(dst)
	if err != nil || len(routes) == 0 {
		return fmt.Sprintf("route to %s: lookup failed: %v", dst, err)
	}
	rt := routes[0]
	dev := fmt.Sprint(rt.LinkIndex)
	if l, err := netlink.LinkByIndex(rt.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	typ := "unicast"
	if rt.Type == unix.RTN_LOCAL {
		typ = "local (the local table: the address is this node's own)"
	}
	return fmt.Sprintf("route to %s: dev %s, type %s", dst, dev, typ)
}

func shutdownWrite(fd sock.FD) error {
	if err := unix.Shutdown(int(fd), unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown fd %d for writing: %w", fd, err)
	}
	return nil
}

// Figures: the round trips per path, and each path's bulk throughput.
func (Experiment) Figures() []experiments.Figure {
	return append(experiments.RoundTrips(),
		experiments.Figure{Kind: experiments.Bars, Title: "Bulk throughput", Metrics: []string{"sink.throughput_bps"}, YLabel: "Gbit/s", Scale: 1e-9})
}
