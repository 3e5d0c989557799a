package busypoll

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// window holds the counters read before a role's data path, to be
// subtracted from those read after it. Every role reads its node's
// netstat; the client alone reads the host-wide counters (NAPI polls of
// the path's devices, NET_RX softirqs, softirq time), so that they are
// counted once per step.
type window struct {
	net kstat.NetStat
	// lower is the host namespace's netstat, for a role on a macvlan: the
	// NAPI instance a busy poll takes packets from is the lower device's,
	// and the kernel counts BusyPollRxPackets in that device's namespace.
	lower         kstat.NetStat
	host          bool
	polls, worked *kstat.TracepointCounter
	softirqs      kstat.Softirqs
	cpu           kstat.CPUStat
}

func (r *roleRun) open() (*window, error) {
	w := &window{host: r.env.Role == experiments.Client}
	if slices.Equal(r.o.napiDevices, []string{autoDevices}) {
		// A step not laid out by Steps: the role knows its own end only.
		r.o.napiDevices = []string{r.iface}
	}
	if w.host && r.o.countPolls && len(r.o.napiDevices) > 0 {
		var err error
		if w.polls, err = kstat.OpenTracepoint("napi", "napi_poll", kstat.WithFilter(devFilter(r.o.napiDevices, ""))); err != nil {
			return nil, err
		}
		if w.worked, err = kstat.OpenTracepoint("napi", "napi_poll", kstat.WithFilter(devFilter(r.o.napiDevices, "work > 0"))); err != nil {
			w.close()
			return nil, err
		}
	}
	var err error
	if w.net, err = kstat.ReadNetStat(); err != nil {
		w.close()
		return nil, err
	}
	if r.macvlan {
		if w.lower, err = hostNetStat(); err != nil {
			w.close()
			return nil, err
		}
	}
	if w.host {
		if w.softirqs, err = kstat.ReadSoftirqs(); err != nil {
			w.close()
			return nil, err
		}
		if w.cpu, err = kstat.ReadCPUStat(); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

func (w *window) close() {
	for _, c := range []*kstat.TracepointCounter{w.polls, w.worked} {
		if c != nil {
			c.Close()
		}
	}
}

// evidence adds to a role's report what the kernel says happened: the
// NAPI id and busy-poll setting of its sockets, the busy-polled packets of
// its node, the XDP program's count, the settings as read back, and for
// the client the host-wide poll and softirq counts per message.
func (r *roleRun) evidence(rep *experimentv1.RoleReport, w *window) error {
	netAfter, err := kstat.ReadNetStat()
	if err != nil {
		return err
	}
	d := netAfter.Sub(w.net)
	var napi uint32
	var segsIn uint64
	var sockPoll int
	for i, fd := range r.socks {
		id, err := sock.IncomingNAPIID(fd)
		if err != nil {
			return err
		}
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return fmt.Errorf("getsockopt TCP_INFO on fd %d: %w", fd, err)
		}
		segsIn += uint64(info.Segs_in)
		if i == 0 {
			napi = id
			if sockPoll, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BUSY_POLL); err != nil {
				return fmt.Errorf("getsockopt SO_BUSY_POLL on fd %d: %w", fd, err)
			}
		}
	}
	if _, done := report.EvidenceValue(rep, "napi_id"); !done {
		report.AddEvidence(rep, "napi_id", float64(napi), "", "getsockopt SO_INCOMING_NAPI_ID on the "+string(r.env.Role)+"'s socket", napiDetail(napi))
	}
	report.AddEvidence(rep, "socket_busy_poll_us", float64(sockPoll), "µs", "getsockopt SO_BUSY_POLL on the "+string(r.env.Role)+"'s socket",
		"what a blocking recv on the socket busy polls for: set by SO_BUSY_POLL, or taken from net.core.busy_read when the socket was created")
	bp, in := d["TcpExt.BusyPollRxPackets"], d["Tcp.InSegs"]
	report.AddEvidence(rep, "busy_poll_rx_packets", float64(bp), "packets", "/proc/net/netstat TcpExt.BusyPollRxPackets delta in node "+r.env.Node,
		"packets that a busy-polling task, not the softirq, took off a NAPI instance of this node's devices")
	if w.lower != nil {
		after, err := hostNetStat()
		if err != nil {
			return err
		}
		lower := after.Sub(w.lower)["TcpExt.BusyPollRxPackets"]
		report.AddEvidence(rep, "host_busy_poll_rx_packets", float64(lower), "packets", "/proc/1/net/netstat TcpExt.BusyPollRxPackets delta (the host's namespace)",
			r.iface+" is a macvlan: packets busy polled from its lower device's NAPI instance are counted in the lower device's namespace, the host's (along with any other busy polling there)")
		bp += lower
	}
	report.AddEvidence(rep, "tcp_in_segs", float64(in), "segments", "/proc/net/snmp Tcp.InSegs delta in node "+r.env.Node, "TCP segments the node received")
	report.AddEvidence(rep, "socket_segs_in", float64(segsIn), "segments", "TCP_INFO tcpi_segs_in summed over the "+string(r.env.Role)+"'s sockets",
		"segments the role's connections received: one per message, plus the handshake and the FIN")
	if segsIn > 0 {
		rep.Metrics["busy_poll_rx_packets_per_msg"] = float64(bp) / float64(segsIn)
	}
	if r.xdp != nil {
		n, err := r.xdp.Packets()
		if err != nil {
			return err
		}
		report.AddEvidence(rep, "xdp_packets", float64(n), "packets", "per-CPU counter of the experiment's XDP program on "+r.iface,
			"packets the XDP pass program saw on the role's interface (driver mode: the device received through NAPI)")
	}
	if err := r.settingsEvidence(rep); err != nil {
		return err
	}
	if w.host {
		if err := w.hostEvidence(rep, r, segsIn); err != nil {
			return err
		}
	}
	rep.Notes = append(rep.Notes, r.notes()...)
	return nil
}

// settingsEvidence reads back what the variant set, from the kernel.
func (r *roleRun) settingsEvidence(rep *experimentv1.RoleReport) error {
	if r.v.Device != loopback && r.v.Device != nic {
		// The node's environment, read at the end of the data path while
		// the step's offloads are still set, already has them (ethtool -k).
		for _, i := range rep.GetEnvironment().GetInterfaces() {
			if i.GetName() != r.iface {
				continue
			}
			for _, name := range []string{"gro", "tso"} {
				on := 0.0
				if slices.Contains(i.GetOffloadsOn(), name) {
					on = 1
				}
				report.AddEvidence(rep, name+"_on", on, "", "ethtool -k "+r.iface+" at the end of the step",
					"veth receives TCP through NAPI with GRO on and TSO off on the sending end, or with an XDP program (Linux 5.14+)")
			}
		}
	}
	if r.v.Mechanism == preferBusyPoll {
		for _, s := range r.deviceSettings() {
			b, err := os.ReadFile(s.file)
			if err != nil {
				return fmt.Errorf("read back %s: %w", s.file, err)
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
			if err != nil {
				return fmt.Errorf("read back %s: %w", s.file, err)
			}
			report.AddEvidence(rep, filepath.Base(s.file), v, "", s.file, "read back after setting it for the step")
		}
	}
	if p := r.epollSet; p != nil {
		report.AddEvidence(rep, "epoll_busy_poll_us", float64(p.Timeout/time.Microsecond), "µs", "ioctl EPIOCGPARAMS on the "+string(r.env.Role)+"'s epoll instance",
			fmt.Sprintf("busy_poll_usecs as the kernel keeps it (budget %d, prefer_busy_poll %v)", p.Budget, p.Prefer))
	}
	if r.env.Role == experiments.Server {
		for _, key := range []string{"net.core.busy_read", "net.core.busy_poll"} {
			s, err := r.env.Settings.ReadHostSysctl(key)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read host sysctl %s: %w", key, err)
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("host sysctl %s: %w", key, err)
			}
			report.AddEvidence(rep, "host_"+strings.TrimPrefix(key, "net.core.")+"_us", v, "µs", "sysctl "+key+" of the host's namespace during the step",
				"host-wide: applies to every namespace at once")
		}
	}
	return nil
}

// hostEvidence adds the client's host-wide counts, per message: the
// segments the client received (one response each, plus the handshake and
// the FIN) stand for messages, because the window also covers warm-up.
func (w *window) hostEvidence(rep *experimentv1.RoleReport, r *roleRun, segsIn uint64) error {
	soft, err := kstat.ReadSoftirqs()
	if err != nil {
		return err
	}
	cpu, err := kstat.ReadCPUStat()
	if err != nil {
		return err
	}
	perMsg := func(x float64) float64 {
		if segsIn == 0 {
			return 0
		}
		return x / float64(segsIn)
	}
	netRX := float64(soft.Sub(w.softirqs).Total("NET_RX"))
	softNs := float64(cpu.Sub(w.cpu).All.SoftIRQ)
	report.AddEvidence(rep, "net_rx_softirqs", netRX, "softirqs", "/proc/softirqs NET_RX delta, host-wide", "NET_RX softirq runs on every CPU during the step, every namespace included")
	report.AddEvidence(rep, "softirq_ns", softNs, "ns", "/proc/stat softirq time delta, host-wide",
		"tick-sampled (10 ms) unless the kernel has CONFIG_IRQ_TIME_ACCOUNTING; softirq work done in a task's context is otherwise charged to that task")
	rep.Metrics["net_rx_softirqs_per_msg"] = perMsg(netRX)
	rep.Metrics["host_softirq_ns_per_msg"] = perMsg(softNs)
	if w.polls == nil {
		return nil
	}
	pollCount, err := w.polls.Read()
	if err != nil {
		return err
	}
	workedCount, err := w.worked.Read()
	if err != nil {
		return err
	}
	polls, worked := pollCount.Total, workedCount.Total
	devs := strings.Join(r.o.napiDevices, ", ")
	report.AddEvidence(rep, "napi_polls", float64(polls), "polls", "napi:napi_poll tracepoint, perf counters filtered to devices "+devs,
		"polls of the path's NAPI instances, by the softirq or a busy-polling task; 0 means the devices received without NAPI")
	report.AddEvidence(rep, "napi_polls_with_work", float64(worked), "polls", "napi:napi_poll tracepoint with work > 0, devices "+devs, "polls that found packets")
	rep.Metrics["napi_polls_per_msg"] = perMsg(float64(polls))
	rep.Metrics["napi_polls_with_work_per_msg"] = perMsg(float64(worked))
	return nil
}

// hostNetStat reads the netstat of the host's namespace through PID 1,
// whose /proc/<pid>/net shows its namespace: the agent shares the host's
// PID namespace.
func hostNetStat() (kstat.NetStat, error) {
	f, err := os.Open("/proc/1/net/netstat")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := kstat.ParseNetStat(f)
	if err != nil {
		return nil, fmt.Errorf("/proc/1/net/netstat: %w", err)
	}
	return s, nil
}

// notes say what a reader of the result must know about the step.
func (r *roleRun) notes() []string {
	var out []string
	if key := r.v.Mechanism.HostSysctl(); key != "" && r.env.Role == experiments.Server {
		out = append(out, fmt.Sprintf("%s=%s was set host-wide for this step: it applied to every namespace of the host at once, not only to this lab", key, us(r.v.Timeout)))
	}
	if r.env.Role == experiments.Client && r.o.countPolls && len(r.o.napiDevices) > 0 {
		out = append(out, "napi:napi_poll was counted with perf events during the step (an observer: every poll of every device runs the perf handler and its filter)")
	}
	return out
}

func napiDetail(id uint32) string {
	if id == 0 {
		return "0: packets reached the socket without a NAPI context (loopback, veth without GRO or XDP); no busy-poll knob can engage"
	}
	return fmt.Sprintf("packets reached the socket through NAPI instance %d", id)
}
