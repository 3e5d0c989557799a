// Package busypoll is the busy-poll experiment: rr's request/response
// between two nodes under every way Linux offers to busy poll a NAPI
// instance (SO_BUSY_POLL, net.core.busy_read and busy_poll,
// SO_PREFER_BUSY_POLL with deferred device interrupts, EPIOCSPARAMS on
// epoll), against the blocking and epoll baselines and a user-space spin,
// on loopback, veth as created, veth with GRO, veth with an XDP program
// and a NIC. The kernel's own evidence (the socket's NAPI id, the
// BusyPollRxPackets counter, NAPI poll counts) decides whether busy
// polling engaged; where it did not, the result says so instead of
// reporting a gain. It answers claims C1 and C2 of FIELD-NOTES.md.
package busypoll

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/labctl/labctl/experiments"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is busy-poll; the zero value is ready to use.
type Experiment struct{}

func choices[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

// defaultDevices leave out the veth-gro-tso control.
var defaultDevices = []Device{Loopback, Veth, VethGRO, VethXDP, NIC}

// defaultMechanisms keep a default run under a minute on two vCPUs: the
// sysctl of the claim as sockperf users set it, epoll's own parameters
// with their baseline, and the spin that tells why. The others
// (so_busy_poll, so_busy_poll_budget, prefer_busy_poll, busy_poll) are one
// parameter away.
var defaultMechanisms = []Mechanism{Blocking, BusyRead, Epoll, EpollParams, Spin}

// autoDevices is napi_devices' default: Steps replaces it by the devices
// at both ends of each step's path.
const autoDevices = "auto"

// Spec describes busy-poll.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "busy-poll",
		Summary: "Does busy polling cut receive latency, at what CPU cost, and did it engage? (C1, C2)",
		Description: `Busy polling lets a task that waits for data poll the device's NAPI instance
itself instead of sleeping until an interrupt, the NET_RX softirq and a wakeup
have delivered the packet. Each step runs rr's request/response (size-byte
request and response, one at a time, TCP_NODELAY) between the client's and the
server's nodes under one mechanism on one device condition; both roles apply
the mechanism.

Mechanisms (T is each of timeouts):
  blocking             baseline: blocking recv (rr.Serve and rr.Client)
  so_busy_poll         SO_BUSY_POLL=T on both sockets
  so_busy_poll_budget  SO_BUSY_POLL=T and SO_BUSY_POLL_BUDGET=budget (Linux 5.11+)
  busy_read            net.core.busy_read=T: sockets created while it is set
                       take it as their SO_BUSY_POLL
  prefer_busy_poll     SO_BUSY_POLL=T, SO_PREFER_BUSY_POLL (5.11+), and on both
                       interfaces napi_defer_hard_irqs and gro_flush_timeout:
                       after a busy poll the NAPI instance stays with the
                       application (a timer, not the device, reschedules it)
  epoll                baseline of the epoll path: epoll_wait over connections
                       connections, one request in flight, blocking read/write
  busy_poll            epoll path with net.core.busy_poll=T
  epoll_params         epoll path with EPIOCSPARAMS busy_poll_usecs=T on both
                       epoll instances (Linux 6.9+)
  spin                 user-space spin: recv on a non-blocking socket until it
                       returns data. A different mechanism: the thread never
                       sleeps, but polls no device; the softirq still delivers.

Devices: loopback (127.0.0.1 in the server's node); veth (a veth link of the
topology without GRO); veth-gro (a veth link the topology creates with gro on,
with TSO turned off on both ends for the step); veth-gro-tso (the same link
with TSO left on: a control, not measured by default); veth-xdp (the veth link
without GRO, with the experiment's own XDP pass program, built from BPF
instructions, attached in driver mode to both ends for the step through a BPF
link, which the kernel detaches when the agent exits however it exits); nic (a
NIC moved into the server's node or a macvlan on one). A device the lab lacks
is reported as unsupported.

Why TSO matters: since Linux 5.13 a veth with GRO on has a NAPI instance, but
since 5.14 veth_xmit hands it only skbs worth aggregating
(veth_skb_is_eligible_for_gro): with TSO on at the sending end, a TCP skb goes
to the backlog like on a plain veth, and the socket sees NAPI id 0. GRO on is
not enough for TCP; veth-gro-tso shows it. An XDP program makes every skb
eligible (and, while attached, takes TSO off the veth's peer).

The measuring threads are pinned apart (client_cpu, server_cpu; CPUs 0 and 1
by default): a busy-polling thread that shares its CPU with its peer spins
while the peer cannot run, so each message costs a whole busy-poll timeout,
and two spinning threads on one CPU wait for each other's time slice. The
scheduler often puts a woken thread on its waker's CPU, so unpinned runs
switch between that state and the intended one from step to step.

Reported per step: RTT percentiles p50-p99.99 (the full round trip; sockperf
prints half of it), msg/s, and for both roles the CPU time and context
switches per message of the measuring thread over the measured messages
(RUSAGE_THREAD; a phase byte excludes warm-up on both sides); host-wide
softirq time and NET_RX softirq runs per message.

Evidence: SO_INCOMING_NAPI_ID of both roles' sockets; the TcpExt
BusyPollRxPackets delta of each node (per namespace), per message; the
napi:napi_poll tracepoint hits of the path's devices (perf counters with a
dev_name filter; the tracepoint fires for softirq and busy polls alike, so many
polls per message mean a task was polling) and the polls that found packets;
the XDP program's packet count; SO_BUSY_POLL, the device attributes and the
host's busy_read and busy_poll read back during the step.

A busy-poll variant engaged when, in most repeats, a socket had a NAPI id and
BusyPollRxPackets grew (the note says when some repeats did not). On loopback
and on veth as created there is no NAPI id: every knob silently does nothing,
and the summary says "busy polling not engaged" instead of a gain. The verdict
compares each engaged variant with its baseline on the same device (median p50
RTT over repeats; a difference within the spread of the repeats is not
significant), and shows spin beside it: when spinning in user space gains as
much, the gain came from not sleeping, not from polling the device.

What to expect: on veth with GRO on (TSO off) or XDP, sockperf (64-byte TCP)
on small VMs showed about 30 µs one-way blocking and under 3 µs with
busy_read=50. On a loaded 2-vCPU VM with Linux 6.18 this experiment measured a
p50 RTT of about 160 µs blocking and 11-16 µs busy polling (sockperf on the
same link: 139 and 10 µs), 85-95% of the packets taken by the busy poll, and
a spin as fast as busy polling on every device: there, the gain is the sleep
and wakeup avoided. A busy-polling thread holds its CPU for the whole wait and
voluntary context switches fall to zero. On a NIC the effect also depends on
its interrupt moderation (ethtool -c).

Host-wide settings: net.core.busy_read and busy_poll exist only in the host's
network namespace; the server role sets them through the agent's handle on it,
and while the step runs they apply to every socket created on the host, in
every namespace. Every setting (sysctls, device attributes) goes through the
settings journal and is restored after the step, on cancel, on failure, and
after a crash at the next agent start or labctl down. irq_suspend_timeout
(Linux 6.13+, netdev netlink napi-set, used with epoll and prefer_busy_poll) is
not varied: no command-line tool sets it, so the journal could not undo it
after a crash.`,
		Claims:         []string{"C1", "C2"},
		Roles:          []string{"server", "client"},
		SummaryMetrics: []string{"client.rtt_p50_ns", "client.rtt_p99_ns", "client.rtt_p999_ns", "client.cpu_ns_per_msg", "server.cpu_ns_per_msg", "client.vcsw_per_msg", "client.host_softirq_ns_per_msg", "client.napi_polls_per_msg", "server.busy_poll_rx_packets_per_msg"},
		Params: []*experimentv1.ParamSpec{
			experiments.ListParam("devices", "device conditions to measure (a device the lab lacks is reported as unsupported)",
				experimentv1.ParamKind_PARAM_KIND_ENUM, strings.Join(choices(defaultDevices), ","), "", "", choices(Devices)...),
			experiments.ListParam("mechanisms", "how both roles wait for data (see the description)",
				experimentv1.ParamKind_PARAM_KIND_ENUM, strings.Join(choices(defaultMechanisms), ","), "", "", choices(Mechanisms)...),
			experiments.ListParam("timeouts", "busy-poll times, each measured (whole µs)", experimentv1.ParamKind_PARAM_KIND_DURATION, "50us", "0s", "1ms"),
			experiments.IntParam("budget", "SO_BUSY_POLL_BUDGET of so_busy_poll_budget, packets per poll (kernel default 8)", 64, 1, 1024),
			experiments.IntParam("defer_hard_irqs", "napi_defer_hard_irqs of prefer_busy_poll", 2, 1, 1000),
			experiments.DurationParam("gro_flush_timeout", "gro_flush_timeout of prefer_busy_poll: how long the NAPI instance waits for the next busy poll", 200*time.Microsecond, time.Microsecond, 10*time.Millisecond),
			experiments.IntParam("connections", "connections of the epoll path (one request in flight)", 4, 1, 64),
			experiments.SizeParam("size", "bytes per request and per response", 64, 1, 64<<10),
			experiments.Duration(150 * time.Millisecond),
			experiments.Warmup(30 * time.Millisecond),
			experiments.Repeats(5),
			experiments.MaxRepeats(14),
			experiments.Budget(90 * time.Second),
			experiments.BoolParam("count_napi_polls", "count NAPI polls of the path's devices with perf events (an observer on every NAPI poll)", true),
			{Name: "napi_devices", Kind: experimentv1.ParamKind_PARAM_KIND_STRING, Default: autoDevices,
				Help: "devices whose NAPI polls are counted, comma-separated (auto: both ends of each step's path)"},
			// Pinned apart by default: a busy-polling thread that shares its
			// CPU with its peer spins while the peer cannot run, so every
			// message costs a whole busy-poll timeout (and two spinning
			// threads on one CPU wait for each other's time slice).
			experiments.IntParam("client_cpu", "pin the client's measuring thread to this CPU (-1: not pinned)", 0, -1, 4095),
			experiments.IntParam("server_cpu", "pin the server's measuring thread to this CPU (-1: not pinned; default apart from the client)", 1, -1, 4095),
		},
	}
}

// Steps places the roles of each device condition on the lab's path for
// it and repeats every variant, interleaved (all variants of repeat 1,
// then of repeat 2, ...).
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	var mechs []Mechanism
	for _, m := range p.List("mechanisms") {
		mechs = append(mechs, Mechanism(m))
	}
	type device struct {
		r        route
		variants []Variant
	}
	var devices []device
	for _, name := range p.List("devices") {
		d := Device(name)
		r, ok := findRoute(lab, d)
		if !ok {
			continue // Judge reports it as unsupported
		}
		devices = append(devices, device{r, Expand(d, mechs, p.Durations("timeouts"), p.Int("budget"))})
	}
	if len(devices) == 0 {
		return nil, fmt.Errorf("lab %s has no path for any of the devices %s between node %s (client) and node %s (server)",
			lab.Plan.Lab, strings.Join(p.List("devices"), ", "), lab.Node("client"), lab.Node("server"))
	}
	var steps []*experimentv1.Step
	for rep := range p.Int("repeats") {
		for _, d := range devices {
			params := p.Map()
			if params["napi_devices"] == autoDevices {
				params["napi_devices"] = strings.Join(d.r.napiDevices, ",")
			}
			for _, v := range d.variants {
				steps = append(steps, &experimentv1.Step{
					Variant: v.String(),
					Repeat:  int32(rep),
					Params:  params,
					Roles: []*experimentv1.RoleAssignment{
						{Role: "server", Node: d.r.serverNode, Address: d.r.serverAddr.String()},
						{Role: "client", Node: d.r.clientNode},
					},
				})
			}
		}
	}
	return steps, nil
}

// Run runs the server or the client of a step.
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	if env.Role != "server" && env.Role != "client" {
		return nil, fmt.Errorf("busy-poll has no role %q", env.Role)
	}
	v, err := ParseVariant(env.Step.GetVariant())
	if err != nil {
		return nil, err
	}
	return run(ctx, env, v)
}
