// Package captureorder is the experiment behind claim C7: where a packet
// capture (tcpdump's AF_PACKET socket) sits relative to netfilter. A peer
// sends a known number of UDP datagrams that a rule drops, once in INPUT on
// the receiver and once in OUTPUT on the sender, and the run counts them at
// every stage: sent, on the sender's interface, captured at the receiver,
// matched by the rule, delivered to the application.
package captureorder

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is capture-order; the zero value is ready to use.
type Experiment struct{}

// Variants: where the drop rule sits.
const (
	variantInput  = "input"  // INPUT chain of the receiver
	variantOutput = "output" // OUTPUT chain of the sender
)

// Where the rules come from.
const (
	rulesTopology = "topology" // the nodes' firewall rules from the topology file
	rulesRun      = "run"      // a table created for each step and deleted after it
)

// tagLen is the length of the tag that starts every datagram of a step.
const tagLen = 16

// Spec describes capture-order.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "capture-order",
		Summary: "Does tcpdump see packets that netfilter drops? INPUT drop vs OUTPUT drop, counted at every stage",
		Description: `Claim C7 says tcpdump captures packets that the firewall drops on the way in,
because the capture tap runs before netfilter, and misses packets dropped on
the way out, because there the tap runs after it.

The client sends count UDP datagrams of size bytes, each starting with a tag
unique to the step, to the server's address. Variant input: they go to
input_port, which the server's node drops in its INPUT chain. Variant output:
they go to output_port, which the client's node drops in its OUTPUT chain.
Counted, for each step:
  sent           sendto calls, and how many succeeded or failed with EPERM;
  wire           frames with the tag leaving the client's interface (an
                 AF_PACKET capture there, egress copies);
  captured       frames with the tag arriving on the server's interface (an
                 AF_PACKET capture, ingress copies): what tcpdump would show;
  rule           the packets counter of the drop rule (nft -j list table);
  delivered      datagrams with the tag read from a UDP socket bound to the
                 port on the server.
When tcpdump is installed (and the tcpdump parameter is true) both roles also
run tcpdump -Q in|out on their interface and report its "packets captured".
The capture sockets are the mechanism tcpdump uses: SOCK_RAW AF_PACKET
sockets bound with ETH_P_ALL, so they sit on the ptype_all list.

Expected on every kernel since netfilter's hooks have been where they are
(Linux 2.4): input: captured == sent, rule == sent, delivered == 0. On
ingress, __netif_receive_skb_core hands the frame to every ptype_all socket
before ip_rcv runs; the NF_INET_LOCAL_IN hook comes later, in
ip_local_deliver. Output: every sendto fails with EPERM (a locally generated
packet dropped in NF_INET_LOCAL_OUT returns -EPERM from ip_local_out), rule ==
sent, wire == 0 and captured == 0: the egress tap, dev_queue_xmit_nit, runs in
dev_hard_start_xmit, long after ip_local_out. (With rules=run the rule also
counts, but the sender sees the same errors.)

rules=topology uses the nodes' firewall rules (topologies/examples/
capture-order.yaml has both); rules=run creates, for each step, a table
inet labctl_capture with one chain at priority -10 (before the topology's
filter chains) and deletes it when the role ends, also when the run is
cancelled or fails.`,
		Claims:         []string{"C7"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.sent_packets", "client.send_eperm_packets", "client.wire_packets", "server.captured_packets", "server.rule_packets", "client.rule_packets", "server.delivered_packets", "server.tcpdump_packets", "client.tcpdump_packets"},
		Params:         experiments.Declare(defaults),
	}
}

type params struct {
	Count      int              `param:"count" min:"1" max:"100000" help:"datagrams sent per step"`
	Size       experiments.Size `param:"size" min:"16" max:"1472" help:"UDP payload bytes per datagram (the first 16 are the step's tag)"`
	InputPort  int              `param:"input_port" min:"1" max:"65535" help:"UDP port the receiver's INPUT chain drops"`
	OutputPort int              `param:"output_port" min:"1" max:"65535" help:"UDP port the sender's OUTPUT chain drops"`
	Rules      string           `param:"rules" choices:"topology,run" help:"topology: the nodes' own firewall rules; run: a table created for each step and deleted after it"`
	Tcpdump    bool             `param:"tcpdump" help:"cross-check with tcpdump when it is installed"`
	experiments.Repeats
}

var defaults = params{Count: 1000, Size: 64, InputPort: 9000, OutputPort: 9001, Rules: rulesTopology, Tcpdump: true,
	Repeats: experiments.Repeats{Repeats: 5}}

// Steps alternates the two variants; both roles keep their nodes.
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	c := experiments.As[params](p)
	client, server := lab.Node(experiments.Client), lab.Node(experiments.Server)
	if c.InputPort == c.OutputPort {
		return nil, fmt.Errorf("input_port and output_port are both %d; the variants need a port each", c.InputPort)
	}
	addr := netip.MustParseAddr("127.0.0.1")
	if client != server {
		var err error
		if addr, err = lab.Address(client, server); err != nil {
			return nil, err
		}
	}
	if c.Rules == rulesTopology {
		for _, drop := range []struct {
			node, chain string
			port        int
		}{{server, "input", c.InputPort}, {client, "output", c.OutputPort}} {
			n, ok := lab.Plan.Node(drop.node)
			if !ok {
				return nil, fmt.Errorf("lab has no node %s", drop.node)
			}
			if _, ok := topologyRule(n, drop.chain, drop.port); !ok {
				return nil, fmt.Errorf("node %s has no firewall rule that drops udp dport %d in chain %s (and nothing else); add one to the topology or run with --param rules=run",
					drop.node, drop.port, drop.chain)
			}
		}
	}
	var steps []*experimentv1.Step
	for rep := range c.Repeats.Repeats {
		for _, v := range []string{variantInput, variantOutput} {
			steps = append(steps, &experimentv1.Step{
				Variant: v, Repeat: int32(rep), Params: p.Map(),
				Roles: []*experimentv1.RoleAssignment{
					{Role: string(experiments.Server), Node: server, Address: addr.String()},
					{Role: string(experiments.Client), Node: client},
				},
			})
		}
	}
	return steps, nil
}

// plan is what one role of one step does, from the variant and parameters.
type plan struct {
	variant string
	port    int
	// ownsRule: the drop rule is in this role's node and chain.
	ownsRule bool
	chain    string
	table    string
	tag      []byte
}

func planOf(env *experiments.Env) (plan, error) {
	p := experiments.As[params](env.Params)
	v := env.Step.GetVariant()
	pl := plan{variant: v, table: topologyTable, tag: stepTag(env.RunID, v, env.Step.GetRepeat())}
	if p.Rules == rulesRun {
		pl.table = runTable
	}
	switch v {
	case variantInput:
		pl.port, pl.chain, pl.ownsRule = p.InputPort, "input", env.Role == experiments.Server
	case variantOutput:
		pl.port, pl.chain, pl.ownsRule = p.OutputPort, "output", env.Role == experiments.Client
	default:
		return plan{}, fmt.Errorf("capture-order has no variant %q", v)
	}
	return pl, nil
}

// stepTag is the first bytes of every datagram of one step: both roles compute
// it from the run, the variant and the repeat, so captures count the step's
// own datagrams and nothing else.
func stepTag(runID, variant string, repeat int32) []byte {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", runID, variant, repeat)
	tag := make([]byte, tagLen)
	copy(tag, "labctlC7")
	binary.BigEndian.PutUint64(tag[8:], h.Sum64())
	return tag
}

// Run runs the receiver (server) or the sender (client).
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	pl, err := planOf(env)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if pl.ownsRule && experiments.As[params](env.Params).Rules == rulesRun {
		if err := env.Settings.Run(ctx, runRuleUndo(), "nft", runRuleScript(pl.chain, pl.port)); err != nil {
			return nil, fmt.Errorf("node %s: create the run's drop rule: %w", env.Node, err)
		}
	}
	switch env.Role {
	case experiments.Server:
		return serve(ctx, env, pl)
	case experiments.Client:
		return send(ctx, env, pl)
	}
	return nil, fmt.Errorf("capture-order has no role %q", env.Role)
}

// observers are the counters a role runs on its interface during a step.
type observers struct {
	capture *capture
	tcpdump *tcpdump
	note    string   // why tcpdump did not run
	rule    dropRule // the rule's counter before the step
}

// abort ends the observers of a step that failed; after stop it does
// nothing.
func (o *observers) abort() {
	o.capture.Stop()
	if o.tcpdump != nil {
		o.tcpdump.Stop()
	}
}

func startObservers(ctx context.Context, env *experiments.Env, iface string, dir direction, pl plan) (*observers, error) {
	o := &observers{}
	var err error
	if pl.ownsRule {
		if o.rule, err = readRule(ctx, pl.table, pl.chain, pl.port); err != nil {
			return nil, fmt.Errorf("node %s: the drop rule: %w", env.Node, err)
		}
	}
	if o.capture, err = openCapture(iface, dir, pl.port, pl.tag); err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	switch {
	case !experiments.As[params](env.Params).Tcpdump:
		o.note = "tcpdump cross-check off (tcpdump=false)"
	case dir == egress && iface == "lo":
		// libpcap skips the outgoing copy of every frame on a loopback
		// device, since the same frame comes back as incoming.
		o.note = "no tcpdump cross-check for frames leaving lo: libpcap ignores the outgoing copies on loopback"
	default:
		o.tcpdump, err = startTcpdump(ctx, iface, dir, pl.port, experiments.As[params](env.Params).Count)
		switch {
		case errors.Is(err, errNoTcpdump):
			o.note = "tcpdump is not installed: no cross-check"
		case err != nil:
			o.capture.Stop()
			return nil, fmt.Errorf("node %s: %w", env.Node, err)
		}
	}
	return o, nil
}

// stop ends the observers and reports what they counted.
func (o *observers) stop(ctx context.Context, env *experiments.Env, r *experimentv1.RoleReport, pl plan, metric string) error {
	cc, err := o.capture.Stop()
	if err != nil {
		return fmt.Errorf("node %s: %w", env.Node, err)
	}
	where := fmt.Sprintf("%s %s", env.Node, o.capture.Iface)
	r.Metrics[metric] = float64(cc.Matched)
	report.AddEvidence(r, "capture_"+o.capture.Dir.String()+"_packets", float64(cc.Matched), "packets",
		fmt.Sprintf("AF_PACKET SOCK_RAW ETH_P_ALL socket on %s, %s copies, IPv4 UDP to port %d with the step's tag", where, o.capture.Dir, pl.port), "")
	report.AddEvidence(r, "capture_drops", float64(cc.Drops), "packets", "PACKET_STATISTICS tp_drops of that socket",
		"frames the kernel could not queue to the capture; non-zero makes the count a lower bound")
	if o.tcpdump != nil {
		tc, err := o.tcpdump.Stop()
		if err != nil {
			return fmt.Errorf("node %s: %w", env.Node, err)
		}
		r.Metrics["tcpdump_packets"] = float64(tc.Captured)
		report.AddEvidence(r, "tcpdump_packets", float64(tc.Captured), "packets",
			fmt.Sprintf("tcpdump -i %s -Q %s 'udp dst port %d': packets captured", o.capture.Iface, map[direction]string{ingress: "in", egress: "out"}[o.capture.Dir], pl.port),
			fmt.Sprintf("received by filter %d, dropped by kernel %d", tc.ReceivedByFilter, tc.DroppedByKernel))
	} else {
		r.Notes = append(r.Notes, o.note)
	}
	if pl.ownsRule {
		after, err := readRule(ctx, pl.table, pl.chain, pl.port)
		if err != nil {
			return fmt.Errorf("node %s: the drop rule: %w", env.Node, err)
		}
		d := after.Packets - o.rule.Packets
		r.Metrics["rule_packets"] = float64(d)
		report.AddEvidence(r, "rule_packets", float64(d), "packets",
			"nft -j list table inet "+pl.table+": counter delta of "+after.String()+" in node "+env.Node,
			fmt.Sprintf("the first rule of chain %s that drops udp dport %d", pl.chain, pl.port))
	}
	return nil
}

// serve receives: it captures on its interface, counts what reaches a UDP
// socket on the port, and waits for the sender's word that it is done.
func serve(ctx context.Context, env *experiments.Env, pl plan) (*experimentv1.RoleReport, error) {
	addr := env.Address()
	iface, err := ifaceWithAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	udp, err := sock.Listen(sock.UDP, netip.AddrPortFrom(addr, uint16(pl.port)), 0)
	if err != nil {
		return nil, fmt.Errorf("node %s: the application's socket: %w", env.Node, err)
	}
	defer udp.Close()
	delivered, err := startTally(int(udp), 2048, func(b []byte, _ unix.Sockaddr) bool { return hasTag(b, pl.tag) })
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	defer delivered.Stop()
	obs, err := startObservers(ctx, env, iface, ingress, pl)
	if err != nil {
		return nil, err
	}
	defer obs.abort()
	ctl, err := sock.Listen(sock.TCP, netip.AddrPortFrom(addr, 0), 1)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	local, err := sock.LocalAddr(ctl)
	if err != nil {
		return nil, err
	}
	stop := role.ShutdownOnDone(ctx, ctl)
	env.Ready(int(local.Port()))
	conn, err := sock.Accept(ctl)
	stop()
	if err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: accept: %w", err))
	}
	defer conn.Close()
	stop = role.ShutdownOnDone(ctx, conn)
	defer stop()
	var done [8]byte // the sender's count of successful sends
	if _, err := sock.ReadFull(conn, done[:]); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: waiting for the sender: %w", err))
	}
	r := env.Report()
	n, err := delivered.Stop()
	if err != nil {
		return nil, fmt.Errorf("node %s: the application's socket: %w", env.Node, err)
	}
	r.Metrics["delivered_packets"] = float64(n)
	report.AddEvidence(r, "delivered_packets", float64(n), "packets",
		fmt.Sprintf("datagrams with the step's tag read from a UDP socket bound to %v in node %s", netip.AddrPortFrom(addr, uint16(pl.port)), env.Node), "")
	if err := obs.stop(ctx, env, r, pl, "captured_packets"); err != nil {
		return nil, err
	}
	if _, err := sock.WriteFull(conn, []byte{1}); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: %w", err))
	}
	r.Environment = report.Node(ctx, env.Node, nil)
	return r, nil
}

// send captures its own outgoing frames and sends the step's datagrams.
func send(ctx context.Context, env *experiments.Env, pl plan) (*experimentv1.RoleReport, error) {
	peer, err := env.Peer(experiments.Server)
	if err != nil {
		return nil, err
	}
	dst := netip.AddrPortFrom(peer.Addr(), uint16(pl.port))
	iface, err := kstat.RouteIface(peer.Addr())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	obs, err := startObservers(ctx, env, iface, egress, pl)
	if err != nil {
		return nil, err
	}
	defer obs.abort()
	env.Ready(0)
	conn, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return nil, fmt.Errorf("control connection: %w", err)
	}
	defer conn.Close()
	stop := role.ShutdownOnDone(ctx, conn)
	defer stop()
	fd, err := sock.Listen(sock.UDP, netip.AddrPortFrom(netip.IPv4Unspecified(), 0), 0)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	p := experiments.As[params](env.Params)
	count := p.Count
	payload := make([]byte, p.Size)
	copy(payload, pl.tag)
	before, _ := kstat.ReadNetStat()
	env.Progressf("sending %d datagrams to %v", count, dst)
	var ok, eperm, other int
	var otherErr error
	for i := range count {
		binary.BigEndian.PutUint32(payload[tagLen:min(tagLen+4, len(payload))], uint32(i))
		switch _, err := sock.SendTo(fd, payload, 0, dst); {
		case err == nil:
			ok++
		case errors.Is(err, unix.EPERM):
			eperm++
		default:
			other++
			otherErr = err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	after, _ := kstat.ReadNetStat()
	var word [8]byte
	binary.BigEndian.PutUint64(word[:], uint64(ok))
	if _, err := sock.WriteFull(conn, word[:]); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: %w", err))
	}
	// The receiver answers once it has counted; the step ends then.
	if _, err := sock.ReadFull(conn, word[:1]); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: waiting for the receiver: %w", err))
	}
	r := env.Report()
	r.Metrics["sent_packets"] = float64(count)
	r.Metrics["send_ok_packets"] = float64(ok)
	r.Metrics["send_eperm_packets"] = float64(eperm)
	r.Metrics["send_error_packets"] = float64(other)
	if other > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d sends failed with an error other than EPERM, the last: %v", other, otherErr))
	}
	report.AddEvidence(r, "send_eperm_packets", float64(eperm), "packets",
		"sendto calls that failed with EPERM", "a locally generated packet dropped by netfilter makes ip_local_out return -EPERM")
	report.AddEvidence(r, "ip_out_discards", float64(after.Sub(before)["Ip.OutDiscards"]), "packets",
		"/proc/net/snmp Ip.OutDiscards delta in node "+env.Node, "ip_send_skb counts a send that ip_local_out refused")
	if err := obs.stop(ctx, env, r, pl, "wire_packets"); err != nil {
		return nil, err
	}
	r.Environment = report.Node(ctx, env.Node, nil)
	return r, nil
}

func hasTag(b, tag []byte) bool {
	return len(b) >= len(tag) && string(b[:len(tag)]) == string(tag)
}

// ifaceWithAddr is the interface that holds addr (lo for 127.0.0.1).
func ifaceWithAddr(addr netip.Addr) (string, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return "", fmt.Errorf("interface of %v: %w", addr, err)
			}
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no interface has address %v", addr)
}

// Figures: where the packets were seen, from the send call to the socket.
func (Experiment) Figures() []experiments.Figure {
	return []experiments.Figure{{Kind: experiments.Bars, Title: "Where the packets were seen",
		Metrics: []string{"client.sent_packets", "client.send_eperm_packets", "client.wire_packets", "client.tcpdump_packets",
			"server.captured_packets", "server.tcpdump_packets", "server.rule_packets", "server.delivered_packets"}, YLabel: "packets"}}
}
