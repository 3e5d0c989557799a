package busypoll

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// device is the condition of the path between client and server: which
// device carries the packets and whether it gives them a NAPI context, the
// one thing every busy-poll knob needs.
type device string

// Device conditions.
const (
	// loopback: both roles in the server's node over 127.0.0.1. Packets go
	// through the per-CPU backlog, which has no NAPI id.
	loopback device = "loopback"
	// veth as created: veth_xmit hands the skb to the peer's backlog
	// (netif_rx), no NAPI id.
	veth device = "veth"
	// vethGRO: a veth link the topology creates with GRO on, with TSO
	// turned off on both ends for the step. Since Linux 5.13 a veth with
	// GRO on has a NAPI instance, but since 5.14 veth_xmit uses it only
	// for skbs it deems worth aggregating (veth_skb_is_eligible_for_gro):
	// a TCP skb from a sending device with TSO on bypasses NAPI.
	vethGRO device = "veth-gro"
	// vethGROTSO: the same link with TSO on, as veth is created: GRO on,
	// yet TCP gets no NAPI id. The control for the claim that GRO alone
	// gives veth NAPI.
	vethGROTSO device = "veth-gro-tso"
	// vethXDP: a veth link without GRO, with the experiment's XDP pass
	// program attached to both ends; an XDP program also gives veth a
	// NAPI instance (Linux 4.19+).
	vethXDP device = "veth-xdp"
	// nic: a host nic moved into the server's node or a macvlan on one.
	nic device = "nic"
)

// devices in the order a run measures them.
var devices = []device{loopback, veth, vethGRO, vethGROTSO, vethXDP, nic}

// TSO is the TSO state the condition wants on the roles' interfaces:
// "on", "off", or "" to leave it as it is.
func (d device) TSO() string {
	switch d {
	case vethGRO:
		return "off"
	case vethGROTSO:
		return "on"
	}
	return ""
}

// mechanism is how a role waits for the next message.
type mechanism string

// Mechanisms. Those of ModeBlocking run on rr.Serve and rr.Client; the
// others on this package's epoll and spin loops.
const (
	// blocking is the baseline: blocking recv, the thread sleeps until the
	// softirq that queued the packet wakes it.
	blocking mechanism = "blocking"
	// soBusyPoll sets SO_BUSY_POLL on both sockets: a blocking recv polls
	// the socket's NAPI instance for up to the timeout before sleeping.
	soBusyPoll mechanism = "so_busy_poll"
	// soBusyPollBudget is SoBusyPoll plus SO_BUSY_POLL_BUDGET (Linux 5.11+).
	soBusyPollBudget mechanism = "so_busy_poll_budget"
	// busyRead sets the host-wide net.core.busy_read, which every socket
	// created afterwards takes as its SO_BUSY_POLL.
	busyRead mechanism = "busy_read"
	// preferBusyPoll is SoBusyPoll plus SO_PREFER_BUSY_POLL (Linux 5.11+)
	// with the device's napi_defer_hard_irqs and gro_flush_timeout set, so
	// that the device's own NAPI scheduling stays off while the
	// application polls.
	preferBusyPoll mechanism = "prefer_busy_poll"
	// epoll is the epoll baseline: epoll_wait over several connections,
	// then blocking read and write on the ready one.
	epoll mechanism = "epoll"
	// busyPoll sets the host-wide net.core.busy_poll, which makes
	// epoll_wait (and poll, select) busy poll the NAPI id of its sockets.
	busyPoll mechanism = "busy_poll"
	// epollParams sets busy polling on the epoll instance itself with the
	// EPIOCSPARAMS ioctl (Linux 6.9+), whatever the sysctls say.
	epollParams mechanism = "epoll_params"
	// spin is a user-space loop on a non-blocking socket: recv until it
	// stops returning EAGAIN. No kernel busy polling: the thread never
	// sleeps, but packets still need the softirq to reach the socket.
	spin mechanism = "spin"
)

// mechanisms in the order a run measures them.
var mechanisms = []mechanism{blocking, soBusyPoll, soBusyPollBudget, busyRead, preferBusyPoll, epoll, busyPoll, epollParams, spin}

// mode is the data path a mechanism runs on.
type mode int

// Modes.
const (
	modeBlocking mode = iota // rr.Serve and rr.Client, one connection
	modeEpoll                // epoll_wait over several connections
	modeSpin                 // non-blocking recv in a loop, one connection
)

// Mode returns the data path of m.
func (m mechanism) Mode() mode {
	switch m {
	case epoll, busyPoll, epollParams:
		return modeEpoll
	case spin:
		return modeSpin
	}
	return modeBlocking
}

// Baseline reports whether m is a baseline (nothing to engage).
func (m mechanism) Baseline() bool { return m == blocking || m == epoll }

// KernelBusyPoll reports whether m asks the kernel to busy poll a NAPI
// instance: it takes a timeout, and its engagement is judged from NAPI
// evidence.
func (m mechanism) KernelBusyPoll() bool { return !m.Baseline() && m != spin }

// BaselineOf is the baseline m is compared with: the same data path with
// nothing set.
func (m mechanism) BaselineOf() mechanism {
	if m.Mode() == modeEpoll {
		return epoll
	}
	return blocking
}

// HostSysctl is the host-wide sysctl m sets, or "".
func (m mechanism) HostSysctl() string {
	switch m {
	case busyRead:
		return "net.core.busy_read"
	case busyPoll:
		return "net.core.busy_poll"
	}
	return ""
}

// variant is one measured combination: a device condition and a
// mechanism with its timeout and budget.
type variant struct {
	Device    device
	Mechanism mechanism
	// Timeout is the busy-poll time of a timed mechanism, in whole µs.
	Timeout time.Duration
	// Budget is SO_BUSY_POLL_BUDGET of SoBusyPollBudget, in packets.
	Budget int
}

// String names the variant as steps and results show it:
// "veth-gro/busy_read-50us", "veth/so_busy_poll_budget-50us-64pkts",
// "loopback/blocking".
func (v variant) String() string {
	s := string(v.Device) + "/" + string(v.Mechanism)
	if v.Mechanism.KernelBusyPoll() {
		s += "-" + strconv.FormatInt(int64(v.Timeout/time.Microsecond), 10) + "us"
	}
	if v.Mechanism == soBusyPollBudget {
		s += "-" + strconv.Itoa(v.Budget) + "pkts"
	}
	return s
}

// parseVariant reads what String writes.
func parseVariant(s string) (variant, error) {
	dev, rest, ok := strings.Cut(s, "/")
	if !ok {
		return variant{}, fmt.Errorf("variant %q: want DEVICE/MECHANISM", s)
	}
	v := variant{Device: device(dev)}
	if !slices.Contains(devices, v.Device) {
		return variant{}, fmt.Errorf("variant %q: unknown device %q", s, dev)
	}
	parts := strings.Split(rest, "-")
	v.Mechanism = mechanism(parts[0])
	if !slices.Contains(mechanisms, v.Mechanism) {
		return variant{}, fmt.Errorf("variant %q: unknown mechanism %q", s, parts[0])
	}
	want := 1
	if v.Mechanism.KernelBusyPoll() {
		want++
	}
	if v.Mechanism == soBusyPollBudget {
		want++
	}
	if len(parts) != want {
		return variant{}, fmt.Errorf("variant %q: mechanism %s takes %d fields, got %d", s, v.Mechanism, want, len(parts))
	}
	if v.Mechanism.KernelBusyPoll() {
		us, err := strconv.ParseUint(strings.TrimSuffix(parts[1], "us"), 10, 31)
		if err != nil || !strings.HasSuffix(parts[1], "us") {
			return variant{}, fmt.Errorf("variant %q: timeout %q: want whole microseconds such as 50us", s, parts[1])
		}
		v.Timeout = time.Duration(us) * time.Microsecond
	}
	if v.Mechanism == soBusyPollBudget {
		n, err := strconv.ParseUint(strings.TrimSuffix(parts[2], "pkts"), 10, 16)
		if err != nil || !strings.HasSuffix(parts[2], "pkts") || n == 0 {
			return variant{}, fmt.Errorf("variant %q: budget %q: want packets such as 64pkts", s, parts[2])
		}
		v.Budget = int(n)
	}
	return v, nil
}

// expand lists the variants of one device: each mechanism, timed ones once
// per timeout (whole µs; duplicates after truncation dropped).
func expand(d device, mechs []mechanism, timeouts []time.Duration, budget int) []variant {
	var out []variant
	seen := map[string]bool{}
	for _, m := range mechs {
		ts := []time.Duration{0}
		if m.KernelBusyPoll() {
			ts = timeouts
		}
		for _, t := range ts {
			v := variant{Device: d, Mechanism: m, Timeout: t.Truncate(time.Microsecond)}
			if m == soBusyPollBudget {
				v.Budget = budget
			}
			if !seen[v.String()] {
				seen[v.String()] = true
				out = append(out, v)
			}
		}
	}
	return out
}
