// Package iomodels is the io-models experiment: one request/response
// exchange, TCP or UDP, served with each of the ways a Linux server can wait
// for data (blocking recv, a spinning non-blocking recv, select, poll, epoll
// level and edge triggered, io_uring with and without SQPOLL, and Go's
// net.Conn), measuring what each costs the serving thread per message in
// latency, CPU, context switches and system calls (claims C8, C9, C15, C16).
package iomodels

import (
	"context"
	"fmt"
	"time"

	"github.com/labctl/labctl/experiments"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is io-models; the zero value is ready to use.
type Experiment struct{}

type params struct {
	// The choices are Models; the default, every model, fails NewRegistry
	// if the two disagree.
	Models    []model          `param:"models" choices:"blocking,spin,select,poll,epoll-lt,epoll-et,uring,uring-sqpoll,netconn" help:"server I/O models to compare"`
	Protocols []string         `param:"protocols" choices:"tcp,udp" help:"transports"`
	Idle      []int            `param:"idle" min:"0" max:"10000" help:"idle TCP connections beside the active one (0: the plain comparison; >0: select/poll/epoll over TCP only)"`
	Size      experiments.Size `param:"size" min:"1" max:"32KiB" help:"bytes per request and per response"`
	Count     int              `param:"count" min:"0" max:"100000000" help:"stop after this many measured round trips (0: run for duration)"`
	experiments.Timing
	experiments.Rounds
	SQIdle        time.Duration `param:"sqpoll_idle" min:"1ms" max:"1s" help:"time the SQPOLL thread polls without work before it sleeps (whole ms)"`
	CountSyscalls bool          `param:"count_syscalls" help:"count every system call of the serving process with perf counters on raw_syscalls:sys_enter (slows every syscall on the host by ~0.1 µs while on)"`
	experiments.Pinning
}

var defaults = params{
	Models:        models,
	Protocols:     []string{protoTCP, protoUDP},
	Idle:          []int{0, 500},
	Size:          64,
	Timing:        experiments.Timing{Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond},
	Rounds:        experiments.Rounds{Repeats: experiments.Repeats{Repeats: 5}, MaxRepeats: 14, Budget: 90 * time.Second},
	SQIdle:        10 * time.Millisecond,
	CountSyscalls: true,
	Pinning:       experiments.Unpinned,
}

// Spec describes io-models.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "io-models",
		Summary: "the same request/response served with blocking recv, spin, select, poll, epoll, io_uring and Go's net.Conn",
		Description: `The client sends a request of size bytes and waits for the echo, one at a time,
over TCP (TCP_NODELAY) or UDP, with blocking calls on a locked OS thread, as rr
does; what changes from variant to variant is how the server waits for the
request:

  blocking      blocking recv: the thread sleeps until data arrives
  spin          non-blocking recv in a loop until it stops answering EAGAIN
  select, poll  wait for readability with pselect6/ppoll, then recv
  epoll-lt      epoll_wait level triggered, then one recv
  epoll-et      epoll_wait edge triggered, then recv until EAGAIN
  uring         io_uring RECV and SEND (Linux 5.6+): one io_uring_enter
                submits the response and the next receive and waits for both
  uring-sqpoll  the same with a kernel submission thread (SQPOLL; unregistered
                descriptors need 5.11+): submitting costs no system call while
                the thread is awake, waiting still does
  netconn       Go's net.Conn over the runtime's netpoller (the only variant
                that uses package net)

Each request carries a phase byte, so the server measures exactly the
client's measured messages. Per variant: RTT percentiles and messages/s (the
client), and for the serving thread CPU time and voluntary/involuntary
context switches per message (getrusage RUSAGE_THREAD over the measured
messages; for netconn the whole process, RUSAGE_SELF, because goroutines move
between threads) and system calls per message: the loop counts its own calls
(waits, recvs, sends; the ring's io_uring_enter calls for uring), and with
count_syscalls the perf counters on raw_syscalls:sys_enter count every call of
the serving process (the only count netconn has; it includes the Go runtime).
uring-sqpoll also reports the CPU time of its iou-sqp kernel thread, which
getrusage of the serving thread does not see.

Idle mode (idle=N, N > 0, TCP, select/poll/epoll only): the client first opens
N idle connections that the server watches beside the active one. The server
reports its cost per message and the bare cost of one readiness check
(wait_ns_per_call: the call with timeout 0 and nothing ready, timed after the
measured messages): select and poll scan every descriptor on every call, epoll
returns its ready list, so only the first two should grow with N. select cannot
watch a descriptor at or above FD_SETSIZE (1024): such a step reports the model
unsupported instead of failing (the agent's own descriptors count too). The
role raises RLIMIT_NOFILE when the hard limit is too low (root may).

Expect on veth and loopback about 1 voluntary context switch per message on
the server for every model that sleeps while it waits (all but spin):
getrusage counts the switch out, and the switch back in is the other half of
C8's "two". spin never sleeps and pays with a busy CPU instead. System calls
per message: blocking 2, select/poll/epoll-lt 3, epoll-et up to 4 (the recv
that drains to EAGAIN; when it finds the next request instead, the wait is
saved), spin 2 plus one per empty poll, uring 1, uring-sqpoll 1 (the wait)
with SQPOLL wakeups near 0. A RECV with no data waits on a poll callback
since Linux 5.7 (IORING_FEAT_FAST_POLL); on 5.6 an io-wq worker thread blocks
in it instead. On 2 CPUs the SQPOLL thread takes a CPU for itself, which the
client and the softirqs then lack: expect it to be slower there. A variant
that cannot run on this kernel (io_uring disabled by kernel.io_uring_disabled
or seccomp, SQPOLL refused) answers "declined" and is reported unsupported
with the errno.

Defaults (9 models x tcp,udp at idle 0, the 4 multiplexers at idle 500, 5
repeats, 200 ms + 50 ms warm-up per step, interleaved: 110 steps) take about
40 s on a loaded 2-CPU machine; idle=0,10,100,1000,10000 with
models=select,poll,epoll-lt,epoll-et and protocols=tcp makes the C9 scaling
table in about 70 s (a step with 10,000 connections takes 2-3 s).`,
		Claims:         []string{"C8", "C9", "C15", "C16"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.rtt_p50_ns", "client.rtt_p99_ns", "client.msgs_per_s", "server.cpu_ns_per_msg", "server.vcsw_per_msg", "server.ivcsw_per_msg", "server.syscalls_per_msg", "server.wait_ns_per_call"},
		Params:         experiments.Declare(defaults),
	}
}

// Steps interleaves the variants across repeats (A B C A B C ...).
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	place, err := lab.ServerClient()
	if err != nil {
		return nil, err
	}
	c := experiments.As[params](p)
	variants, err := plan(c.Models, c.Protocols, c.Idle)
	if err != nil {
		return nil, err
	}
	var steps []*experimentv1.Step
	for rep := range c.Repeats.Repeats {
		for _, v := range variants {
			vp, err := p.With(v.Params())
			if err != nil {
				return nil, err
			}
			steps = append(steps, &experimentv1.Step{Variant: v.Name(), Repeat: int32(rep), Params: vp.Map(), Roles: place.Roles()})
		}
	}
	return steps, nil
}

// Run runs the server or the client of one step.
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	v, err := variantOf(env.Params.Map())
	if err != nil {
		return nil, err
	}
	p := experiments.As[params](env.Params)
	switch env.Role {
	case experiments.Server:
		return serve(ctx, env, serverConfig{variant: v, Size: int(p.Size), CPU: p.ServerCPU,
			SQIdle: p.SQIdle, CountSyscalls: p.CountSyscalls})
	case experiments.Client:
		peer, err := env.Peer(experiments.Server)
		if err != nil {
			return nil, err
		}
		return runClient(ctx, env, peer, clientConfig{variant: v, Size: int(p.Size), Duration: p.Duration,
			Count: p.Count, Warmup: p.Warmup, CPU: p.ClientCPU})
	}
	return nil, fmt.Errorf("io-models has no role %q", env.Role)
}

// Figures: the round trips per model, and what the server's waiting cost
// in system calls and sleeps.
func (Experiment) Figures() []experiments.Figure {
	return append(experiments.RoundTrips(),
		experiments.Figure{Kind: experiments.Bars, Title: "Server system calls per message", Metrics: []string{"server.syscalls_per_msg"}, YLabel: "system calls per message"},
		experiments.Figure{Kind: experiments.Bars, Title: "Server voluntary context switches per message", Metrics: []string{"server.vcsw_per_msg"}, YLabel: "switches per message"})
}
