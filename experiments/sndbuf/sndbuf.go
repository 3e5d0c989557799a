// Package sndbuf is the sndbuf experiment (C17): a sender with a small
// SO_SNDBUF against a receiver that accepts the connection and does not
// read for a while. A non-blocking send then fails with EAGAIN once the
// send buffer and the receiver's window are full; a blocking one sleeps
// until the receiver starts reading.
package sndbuf

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is sndbuf; the zero value is ready to use.
type Experiment struct{}

// The two ways to send, one variant each.
const (
	nonBlocking = "nonblocking"
	blocking    = "blocking"
)

// Spec describes sndbuf.
func (Experiment) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{
		Name:    "sndbuf",
		Summary: "a full send buffer: non-blocking send returns EAGAIN, blocking send waits for the reader",
		Description: `The server sets SO_RCVBUF to rcvbuf on its listening socket (inherited by the
connection, and in force from the handshake, which fixes the window scale),
accepts the client's connection and does not read for stall; then it reads
everything until the client closes. The client connects, sets SO_SNDBUF to
sndbuf and writes chunks of chunk bytes:

  nonblocking  O_NONBLOCK: writes until send(2) fails, then waits for
               POLLOUT and writes again, until half the stall has passed.
               Reports the error (EAGAIN expected), the bytes accepted
               before the first EAGAIN and in all, and where they
               are: in the send queue (SIOCOUTQ; SIOCOUTQNSD of them not yet
               sent) and in the receiver's queue (SIOCINQ at the end of the
               stall), against SO_SNDBUF as the kernel reports it (twice the
               request: the other half pays for sk_buff overhead) and the
               window the receiver advertises (tcpi_snd_wnd of the sender,
               Linux 5.4+; tcpi_rcv_wnd of the receiver, 6.2+).
  blocking     writes bytes in all with blocking send(2). A send slept when
               the thread's voluntary context switches rose during it
               (getrusage). Reports the bytes sent before the first sleep,
               and for the send that was asleep when the receiver began
               reading (both sides read CLOCK_MONOTONIC, which all
               namespaces share): how long the sender was held from its
               first sleep until that send returned, how few bytes it got
               through meanwhile, and how long after the receiver began
               reading the send returned. The kernel wakes the sender now
               and then during the stall (an ACK frees room, the receiver
               collapses its queue and opens its window a little), so a
               stall shows as a few sleeps.

Expected on any Linux: EAGAIN after about SO_SNDBUF plus the receiver's
buffer of data; the blocking sender is held for about the stall, and the send
asleep at the release returns once the receiver's window update reaches it
(within a millisecond on veth; without a window update it would wait for its
own zero-window probe). The server's stall bounds every wait. Defaults: 2
variants x 5 repeats x ~0.3 s.`,
		Claims:         []string{"C17"},
		Roles:          experiments.RoleNames(experiments.Server, experiments.Client),
		SummaryMetrics: []string{"client.sndbuf_bytes", "server.rcvbuf_bytes", "client.first_eagain_bytes", "client.accepted_bytes", "server.queued_at_release_bytes", "client.bytes_before_block", "client.blocked_until_release_ns", "client.wake_after_release_ns"},
		Params:         experiments.Declare(defaults),
	}
}

type params struct {
	Variants []string         `param:"variants" choices:"nonblocking,blocking" help:"ways to send"`
	Sndbuf   experiments.Size `param:"sndbuf" min:"1KiB" max:"1MiB" help:"SO_SNDBUF the client asks for (the kernel doubles it, within net.core.wmem_max)"`
	Rcvbuf   experiments.Size `param:"rcvbuf" min:"1KiB" max:"1MiB" help:"SO_RCVBUF the server asks for (doubled likewise, within net.core.rmem_max)"`
	Stall    time.Duration    `param:"stall" min:"50ms" max:"5s" help:"how long the server leaves the connection unread"`
	Chunk    experiments.Size `param:"chunk" min:"1" max:"64KiB" help:"bytes per send call"`
	Bytes    experiments.Size `param:"bytes" min:"64KiB" max:"64MiB" help:"bytes the blocking variant sends in all (well above what the buffers hold)"`
	experiments.Repeats
}

var defaults = params{
	Variants: []string{nonBlocking, blocking},
	Sndbuf:   4 << 10,
	Rcvbuf:   4 << 10,
	Stall:    200 * time.Millisecond,
	Chunk:    1 << 10,
	Bytes:    256 << 10,
	Repeats:  experiments.Repeats{Repeats: 5},
}

// Steps alternates the variants across repeats; each step's variants
// parameter names its one variant.
func (Experiment) Steps(p experiments.Params, lab experiments.Lab) ([]*experimentv1.Step, error) {
	place, err := lab.ServerClient()
	if err != nil {
		return nil, err
	}
	c := experiments.As[params](p)
	var variants []string
	for _, v := range c.Variants {
		if !slices.Contains(variants, v) {
			variants = append(variants, v)
		}
	}
	var steps []*experimentv1.Step
	for rep := range c.Repeats.Repeats {
		for _, v := range variants {
			one := c
			one.Variants = []string{v}
			vp, err := experiments.Set(p, one)
			if err != nil {
				return nil, err
			}
			steps = append(steps, &experimentv1.Step{Variant: v, Repeat: int32(rep), Params: vp.Map(), Roles: place.Roles()})
		}
	}
	return steps, nil
}

// Run runs the stalled reader or the sender.
func (Experiment) Run(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	switch env.Role {
	case experiments.Server:
		return serve(ctx, env, int(p.Rcvbuf), p.Stall)
	case experiments.Client:
		peer, err := env.Peer(experiments.Server)
		if err != nil {
			return nil, err
		}
		if len(p.Variants) != 1 {
			return nil, fmt.Errorf("sndbuf client: step parameters name %d variants, want one", len(p.Variants))
		}
		return send(ctx, env, peer, clientConfig{variant: p.Variants[0], sndbuf: int(p.Sndbuf), chunk: int(p.Chunk),
			bytes: int(p.Bytes), stall: p.Stall})
	}
	return nil, fmt.Errorf("sndbuf has no role %q", env.Role)
}

// monotonic reads CLOCK_MONOTONIC, which every process of the host shares
// (labctl does not use time namespaces), so the two roles' readings compare.
func monotonic() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// serve accepts one connection, leaves it unread for stall, notes what is
// queued, then reads it to the end.
func serve(ctx context.Context, env *experiments.Env, rcvbuf int, stall time.Duration) (*experimentv1.RoleReport, error) {
	fd, done, err := role.AcceptOne(ctx, env, func(ln sock.FD) error { return sock.SetRecvBuffer(ln, rcvbuf) })
	if err != nil {
		return nil, err
	}
	defer done()
	accepted := time.Now()
	env.Progressf("leaving the connection unread for %v", stall)
	select {
	case <-time.After(stall):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r := env.Report()
	released := monotonic()
	r.Metrics["stall_ns"] = float64(time.Since(accepted))
	queued, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	if err != nil {
		return nil, fmt.Errorf("sndbuf server: SIOCINQ on fd %d: %w", fd, err)
	}
	got, err := sock.RecvBuffer(fd)
	if err != nil {
		return nil, err
	}
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return nil, fmt.Errorf("sndbuf server: TCP_INFO on fd %d: %w", fd, err)
	}
	r.Metrics["queued_at_release_bytes"] = float64(queued)
	r.Metrics["rcvbuf_bytes"] = float64(got)
	r.Metrics["rcv_wnd_bytes"] = float64(info.Rcv_wnd)
	report.AddEvidence(r, "queued_at_release", float64(queued), "bytes", "ioctl SIOCINQ on the server's socket at the end of the stall",
		"data the receiver holds unread: the client's bytes that left its send queue")
	report.AddEvidence(r, "rcvbuf", float64(got), "bytes", "getsockopt SO_RCVBUF", fmt.Sprintf("asked for %d; the kernel keeps twice the request", rcvbuf))
	report.AddEvidence(r, "rcv_wnd", float64(info.Rcv_wnd), "bytes", "TCP_INFO tcpi_rcv_wnd (Linux 6.2+, 0 before)", "the window the receiver advertises: 0 when its buffer is full")
	report.AddEvidence(r, "released_at", float64(released), "ns", "CLOCK_MONOTONIC when the server began reading", "")
	n, err := drain(fd)
	if err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("sndbuf server: %w", err))
	}
	r.Metrics["bytes_read"] = float64(n)
	return finish(ctx, r, env.Node)
}

// drain reads until the peer closes and returns the byte count.
func drain(fd sock.FD) (int, error) {
	buf := make([]byte, 64<<10)
	total := 0
	for {
		n, err := sock.Recv(fd, buf, 0)
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		total += n
	}
}

type clientConfig struct {
	variant string
	sndbuf  int
	chunk   int
	bytes   int
	stall   time.Duration
}

// maxNonBlocking bounds what the non-blocking sender writes before it gives
// up waiting for EAGAIN (a kernel that never pushed back).
const maxNonBlocking = 64 << 20

func send(ctx context.Context, env *experiments.Env, peer netip.AddrPort, cfg clientConfig) (*experimentv1.RoleReport, error) {
	env.Ready(0)
	fd, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return nil, fmt.Errorf("sndbuf client: %w", err)
	}
	defer fd.Close()
	stop := role.ShutdownOnDone(ctx, fd)
	defer stop()
	if err := sock.SetSendBuffer(fd, cfg.sndbuf); err != nil {
		return nil, err
	}
	got, err := sock.SendBuffer(fd)
	if err != nil {
		return nil, err
	}
	r := env.Report()
	r.Metrics["sndbuf_bytes"] = float64(got)
	report.AddEvidence(r, "sndbuf", float64(got), "bytes", "getsockopt SO_SNDBUF", fmt.Sprintf("asked for %d; the kernel keeps twice the request", cfg.sndbuf))
	if cfg.variant == nonBlocking {
		err = sendNonBlocking(fd, r, cfg)
	} else {
		err = sendBlocking(fd, r, cfg)
	}
	if err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("sndbuf client (%s): %w", cfg.variant, err))
	}
	return finish(ctx, r, env.Node)
}

// sendNonBlocking fills the connection with non-blocking sends and records
// the error that stops them and where the accepted bytes are.
func sendNonBlocking(fd sock.FD, r *experimentv1.RoleReport, cfg clientConfig) error {
	if err := unix.SetNonblock(int(fd), true); err != nil {
		return fmt.Errorf("set O_NONBLOCK on fd %d: %w", fd, err)
	}
	buf := make([]byte, cfg.chunk)
	total, first, eagains := 0, -1, 0
	var errno unix.Errno
	deadline := time.Now().Add(cfg.stall / 2)
	for total < maxNonBlocking {
		n, err := sock.Send(fd, buf, 0)
		if err == nil {
			total += n
			continue
		}
		if !errors.As(err, &errno) || errno != unix.EAGAIN {
			return err
		}
		eagains++
		if first < 0 {
			first = total
		}
		// ACKs free room in the send queue, and the receiver may open its
		// window a little: wait for POLLOUT and write more, until half the
		// stall has passed (the server looks at its queue at the end).
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		pfd := sock.Poll{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err = pfd.Wait(left)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	if first < 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("no EAGAIN after %d bytes", total))
		r.Metrics["accepted_bytes"] = float64(total)
		return nil
	}
	outq, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	if err != nil {
		return fmt.Errorf("SIOCOUTQ on fd %d: %w", fd, err)
	}
	unsent, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQNSD)
	if err != nil {
		return fmt.Errorf("SIOCOUTQNSD on fd %d: %w", fd, err)
	}
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return fmt.Errorf("TCP_INFO on fd %d: %w", fd, err)
	}
	r.Metrics["first_eagain_bytes"] = float64(first)
	r.Metrics["accepted_bytes"] = float64(total)
	r.Metrics["eagain_count"] = float64(eagains)
	r.Metrics["send_queue_bytes"] = float64(outq)
	r.Metrics["unsent_bytes"] = float64(unsent)
	r.Metrics["peer_window_bytes"] = float64(info.Snd_wnd)
	report.AddEvidence(r, "send_errno", float64(errno), "errno", "send(2) on the non-blocking socket", "EAGAIN: "+errno.Error())
	report.AddEvidence(r, "send_queue", float64(outq), "bytes", "ioctl SIOCOUTQ after the last EAGAIN", "bytes written and not yet acknowledged")
	report.AddEvidence(r, "unsent", float64(unsent), "bytes", "ioctl SIOCOUTQNSD after the last EAGAIN", "bytes in the send queue not yet sent: the receiver's window is closed")
	report.AddEvidence(r, "peer_window", float64(info.Snd_wnd), "bytes", "TCP_INFO tcpi_snd_wnd (Linux 5.4+)", "the receiver's advertised window as the sender last saw it")
	return nil
}

// maxSleeps bounds the sends that slept the report lists one by one (the
// ones before the release come first; most sleeps come after it).
const maxSleeps = 32

// sendBlocking writes cfg.bytes with blocking sends and records the ones
// that slept: the thread's voluntary context switches rose during the call
// (getrusage, the kernel's own account, rather than a time threshold). The
// kernel may wake a sleeping sender before the reader reads (an ACK frees
// room in the send queue), so a stall can show as more than one sleep; the
// judge finds the one the reader's first read ended.
func sendBlocking(fd sock.FD, r *experimentv1.RoleReport, cfg clientConfig) error {
	buf := make([]byte, cfg.chunk)
	start := time.Now()
	var blocked time.Duration
	sleeps, bytesBefore := 0, -1
	for total := 0; total < cfg.bytes; {
		p := buf[:min(cfg.chunk, cfg.bytes-total)]
		u0, err := measure.ThreadUsage()
		if err != nil {
			return err
		}
		began, t0 := monotonic(), time.Now()
		if _, err := sock.WriteFull(fd, p); err != nil {
			return err
		}
		d, returned := time.Since(t0), monotonic()
		u1, err := measure.ThreadUsage()
		if err != nil {
			return err
		}
		if u1.Sub(u0).Voluntary > 0 {
			if bytesBefore < 0 {
				bytesBefore = total
				r.Metrics["fill_ns"] = float64(t0.Sub(start))
			}
			blocked += d
			if sleeps++; sleeps <= maxSleeps {
				report.AddEvidence(r, "sleep_began", float64(began), "ns", "CLOCK_MONOTONIC when a send(2) that slept began", "")
				report.AddEvidence(r, "sleep_ended", float64(returned), "ns", "CLOCK_MONOTONIC when it returned", d.String())
				report.AddEvidence(r, "sleep_after", float64(total), "bytes", "bytes sent before it", "")
			}
		}
		total += len(p)
	}
	r.Metrics["sent_bytes"] = float64(cfg.bytes)
	r.Metrics["send_ns"] = float64(time.Since(start))
	r.Metrics["sleeps"] = float64(sleeps)
	r.Metrics["blocked_ns"] = float64(blocked)
	if bytesBefore >= 0 {
		r.Metrics["bytes_before_block"] = float64(bytesBefore)
	} else {
		r.Notes = append(r.Notes, "no send slept")
	}
	return nil
}

// finish adds the node's environment to a report.
func finish(ctx context.Context, r *experimentv1.RoleReport, node string) (*experimentv1.RoleReport, error) {
	r.Environment = report.Node(ctx, node, []string{"net.ipv4.tcp_wmem", "net.ipv4.tcp_rmem"})
	return r, nil
}

// Judge summarises the variants and answers C17.
func (Experiment) Judge(p experiments.Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	rows := report.Aggregate(steps)
	v := &experimentv1.Verdict{Claim: "C17"}
	stall := experiments.As[params](p).Stall
	var parts []string
	holds, fails := 0, 0
	if row := report.Row(rows, nonBlocking); row != nil {
		eagain := true
		for _, s := range steps {
			if s.GetStep().GetVariant() != nonBlocking {
				continue
			}
			if e, ok := report.EvidenceValue(report.ReportOf(s, "client"), "send_errno"); !ok || unix.Errno(e) != unix.EAGAIN {
				eagain = false
			}
		}
		m := row.GetMetrics()
		med := func(k string) float64 { return m[k].GetMedian() }
		if eagain {
			holds++
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_ENGAGED
			parts = append(parts, fmt.Sprintf("the non-blocking send failed with EAGAIN in every repeat, first after %.0f bytes, %.0f accepted in all by half the stall (SO_SNDBUF %.0f as the kernel reports it); %.0f were unacknowledged in the send queue (%.0f unsent; the peer's window %.0f) and %.0f sat in the receiver's queue (SO_RCVBUF %.0f; bytes it holds but has not acknowledged count in both)",
				med("client.first_eagain_bytes"), med("client.accepted_bytes"), med("client.sndbuf_bytes"), med("client.send_queue_bytes"),
				med("client.unsent_bytes"), med("client.peer_window_bytes"), med("server.queued_at_release_bytes"), med("server.rcvbuf_bytes")))
		} else {
			fails++
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			row.Note = "some repeat saw no EAGAIN"
			parts = append(parts, fmt.Sprintf("the non-blocking send did not fail with EAGAIN in every repeat (%.0f bytes accepted)", med("client.accepted_bytes")))
		}
	}
	if row := report.Row(rows, blocking); row != nil {
		// The blocking send waited for the reader when, in every repeat, a
		// send was asleep when the reader began reading and returned after.
		rel := releases(steps)
		repeats := len(report.Values(steps, blocking, "client.sent_bytes"))
		waited := repeats > 0 && len(rel) == repeats
		var blocked, wake, crept []float64
		for _, x := range rel {
			blocked, wake, crept = append(blocked, x.blocked), append(wake, x.wake), append(crept, x.crept)
		}
		if len(rel) > 0 {
			row.Metrics["client.blocked_until_release_ns"] = report.SpreadProto(measure.SpreadOf(blocked))
			row.Metrics["client.wake_after_release_ns"] = report.SpreadProto(measure.SpreadOf(wake))
			row.Metrics["client.bytes_while_blocked"] = report.SpreadProto(measure.SpreadOf(crept))
		}
		m := row.GetMetrics()
		text := fmt.Sprintf("the blocking send first slept after %.0f bytes", m["client.bytes_before_block"].GetMedian())
		if len(rel) > 0 {
			b := measure.SpreadOf(blocked)
			text += fmt.Sprintf(" and was held for %s from then (repeats %s–%s) by a reader that stalled %v, getting only %.0f bytes more through meanwhile; the send asleep when the reader began reading returned %s after it",
				ms(b.Median), ms(b.Min), ms(b.Max), stall, measure.SpreadOf(crept).Median, ms(measure.SpreadOf(wake).Median))
		}
		if waited {
			holds++
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_ENGAGED
		} else {
			fails++
			row.Engagement = experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED
			row.Note = "in some repeat no send was asleep when the reader began reading"
			text += "; in some repeat it did not wait for the reader"
		}
		parts = append(parts, text)
	}
	switch {
	case holds+fails == 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_INCONCLUSIVE
		v.Explanation = "no variant ran"
	case fails == 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_HOLDS
	case holds == 0:
		v.Outcome = experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD
	default:
		v.Outcome = experimentv1.Outcome_OUTCOME_CONDITIONAL
	}
	if len(parts) > 0 {
		v.Explanation = strings.Join(parts, "; ") + "."
	}
	return rows, v
}

// release is what a blocking repeat shows around the moment the reader
// began reading.
type release struct {
	blocked float64 // ns from the first sleep to the return of the send asleep at the release
	wake    float64 // ns from the release to that return
	crept   float64 // bytes the sender got through between its first sleep and that send
}

// releases finds, in each blocking repeat, the send that was asleep when
// the reader began reading (both sides' CLOCK_MONOTONIC). A repeat without
// one gives nothing.
func releases(steps []*experimentv1.StepResult) []release {
	var out []release
	for _, s := range steps {
		if s.GetStep().GetVariant() != blocking {
			continue
		}
		released, ok := report.EvidenceValue(report.ReportOf(s, "server"), "released_at")
		if !ok {
			continue
		}
		ev := map[string][]float64{}
		for _, e := range report.ReportOf(s, "client").GetEvidence() {
			ev[e.GetName()] = append(ev[e.GetName()], e.GetValue())
		}
		began, ended, after := ev["sleep_began"], ev["sleep_ended"], ev["sleep_after"]
		for i := range min(len(began), len(ended), len(after)) {
			if began[i] <= released && released <= ended[i] {
				out = append(out, release{blocked: ended[i] - began[0], wake: ended[i] - released, crept: after[i] - after[0]})
				break
			}
		}
	}
	return out
}

func ms(ns float64) string { return time.Duration(ns).Round(time.Microsecond).String() }

// Figures: the send buffer against what was accepted before the first
// EAGAIN or wait, and where the bytes were then.
func (Experiment) Figures() []experiments.Figure {
	return []experiments.Figure{{Kind: experiments.Bars, Title: "Bytes: the buffers, and what was accepted before the sender was stopped",
		Metrics: []string{"client.sndbuf_bytes", "client.first_eagain_bytes", "client.bytes_before_block", "client.accepted_bytes",
			"client.send_queue_bytes", "server.queued_at_release_bytes"}, YLabel: "bytes"}}
}
