// Package zerocopy is the zero-copy sending experiment: one TCP stream per
// step from the client (the sender) to the server (the receiver), through
// one of several send paths (read+write, mmap+write, sendfile, splice,
// write, MSG_ZEROCOPY, io_uring SEND and SEND_ZC) and receive paths (read,
// recv with MSG_TRUNC, TCP_ZEROCOPY_RECEIVE), over a lab link or loopback,
// at message sizes from 4 KiB to 1 MiB. It reports what each path costs per
// byte and, from the kernel's own completions, whether the copy it is meant
// to avoid was avoided.
package zerocopy

import (
	"context"
	"fmt"
	"time"

	"github.com/labctl/labctl/experiments"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is zerocopy; the zero value is ready to use.
type Experiment struct{}

// Spec describes zerocopy.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "zerocopy",
		Summary: "what each send path costs per byte, and whether the kernel really avoided the copy",
		Description: `The client streams to the server over one TCP connection for duration (after
warmup), writing messages of one size at a time through one send path:
  read_write     pread a file into a buffer, write(2) the buffer
  mmap_write     write(2) from a mapping of the file
  sendfile       sendfile(2) from the file
  splice         splice(2) file → pipe → socket
  write          write(2) from a memory buffer (the baseline of the memory paths)
  msg_zerocopy   send(2) with MSG_ZEROCOPY (SO_ZEROCOPY set; TCP since Linux 4.14)
  uring_send     io_uring IORING_OP_SEND (5.6)
  uring_send_zc  io_uring IORING_OP_SEND_ZC (6.0) with IORING_SEND_ZC_REPORT_USAGE (6.2)
  uring_send_zc_fixed  the same from a registered buffer
The file is the client role's own: a temporary file in the agent's temp
directory, unlinked as soon as it is open and filled, so nothing is left
behind. The server receives with read(2), recv(2) with MSG_TRUNC (the data
is discarded in the kernel and never reaches the application: a bound on
receiving without the copy, not a way to receive), or TCP_ZEROCOPY_RECEIVE into a mapping of the
socket (4.18), with the bytes it could not map read by recv.

Per step: throughput; CPU time per byte of the sending and the receiving
thread (getrusage RUSAGE_THREAD over the measured window: the sender's
duration, the receiver's stream after warmup); host CPU per byte, busy and
softirq, from per-CPU /proc/stat deltas over the sender's window (10 ms
ticks, and host-wide: everything else the host runs counts too); system
calls per byte and per message.

Evidence: MSG_ZEROCOPY completions read from the error queue and SEND_ZC
notifications, counting the sends the kernel flagged as copied after all
(SO_EE_CODE_ZEROCOPY_COPIED, IORING_NOTIF_USAGE_ZC_COPIED): copied_ratio.
The bytes TCP_ZEROCOPY_RECEIVE mapped rather than copied: mapped_ratio. The
egress device's byte count and scatter-gather feature (without it sendfile
and splice copy too). TCP retransmissions and, of those, the duplicates the
receiver reported (DSACK): over veth with the roles on different CPUs most
are spurious, caused by reordering, not loss (TCP also sends from the
softirq that handles ACKs, on the receiver's CPU, and each CPU queues its
packets on its own backlog); pinning both roles to one CPU avoids it.

What to expect: sendfile and splice save the copy through user space
everywhere. MSG_ZEROCOPY and SEND_ZC avoid the copy only on a real NIC:
on loopback and veth the kernel copies the pages when the packet reaches a
local socket (skb_orphan_frags_rx), and when a packet socket such as
tcpdump watches the device; copied_ratio is then 1 and the result says
"zero-copy not achieved on this path" instead of crediting zero copy with
any difference. On a NIC, the kernel's documentation (msg_zerocopy.rst)
expects MSG_ZEROCOPY to pay off from writes of about 10 KB: pinning pages
and completing sends costs more than copying a small write. Without
CONFIG_IRQ_TIME_ACCOUNTING a thread's CPU time includes the softirq work
done in its context, which over veth and loopback is much of the receive
path. TCP_ZEROCOPY_RECEIVE maps only whole, page-aligned, private pages
(page-cache and compound pages are refused since Linux 6.8 and the stable
kernels of early 2024). Over loopback and veth the receiver gets the
sender's pages: it maps little or nothing of what copying sends, sendfile
and splice sent (compound and page-cache pages) but most of the fresh
pages into which the kernel copied zero-copy sends; across a NIC it
depends on the driver's receive buffers. mapped_ratio shows which.

The verdict compares each path with the one it improves on (sendfile,
splice and mmap_write with read_write; msg_zerocopy with write; SEND_ZC
with SEND) on sender CPU per byte, size by size, and names the crossover:
the smallest size from which the path costs less at every larger size.
Compare the write and sendfile streams with iperf3 and iperf3 -Z on the
same link: one connection, large writes.`,
		Claims:         []string{"C10", "C11"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.throughput_bps", "client.cpu_ns_per_byte", "server.cpu_ns_per_byte", "client.host_cpu_ns_per_byte", "client.host_softirq_ns_per_byte", "client.syscalls_per_msg", "client.copied_ratio", "server.mapped_ratio"},
		Params:         experiments.Declare(defaults),
	}
}

type params struct {
	Send  []string           `param:"send" choices:"read_write,mmap_write,sendfile,splice,write,msg_zerocopy,uring_send,uring_send_zc,uring_send_zc_fixed" help:"send paths"`
	Recv  []string           `param:"recv" choices:"read,recv_trunc,tcp_zerocopy" help:"receive paths"`
	Sizes []experiments.Size `param:"sizes" min:"4KiB" max:"1MiB" help:"bytes per send (per read for read_write)"`
	Link  []string           `param:"link" choices:"lab,loopback" help:"lab: between the server's and the client's node; loopback: inside the client's node over 127.0.0.1"`
	experiments.Timing
	experiments.Rounds
	FileSize  experiments.Size `param:"file_size" min:"1MiB" max:"1GiB" help:"size of the client's file the file-based paths send, cyclically"`
	RecvChunk experiments.Size `param:"recv_chunk" min:"4KiB" max:"16MiB" help:"bytes the server asks for per read, or maps per TCP_ZEROCOPY_RECEIVE (rounded up to whole pages)"`
	experiments.Pinning
}

var defaults = params{
	Send:      []string{readWrite, mmapWrite, sendfile, splice, write, msgZerocopy, uringSend, uringSendZC},
	Recv:      []string{read},
	Sizes:     []experiments.Size{4 << 10, 64 << 10, 1 << 20},
	Link:      []string{linkLab},
	Timing:    experiments.Timing{Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond},
	Rounds:    experiments.Rounds{Repeats: experiments.Repeats{Repeats: 5}, MaxRepeats: 14, Budget: 90 * time.Second},
	FileSize:  16 << 20,
	RecvChunk: 256 << 10,
	Pinning:   experiments.Unpinned,
}

// Steps makes one step per link, size, send path, receive path and repeat,
// the variants interleaved within each repeat so that drift on the machine
// hits them alike.
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	c := experiments.As[params](p)
	client, server := lab.Node(experiments.Client), lab.Node(experiments.Server)
	type place struct {
		name   string // the variant's link label
		server string
		addr   string
	}
	var places []place
	for _, l := range c.Link {
		switch l {
		case linkLoopback:
			places = append(places, place{"lo", client, "127.0.0.1"})
		case linkLab:
			if client == server {
				return nil, fmt.Errorf("link=lab needs the client and the server on two nodes, both are on %s (use link=loopback for one node)", client)
			}
			paths := lab.Paths(client, server)
			if len(paths) == 0 {
				return nil, fmt.Errorf("node %s has no IPv4 address that node %s can reach", server, client)
			}
			kind := paths[0].Kind
			if kind == "move" {
				kind = "nic"
			}
			places = append(places, place{kind, server, paths[0].Addr.String()})
		}
	}
	var steps []*experimentv1.Step
	for r := range c.Repeats.Repeats {
		for _, pl := range places {
			for _, size := range c.Sizes {
				for _, send := range c.Send {
					for _, recv := range c.Recv {
						v := variant{Link: pl.name, Send: send, Recv: recv, Size: int(size)}
						link := linkLab
						if pl.name == "lo" {
							link = linkLoopback
						}
						one := c
						one.Link, one.Send, one.Recv, one.Sizes = []string{link}, []string{send}, []string{recv}, []experiments.Size{size}
						sp, err := experiments.Set(p, one)
						if err != nil {
							return nil, err
						}
						steps = append(steps, &experimentv1.Step{
							Variant: v.String(),
							Repeat:  int32(r),
							Params:  sp.Map(),
							Roles: []*experimentv1.RoleAssignment{
								{Role: string(experiments.Server), Node: pl.server, Address: pl.addr},
								{Role: string(experiments.Client), Node: client},
							},
						})
					}
				}
			}
		}
	}
	return steps, nil
}

// Run runs the server (receiver) or the client (sender).
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	switch env.Role {
	case experiments.Server:
		return serve(ctx, env)
	case experiments.Client:
		return stream(ctx, env)
	}
	return nil, fmt.Errorf("zerocopy has no role %q", env.Role)
}

// Figures: sender CPU per byte over message size for each send path, set
// against read+write (the caption names where each pays off), and the
// share of zero-copy sends the kernel copied after all.
func (Experiment) Figures() []experiments.Figure {
	variants := `^[^/]+/(?P<line>[^/]+)/[^/]+/(?P<x>[^/]+)$`
	return []experiments.Figure{
		{Kind: experiments.Sweep, Title: "Sender CPU per byte over message size", Metrics: []string{"client.cpu_ns_per_byte"},
			Variants: variants, Baseline: readWrite, LogX: true, XLabel: "message size (bytes)", YLabel: "ns of sender CPU per byte"},
		{Kind: experiments.Sweep, Title: "Zero-copy sends the kernel copied", Metrics: []string{"client.copied_ratio"},
			Variants: variants, LogX: true, XLabel: "message size (bytes)", YLabel: "copied / completed"},
		{Kind: experiments.Bars, Title: "Throughput", Metrics: []string{"client.throughput_bps"}, YLabel: "Gbit/s", Scale: 1e-9},
	}
}
