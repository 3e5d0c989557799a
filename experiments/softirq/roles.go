package softirq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// backlogSysctl is global: it exists only in the host's network namespace.
const backlogSysctl = "net.core.netdev_max_backlog"

// readTimeout bounds each blocking receive of the reader, so it notices
// the end of the step; once stopped, a receive that times out means the
// socket is drained.
const readTimeout = 20 * time.Millisecond

// The control connection: the server sends the UDP port to start the
// client ("go"), the client answers with what it sent ("done"), the server
// acknowledges once it has read everything.
type done struct {
	Sent    uint64
	Elapsed time.Duration
}

func (d done) encode() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, d.Sent)
	binary.BigEndian.PutUint64(b[8:], uint64(d.Elapsed))
	return b
}

func decodeDone(b []byte) done {
	return done{Sent: binary.BigEndian.Uint64(b), Elapsed: time.Duration(binary.BigEndian.Uint64(b[8:]))}
}

// applySettings turns on the variant's RPS and backlog limit, and UDP GRO
// forwarding on a GRO interface, through the role's settings journal, and
// records what the kernel holds afterwards.
func applySettings(ctx context.Context, env *experiments.Env, v variant, r *experimentv1.RoleReport) error {
	if experiments.As[params](env.Params).UDPGROForwarding {
		if err := udpGROForwarding(ctx, env, v.Iface, r); err != nil {
			return err
		}
	}
	if v.RPS {
		cpus, err := kstat.ReadOnlineCPUs()
		if err != nil {
			return err
		}
		mask, err := rpsMask(experiments.As[params](env.Params).RPSCPUs, cpus)
		if err != nil {
			return err
		}
		// The agent's /sys is a sysfs mounted in the node: it shows the
		// node's interfaces.
		queues, err := filepath.Glob(fmt.Sprintf("/sys/class/net/%s/queues/rx-*/rps_cpus", v.Iface))
		if err != nil || len(queues) == 0 {
			return fmt.Errorf("RPS on %s: no rx queue in /sys/class/net/%s/queues (is /sys the node's?): %v", v.Iface, v.Iface, err)
		}
		for _, q := range queues {
			if err := env.Settings.WriteFile(q, mask); err != nil {
				return fmt.Errorf("RPS on %s: %w", v.Iface, err)
			}
			got, err := readTrim(q)
			if err != nil {
				return err
			}
			n, _ := strconv.ParseUint(got, 16, 64)
			report.AddEvidence(r, "rps_cpus", float64(n), "mask", q+" read back", "hex "+got)
		}
	}
	if v.Backlog > 0 {
		if err := env.Settings.HostSysctl(ctx, backlogSysctl, strconv.Itoa(v.Backlog)); err != nil {
			return err
		}
		got, err := env.Settings.ReadHostSysctl(backlogSysctl)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(got)
		report.AddEvidence(r, "netdev_max_backlog", float64(n), "packets", backlogSysctl+" read back in the host namespace", "")
	}
	return nil
}

// udpGROForwarding turns rx-udp-gro-forwarding on for iface when GRO is on
// and the feature is off. Since Linux 5.13 veth_xmit hands a packet to the
// peer's NAPI only when it is eligible for GRO (veth_skb_is_eligible_for_gro):
// from a sender with TSO on (a veth's default), that is a UDP packet to a
// peer with rx-gro-list or rx-udp-gro-forwarding on. GRO alone leaves UDP on
// the per-CPU backlog.
func udpGROForwarding(ctx context.Context, env *experiments.Env, iface string, r *experimentv1.RoleReport) error {
	features, err := ethtoolFeatures(ctx, iface)
	if err != nil {
		return err
	}
	gro, fwd := features["generic-receive-offload"], features["rx-udp-gro-forwarding"]
	if !strings.HasPrefix(gro, "on") {
		return nil
	}
	if strings.HasPrefix(fwd, "off") && !strings.Contains(fwd, "fixed") {
		err := env.Settings.Run(ctx, []string{"ethtool", "-K", iface, "rx-udp-gro-forwarding", "off"},
			"ethtool", "-K", iface, "rx-udp-gro-forwarding", "on")
		if err != nil {
			return fmt.Errorf("turn on rx-udp-gro-forwarding on %s: %w", iface, err)
		}
		if features, err = ethtoolFeatures(ctx, iface); err != nil {
			return err
		}
	}
	on := 0.0
	if strings.HasPrefix(features["rx-udp-gro-forwarding"], "on") {
		on = 1
	}
	report.AddEvidence(r, "rx_udp_gro_forwarding", on, "", "ethtool -k "+iface+" read back",
		"with GRO on, veth takes UDP from a TSO sender into its own NAPI only with this feature on")
	return nil
}

// ethtoolFeatures runs ethtool -k and maps feature names to their state
// ("on", "off [fixed]").
func ethtoolFeatures(ctx context.Context, iface string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "ethtool", "-k", iface).Output()
	if err != nil {
		return nil, fmt.Errorf("ethtool -k %s: %w", iface, err)
	}
	return parseFeatures(string(out)), nil
}

// parseFeatures reads the output of ethtool -k.
func parseFeatures(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if name, state, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
			m[name] = state
		}
	}
	return m
}

// receive is the server: it reads the datagrams and the kernel's counters.
func receive(ctx context.Context, env *experiments.Env, v variant) (*experimentv1.RoleReport, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := experiments.As[params](env.Params)
	addr := env.Address()
	if err := checkIface(v.Iface, addr); err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	r := env.Report()
	if err := applySettings(ctx, env, v, r); err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	udp, err := sock.Listen(sock.UDP, netip.AddrPortFrom(addr, 0), 0)
	if err != nil {
		return nil, err
	}
	defer udp.Close()
	udpAddr, err := sock.LocalAddr(udp)
	if err != nil {
		return nil, err
	}
	probe, err := openProbe(v.Iface)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	defer probe.Close()
	ctl, err := sock.Listen(sock.TCP, netip.AddrPortFrom(addr, 0), 1)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	ctlAddr, err := sock.LocalAddr(ctl)
	if err != nil {
		return nil, err
	}
	stop := role.ShutdownOnDone(ctx, ctl, udp)
	env.Ready(int(ctlAddr.Port()))
	conn, err := sock.Accept(ctl)
	stop()
	if err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: accept: %w", err))
	}
	defer conn.Close()
	stop = role.ShutdownOnDone(ctx, conn, udp)
	defer stop()

	rd, err := startReader(udp, p.ServerCPU)
	if err != nil {
		return nil, err
	}
	defer rd.Stop()
	// The background: the same counters over idle time, since most of
	// them are host-wide.
	b0, err := probe.read()
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(p.Baseline):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b1, err := probe.read()
	if err != nil {
		return nil, err
	}
	s0, err := probe.read()
	if err != nil {
		return nil, err
	}
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], udpAddr.Port())
	if _, err := sock.WriteFull(conn, port[:]); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: %w", err))
	}
	msg := make([]byte, 16)
	if _, err := sock.ReadFull(conn, msg); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: waiting for the sender: %w", err))
	}
	sent := decodeDone(msg)
	// Stopping the reader drains the socket, which also lets the last
	// datagrams clear any backlog before the counters are read.
	delivered, usage, err := rd.Stop()
	if err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	s1, err := probe.read()
	if err != nil {
		return nil, err
	}
	napi, _ := sock.IncomingNAPIID(udp)
	incoming, _ := sock.IncomingCPU(udp)
	if _, err := sock.WriteFull(conn, []byte{1}); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: %w", err))
	}
	d, bg := s1.Sub(s0, v.Iface), b1.Sub(b0, v.Iface)
	fillReport(r, v, d, bg, delivered, sent, napi, incoming)
	if delivered > 0 {
		report.AddUsage(r, usage, delivered, "msg")
	}
	r.Environment = report.Node(ctx, env.Node, nil)
	r.Environment.PinnedCpu = int32(p.ServerCPU)
	r.Environment.Sysctls[backlogSysctl], _ = env.Settings.ReadHostSysctl(backlogSysctl)
	return r, nil
}

// fillReport puts a step's deltas into the server's report.
func fillReport(r *experimentv1.RoleReport, v variant, d, bg delta, delivered int64, sent done, napi uint32, incoming int) {
	m := r.Metrics
	rx := d.Links[v.Iface]
	t := d.Total
	m["sent_packets"] = float64(sent.Sent)
	m["delivered_packets"] = float64(delivered)
	if sent.Elapsed > 0 {
		m["delivered_per_s"] = float64(delivered) / sent.Elapsed.Seconds()
		m["link_rx_per_s"] = float64(rx.RxPackets) / sent.Elapsed.Seconds()
	}
	m["link_rx_packets"] = float64(rx.RxPackets)
	m["link_rx_dropped"] = float64(rx.RxDropped)
	m["net_rx_softirqs"] = float64(t.NetRx)
	m["napi_polls"] = float64(t.Polls)
	m["backlog_polls"] = float64(t.BacklogPolls)
	m["device_polls"] = float64(t.DevicePolls)
	// The softirq and poll counts are host-wide: take out what the host
	// did at the baseline's rate. When that background is most of the
	// count, the ratio would be noise: leave it out and say so.
	for _, c := range []struct {
		n, bg        uint64
		count, ratio string
	}{{t.NetRx, bg.Total.NetRx, "own_net_rx_softirqs", "packets_per_softirq"}, {t.Polls, bg.Total.Polls, "own_napi_polls", "packets_per_poll"}} {
		own, ok := ownShare(c.n, c.bg, bg.Elapsed, d.Elapsed)
		if !ok {
			r.Notes = append(r.Notes, fmt.Sprintf("%s left out: the host's background at the baseline's rate accounts for more than half of the step's %d", c.ratio, c.n))
			continue
		}
		m[c.count] = own
		m[c.ratio] = float64(rx.RxPackets) / own
	}
	m["device_irqs"] = float64(d.DeviceIRQs)
	m["iface_irqs"] = float64(d.IfaceIRQs)
	m["call_ipis"] = float64(t.CallIPIs)
	m["softnet_processed"] = float64(t.Processed)
	m["softnet_dropped"] = float64(t.Dropped)
	m["time_squeeze"] = float64(t.TimeSqueeze)
	m["received_rps"] = float64(t.ReceivedRPS)
	m["softirq_ns"] = float64(t.SoftirqTime)
	m["ksoftirqd_ns"] = float64(t.Ksoftirqd)
	if t.SoftirqTime > 0 {
		m["ksoftirqd_share"] = float64(t.Ksoftirqd) / float64(t.SoftirqTime)
	}
	m["udp_rcvbuf_errors"] = float64(d.Net["Udp.RcvbufErrors"])
	m["udp_in_datagrams"] = float64(d.Net["Udp.InDatagrams"])

	for _, c := range d.PerCPU {
		report.AddEvidence(r, fmt.Sprintf("cpu%d_processed", c.CPU), float64(c.Processed), "packets",
			"/proc/net/softnet_stat, /proc/softirqs, napi:napi_poll, /proc/interrupts, /proc/stat, ksoftirqd stat deltas (host-wide)",
			fmt.Sprintf("processed %d, dropped %d, time_squeeze %d, received_rps %d; NET_RX %d; napi polls %d (backlog %d, %s %d); CAL IPIs %d; softirq %v, ksoftirqd %v",
				c.Processed, c.Dropped, c.TimeSqueeze, c.ReceivedRPS, c.NetRx, c.Polls, c.BacklogPolls, v.Iface, c.DevicePolls, c.CallIPIs, c.SoftirqTime, c.Ksoftirqd))
	}
	report.AddEvidence(r, "iface_irqs", float64(d.IfaceIRQs), "interrupts", "/proc/interrupts rows whose handler names "+v.Iface,
		fmt.Sprintf("%d device interrupts on the whole host meanwhile; a veth has no interrupt of its own", d.DeviceIRQs))
	report.AddEvidence(r, "napi_id", float64(napi), "", "getsockopt SO_INCOMING_NAPI_ID on the receiving socket", napiDetail(napi))
	report.AddEvidence(r, "incoming_cpu", float64(incoming), "", "getsockopt SO_INCOMING_CPU on the receiving socket",
		"the CPU whose softirq delivered the last datagram")
	secs := bg.Elapsed.Seconds()
	if secs > 0 {
		bgRx := float64(bg.Total.NetRx) / secs
		report.AddEvidence(r, "background_net_rx_per_s", bgRx, "softirqs/s", "/proc/softirqs NET_RX over the idle baseline", "")
		report.AddEvidence(r, "background_polls_per_s", float64(bg.Total.Polls)/secs, "polls/s", "napi:napi_poll over the idle baseline", "")
		if expect := bgRx * d.Elapsed.Seconds(); t.NetRx > 0 && expect > 0.1*float64(t.NetRx) {
			r.Notes = append(r.Notes, fmt.Sprintf("the host's background NET_RX rate (%.0f/s) would account for %.0f%% of this step's %d softirqs",
				bgRx, 100*expect/float64(t.NetRx), t.NetRx))
		}
	}
	r.Notes = append(r.Notes, "receive path: "+path(t, v.Iface, napi))
}

// ownShare estimates how many of n events during a step of length d were
// the step's own, given bg events over a baseline of length b just before
// it. ok is false when the background would be more than half of n.
func ownShare(n, bg uint64, b, d time.Duration) (float64, bool) {
	var expect float64
	if b > 0 {
		expect = float64(bg) * d.Seconds() / b.Seconds()
	}
	if n == 0 || expect > float64(n)/2 {
		return 0, false
	}
	return float64(n) - expect, true
}

// path names the NAPI instance that delivered the datagrams. The socket's
// NAPI id decides: only a device's NAPI instance has one, the per-CPU
// backlog has none. The poll counts are host-wide (another namespace may
// have an interface of the same name), so they only support it.
func path(t cpuDelta, iface string, napi uint32) string {
	polls := fmt.Sprintf("host-wide polls: %d of the backlog, %d of devices named %s", t.BacklogPolls, t.DevicePolls, iface)
	switch {
	case napi != 0 && t.ReceivedRPS > 0:
		return fmt.Sprintf("%s's own NAPI (socket NAPI id %d), then RPS to other CPUs' backlogs (%d RPS IPIs; %s)", iface, napi, t.ReceivedRPS, polls)
	case napi != 0:
		return fmt.Sprintf("%s's own NAPI (socket NAPI id %d; %s)", iface, napi, polls)
	}
	return fmt.Sprintf("the per-CPU backlog (netif_rx, process_backlog; socket NAPI id 0; %s)", polls)
}

func napiDetail(id uint32) string {
	if id == 0 {
		return "0: the datagrams reached the socket without a NAPI id (the per-CPU backlog has none)"
	}
	return fmt.Sprintf("NAPI instance %d delivered the last datagram", id)
}

// reader counts datagrams on its own thread, pinned, until stopped.
type reader struct {
	fd    sock.FD
	n     atomic.Int64
	stop  atomic.Bool
	done  chan error
	usage measure.Usage
}

func startReader(fd sock.FD, cpu int) (*reader, error) {
	tv := unix.NsecToTimeval(readTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("setsockopt SO_RCVTIMEO on fd %d: %w", fd, err)
	}
	rd := &reader{fd: fd, done: make(chan error, 1)}
	go func() {
		// Locked and never unlocked: the pinned thread ends with the
		// goroutine instead of going back to the runtime pinned.
		if _, err := role.LockThread(cpu); err != nil {
			rd.done <- err
			return
		}
		buf := make([]byte, 2048)
		start, _ := measure.ThreadUsage()
		for {
			n, err := sock.Recv(rd.fd, buf, 0)
			switch {
			case err == nil && n == 0:
				// Every datagram of a step has a payload: an empty read
				// is the shutdown of a cancelled run.
				rd.done <- errors.New("reader: the socket was shut down")
				return
			case err == nil:
				rd.n.Add(1)
			case errors.Is(err, unix.EAGAIN):
				if rd.stop.Load() {
					end, _ := measure.ThreadUsage()
					rd.usage = end.Sub(start)
					rd.done <- nil
					return
				}
			default:
				rd.done <- fmt.Errorf("reader: %w", err)
				return
			}
		}
	}()
	return rd, nil
}

// Stop waits for the socket to drain and returns the count and the
// reader's CPU usage. Later calls return at once.
func (rd *reader) Stop() (int64, measure.Usage, error) {
	if rd.stop.Swap(true) {
		return rd.n.Load(), rd.usage, nil
	}
	err := <-rd.done
	return rd.n.Load(), rd.usage, err
}

// flood is the client: it sends for the step's duration at the variant's
// rate over the flows' sockets.
func flood(ctx context.Context, env *experiments.Env, v variant) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	peer, err := env.Peer(experiments.Server)
	if err != nil {
		return nil, err
	}
	iface, err := kstat.RouteIface(peer.Addr())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", env.Node, err)
	}
	env.Ready(0)
	conn, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return nil, fmt.Errorf("control connection: %w", err)
	}
	defer conn.Close()
	stop := role.ShutdownOnDone(ctx, conn)
	defer stop()
	var port [2]byte
	if _, err := sock.ReadFull(conn, port[:]); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: waiting for go: %w", err))
	}
	dst := netip.AddrPortFrom(peer.Addr(), binary.BigEndian.Uint16(port[:]))
	var fds []sock.FD
	defer func() {
		for _, fd := range fds {
			fd.Close()
		}
	}()
	for range p.Flows {
		fd, err := sock.Connect(sock.UDP, dst)
		if err != nil {
			return nil, err
		}
		fds = append(fds, fd)
	}
	before, err := kstat.ReadLinkStats(nil)
	if err != nil {
		return nil, err
	}
	env.Progressf("sending %s for %v", v, p.Duration)
	res := send(ctx, fds, sendOptions{size: int(p.Size), rate: v.Rate, duration: p.Duration, cpu: p.ClientCPU})
	if res.err != nil {
		return nil, role.CtxErr(ctx, res.err)
	}
	after, err := kstat.ReadLinkStats(nil)
	if err != nil {
		return nil, err
	}
	if _, err := sock.WriteFull(conn, done{Sent: uint64(res.sent), Elapsed: res.elapsed}.encode()); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: %w", err))
	}
	var ack [1]byte
	if _, err := sock.ReadFull(conn, ack[:]); err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("control connection: waiting for the receiver: %w", err))
	}
	r := env.Report()
	r.Metrics["sent_packets"] = float64(res.sent)
	r.Metrics["offered_per_s"] = float64(res.sent) / res.elapsed.Seconds()
	r.Metrics["send_errors"] = float64(res.errors)
	r.Metrics["sender_polls"] = float64(res.polls)
	if res.sent > 0 {
		r.Metrics["sender_polls_per_packet"] = float64(res.polls) / float64(res.sent)
	}
	report.AddEvidence(r, "sender_polls", float64(res.polls), "polls",
		"napi:napi_poll counted on the sending thread only (perf_event_open pid 0, cpu -1)",
		"NAPI polls that ran inside the sender's own system calls: the softirq its send raised, run when bottom halves were enabled again")
	if res.sent > 0 {
		report.AddUsage(r, res.usage, res.sent, "msg")
	}
	if res.errors > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d sends failed, the last with %v", res.errors, res.lastErr))
	}
	tx := after.Sub(before)[iface]
	r.Metrics["link_tx_packets"] = float64(tx.TxPackets)
	r.Metrics["link_tx_dropped"] = float64(tx.TxDropped)
	report.AddEvidence(r, "link_tx_dropped", float64(tx.TxDropped), "packets", "rtnetlink tx_dropped delta of "+iface+" in node "+env.Node,
		"a veth counts here the packets its peer could not take (full NAPI ring or backlog)")
	r.Environment = report.Node(ctx, env.Node, nil)
	r.Environment.PinnedCpu = int32(p.ClientCPU)
	return r, nil
}

type sendOptions struct {
	size     int
	rate     int // datagrams per second; 0 floods
	duration time.Duration
	cpu      int
}

type sendResult struct {
	sent, errors int64
	lastErr      error
	elapsed      time.Duration
	usage        measure.Usage
	// polls are the NAPI polls that ran in the sending thread's context.
	polls uint64
	err   error
}

// send runs the sending loop on a thread of its own, pinned.
func send(ctx context.Context, fds []sock.FD, o sendOptions) sendResult {
	out := make(chan sendResult, 1)
	go func() {
		// Locked and never unlocked, as the reader.
		if _, err := role.LockThread(o.cpu); err != nil {
			out <- sendResult{err: err}
			return
		}
		// The polls that softirqs ran in this thread's context, as when a
		// send re-enables bottom halves and the NET_RX it raised runs on
		// the spot: nothing else on the host is counted.
		polls, err := kstat.OpenTracepoint("napi", "napi_poll", kstat.ForThread())
		if err != nil {
			out <- sendResult{err: err}
			return
		}
		defer polls.Close()
		p0, err := polls.Read()
		if err != nil {
			out <- sendResult{err: err}
			return
		}
		res := sendLoop(ctx, fds, o)
		p1, err := polls.Read()
		if err != nil && res.err == nil {
			res.err = err
		}
		res.polls = p1.Sub(p0).Total
		out <- res
	}()
	return <-out
}

// spinBelow is the wait under which the paced sender spins on the clock
// rather than sleeps: a sleep wakes up tens of µs late.
const spinBelow = 200 * time.Microsecond

func sendLoop(ctx context.Context, fds []sock.FD, o sendOptions) sendResult {
	var res sendResult
	payload := make([]byte, o.size)
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Second / time.Duration(o.rate)
	}
	u0, _ := measure.ThreadUsage()
	start := time.Now()
	end, next := start.Add(o.duration), start
	for k := 0; ; {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if interval > 0 {
			if wait := next.Sub(now); wait > 0 {
				if wait > spinBelow {
					time.Sleep(wait - spinBelow/2)
				}
				continue
			}
			next = next.Add(interval)
		}
		if k%1024 == 0 && ctx.Err() != nil {
			res.err = ctx.Err()
			return res
		}
		_, err := sock.Send(fds[k%len(fds)], payload, 0)
		k++
		if err != nil {
			res.errors++
			res.lastErr = err
			continue
		}
		res.sent++
	}
	res.elapsed = time.Since(start)
	u1, _ := measure.ThreadUsage()
	res.usage = u1.Sub(u0)
	return res
}

// checkIface makes sure addr is on iface, the interface the variant names.
func checkIface(iface string, addr netip.Addr) error {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", iface, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", iface, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			return nil
		}
	}
	return fmt.Errorf("interface %s does not hold %v", iface, addr)
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}
