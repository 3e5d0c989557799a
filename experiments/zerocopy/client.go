package zerocopy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// stream is the client: it connects to the server, sends through its path
// for warmup and then for duration, measures the second phase, waits for
// the kernel to complete every zero-copy send, and closes.
func stream(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	cpu := p.ClientCPU
	unlock, err := role.LockThread(cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	_, path, _, size := stepVariant(p)
	peer, err := env.Peer(experiments.Server)
	if err != nil {
		return nil, err
	}
	s, err := newSender(path, size, int64(p.FileSize), env.RunID)
	if err != nil {
		return nil, err
	}
	defer s.close()
	env.Ready(0)
	fd, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return nil, fmt.Errorf("zerocopy client: %w", err)
	}
	defer fd.Close()
	stop := role.ShutdownOnDone(ctx, fd)
	defer stop()
	r := env.Report()
	var u *kernel.NotSupportedError
	if err := s.attach(fd); errors.As(err, &u) {
		// Closing the connection without data ends the server's step too.
		addUnsupported(r, path, u)
		return finish(ctx, r, env.Node, cpu, "")
	} else if err != nil {
		return nil, err
	}

	env.Progressf("warming up %s with %d-byte messages for %v", label(path), size, p.Warmup)
	for end := time.Now().Add(p.Warmup); time.Now().Before(end); {
		if err := s.send(); errors.As(err, &u) {
			addUnsupported(r, path, u)
			return finish(ctx, r, env.Node, cpu, "")
		} else if err != nil {
			return nil, role.CtxErr(ctx, err)
		}
	}

	env.Progressf("measuring %s for %v", label(path), p.Duration)
	before, err := snapshot()
	if err != nil {
		return nil, err
	}
	calls := s.syscalls()
	start, err := measure.ThreadUsage()
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	deadline := begin.Add(p.Duration)
	var msgs int64
	for {
		if err := s.send(); err != nil {
			return nil, role.CtxErr(ctx, err)
		}
		msgs++
		if !time.Now().Before(deadline) {
			break
		}
	}
	elapsed := time.Since(begin)
	end, err := measure.ThreadUsage()
	if err != nil {
		return nil, err
	}
	calls = s.syscalls() - calls
	after, err := snapshot()
	if err != nil {
		return nil, err
	}
	if err := s.finish(ctx); err != nil {
		return nil, role.CtxErr(ctx, err)
	}

	bytes := msgs * int64(size)
	r.Metrics["sent_bytes"] = float64(bytes)
	r.Metrics["messages"] = float64(msgs)
	r.Metrics["throughput_bps"] = 8 * float64(bytes) / elapsed.Seconds()
	report.AddUsage(r, end.Sub(start), bytes, "byte")
	r.Metrics["syscalls_per_byte"] = float64(calls) / float64(bytes)
	r.Metrics["syscalls_per_msg"] = float64(calls) / float64(msgs)
	egress := addHostEvidence(r, before, after, bytes)
	if zerocopySend(path) {
		r.Metrics["copied_ratio"] = s.tally.ratio()
		addZerocopyEvidence(r, path, s)
	}
	return finish(ctx, r, env.Node, cpu, egress)
}

// counters are the kernel's counters around the measured window.
type counters struct {
	cpu   kstat.CPUStat
	links kstat.LinkStats
	net   kstat.NetStat
}

func snapshot() (counters, error) {
	var c counters
	var err error
	if c.cpu, err = kstat.ReadCPUStat(); err != nil {
		return c, fmt.Errorf("zerocopy client: %w", err)
	}
	if c.links, err = kstat.ReadLinkStats(nil); err != nil {
		return c, fmt.Errorf("zerocopy client: %w", err)
	}
	if c.net, err = kstat.ReadNetStat(); err != nil {
		return c, fmt.Errorf("zerocopy client: %w", err)
	}
	return c, nil
}

// addHostEvidence adds the host's CPU per byte from per-CPU /proc/stat
// deltas, the device that carried the stream and the retransmissions, and
// returns the name of that device.
func addHostEvidence(r *experimentv1.RoleReport, before, after counters, bytes int64) (egress string) {
	var busy, softirq time.Duration
	for _, c := range after.cpu.Sub(before.cpu).CPUs {
		busy += c.Busy()
		softirq += c.SoftIRQ
		report.AddEvidence(r, fmt.Sprintf("cpu%d_busy_ns", c.CPU), float64(c.Busy()), "ns",
			"/proc/stat delta over the measured window (10 ms ticks)", fmt.Sprintf("of which softirq %v, system %v, user %v", c.SoftIRQ, c.System, c.User))
	}
	var idle, all time.Duration
	for _, c := range after.cpu.Sub(before.cpu).CPUs {
		idle += c.Idle + c.IOWait
		all += c.Busy() + c.Idle + c.IOWait + c.Steal
	}
	if all > 0 {
		report.AddEvidence(r, "host_idle_ratio", float64(idle)/float64(all), "", "/proc/stat idle and iowait share of the window",
			"near 0: the host's CPUs were saturated; host CPU per byte then counts other work too and is capped by the number of CPUs")
	}
	r.Metrics["host_cpu_ns_per_byte"] = float64(busy) / float64(bytes)
	r.Metrics["host_softirq_ns_per_byte"] = float64(softirq) / float64(bytes)

	var most uint64
	for name, c := range after.links.Sub(before.links) {
		if c.TxBytes > most || (c.TxBytes == most && name < egress) {
			egress, most = name, c.TxBytes
		}
	}
	report.AddEvidence(r, "egress_tx_bytes", float64(most), "bytes", "rtnetlink link stats delta in the client's node",
		"the interface that sent the most during the window: "+egress)
	d := after.net.Sub(before.net)
	report.AddEvidence(r, "tcp_retrans_segs", float64(d["Tcp.RetransSegs"]), "segments",
		"/proc/net/snmp Tcp.RetransSegs delta in the node", "retransmissions during the window")
	// Over veth a retransmission is rarely a loss. netif_rx queues a packet
	// on the backlog of the CPU that sends it, and TCP sends both from the
	// writing thread and from the softirq that processes ACKs, which runs
	// where the receiver's ACKs were sent: two backlogs that drain
	// independently, so segments arrive out of order, TCP retransmits, and
	// the receiver reports the duplicates (DSACK). With both roles pinned to
	// one CPU it disappears (Linux 6.18, 2 CPUs).
	report.AddEvidence(r, "tcp_dsack_segs", float64(d["TcpExt.TCPDSACKRecvSegs"]), "segments",
		"/proc/net/netstat TcpExt.TCPDSACKRecvSegs delta in the node", "retransmitted segments the receiver already had: spurious retransmissions after reordering")
	return egress
}

func addZerocopyEvidence(r *experimentv1.RoleReport, path string, s *sender) {
	source := "MSG_ERRQUEUE completions (SO_EE_ORIGIN_ZEROCOPY), SO_EE_CODE_ZEROCOPY_COPIED flag"
	if path != msgZerocopy {
		source = "io_uring SEND_ZC notifications (IORING_CQE_F_NOTIF), IORING_NOTIF_USAGE_ZC_COPIED flag"
	}
	report.AddEvidence(r, "zc_sends", float64(s.zcSends), "sends", source, "sends the kernel promised to complete, warm-up included")
	report.AddEvidence(r, "zc_completed", float64(s.tally.Completed), "sends", source, "sends the kernel reported complete")
	report.AddEvidence(r, "zc_copied", float64(s.tally.Copied), "sends", source, "completed sends the kernel copied after all")
}

// addUnsupported records why a path could not run; the report then has
// no metrics.
func addUnsupported(r *experimentv1.RoleReport, path string, u *kernel.NotSupportedError) {
	var errno unix.Errno
	errors.As(u.Err, &errno)
	report.AddEvidence(r, "unsupported", float64(errno), "errno", u.Feature.String(), u.Error())
	r.Notes = append(r.Notes, fmt.Sprintf("%s cannot run here: %s", label(path), u.Error()))
}

// finish adds the node's environment to a report and, when the egress
// interface is known, whether it has scatter-gather, without which the
// kernel copies what sendfile and splice hand it.
func finish(ctx context.Context, r *experimentv1.RoleReport, node string, cpu int, egress string) (*experimentv1.RoleReport, error) {
	r.Environment = report.Node(ctx, node, nil)
	r.Environment.PinnedCpu = int32(cpu)
	for _, i := range r.Environment.GetInterfaces() {
		// ethtool lists no feature for an interface it cannot ask (or
		// when it is missing): then nothing is claimed either way.
		if i.GetName() == egress && len(i.GetOffloadsOn()) > 0 {
			sg := 0.0
			if slices.Contains(i.GetOffloadsOn(), "sg") {
				sg = 1
			}
			report.AddEvidence(r, "egress_sg", sg, "", "ethtool -k "+egress+" scatter-gather",
				"1: the device takes page fragments, so TCP sends spliced pages without copying them")
		}
	}
	return r, nil
}
