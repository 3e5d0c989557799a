package busypoll

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Device is the condition of the path between client and server: which
// device carries the packets and whether it gives them a NAPI context, the
// one thing every busy-poll knob needs.
type Device string

// Device conditions.
const (
	// Loopback: both roles in the server's node over 127.0.0.1. Packets go
	// through the per-CPU backlog, which has no NAPI id.
	Loopback Device = "loopback"
	// Veth as created: veth_xmit hands the skb to the peer's backlog
	// (netif_rx), no NAPI id.
	Veth Device = "veth"
	// VethGRO: a veth link the topology creates with GRO on, with TSO
	// turned off on both ends for the step. Since Linux 5.13 a veth with
	// GRO on has a NAPI instance, but since 5.14 veth_xmit uses it only
	// for skbs it deems worth aggregating (veth_skb_is_eligible_for_gro):
	// a TCP skb from a sending device with TSO on bypasses NAPI.
	VethGRO Device = "veth-gro"
	// VethGROTSO: the same link with TSO on, as veth is created: GRO on,
	// yet TCP gets no NAPI id. The control for the claim that GRO alone
	// gives veth NAPI.
	VethGROTSO Device = "veth-gro-tso"
	// VethXDP: a veth link without GRO, with the experiment's XDP pass
	// program attached to both ends; an XDP program also gives veth a
	// NAPI instance (Linux 4.19+).
	VethXDP Device = "veth-xdp"
	// NIC: a host NIC moved into the server's node or a macvlan on one.
	NIC Device = "nic"
)

// Devices in the order a run measures them.
var Devices = []Device{Loopback, Veth, VethGRO, VethGROTSO, VethXDP, NIC}

// TSO is the TSO state the condition wants on the roles' interfaces:
// "on", "off", or "" to leave it as it is.
func (d Device) TSO() string {
	switch d {
	case VethGRO:
		return "off"
	case VethGROTSO:
		return "on"
	}
	return ""
}

// Mechanism is how a role waits for the next message.
type Mechanism string

// Mechanisms. Those of ModeBlocking run on rr.Serve and rr.Client; the
// others on this package's epoll and spin loops.
const (
	// Blocking is the baseline: blocking recv, the thread sleeps until the
	// softirq that queued the packet wakes it.
	Blocking Mechanism = "blocking"
	// SoBusyPoll sets SO_BUSY_POLL on both sockets: a blocking recv polls
	// the socket's NAPI instance for up to the timeout before sleeping.
	SoBusyPoll Mechanism = "so_busy_poll"
	// SoBusyPollBudget is SoBusyPoll plus SO_BUSY_POLL_BUDGET (Linux 5.11+).
	SoBusyPollBudget Mechanism = "so_busy_poll_budget"
	// BusyRead sets the host-wide net.core.busy_read, which every socket
	// created afterwards takes as its SO_BUSY_POLL.
	BusyRead Mechanism = "busy_read"
	// PreferBusyPoll is SoBusyPoll plus SO_PREFER_BUSY_POLL (Linux 5.11+)
	// with the device's napi_defer_hard_irqs and gro_flush_timeout set, so
	// that the device's own NAPI scheduling stays off while the
	// application polls.
	PreferBusyPoll Mechanism = "prefer_busy_poll"
	// Epoll is the epoll baseline: epoll_wait over several connections,
	// then blocking read and write on the ready one.
	Epoll Mechanism = "epoll"
	// BusyPoll sets the host-wide net.core.busy_poll, which makes
	// epoll_wait (and poll, select) busy poll the NAPI id of its sockets.
	BusyPoll Mechanism = "busy_poll"
	// EpollParams sets busy polling on the epoll instance itself with the
	// EPIOCSPARAMS ioctl (Linux 6.9+), whatever the sysctls say.
	EpollParams Mechanism = "epoll_params"
	// Spin is a user-space loop on a non-blocking socket: recv until it
	// stops returning EAGAIN. No kernel busy polling: the thread never
	// sleeps, but packets still need the softirq to reach the socket.
	Spin Mechanism = "spin"
)

// Mechanisms in the order a run measures them.
var Mechanisms = []Mechanism{Blocking, SoBusyPoll, SoBusyPollBudget, BusyRead, PreferBusyPoll, Epoll, BusyPoll, EpollParams, Spin}

// Mode is the data path a mechanism runs on.
type Mode int

// Modes.
const (
	ModeBlocking Mode = iota // rr.Serve and rr.Client, one connection
	ModeEpoll                // epoll_wait over several connections
	ModeSpin                 // non-blocking recv in a loop, one connection
)

// Mode returns the data path of m.
func (m Mechanism) Mode() Mode {
	switch m {
	case Epoll, BusyPoll, EpollParams:
		return ModeEpoll
	case Spin:
		return ModeSpin
	}
	return ModeBlocking
}

// Baseline reports whether m is a baseline (nothing to engage).
func (m Mechanism) Baseline() bool { return m == Blocking || m == Epoll }

// KernelBusyPoll reports whether m asks the kernel to busy poll a NAPI
// instance: it takes a timeout, and its engagement is judged from NAPI
// evidence.
func (m Mechanism) KernelBusyPoll() bool { return !m.Baseline() && m != Spin }

// BaselineOf is the baseline m is compared with: the same data path with
// nothing set.
func (m Mechanism) BaselineOf() Mechanism {
	if m.Mode() == ModeEpoll {
		return Epoll
	}
	return Blocking
}

// HostSysctl is the host-wide sysctl m sets, or "".
func (m Mechanism) HostSysctl() string {
	switch m {
	case BusyRead:
		return "net.core.busy_read"
	case BusyPoll:
		return "net.core.busy_poll"
	}
	return ""
}

// Variant is one measured combination: a device condition and a
// mechanism with its timeout and budget.
type Variant struct {
	Device    Device
	Mechanism Mechanism
	// Timeout is the busy-poll time of a timed mechanism, in whole µs.
	Timeout time.Duration
	// Budget is SO_BUSY_POLL_BUDGET of SoBusyPollBudget, in packets.
	Budget int
}

// String names the variant as steps and results show it:
// "veth-gro/busy_read-50us", "veth/so_busy_poll_budget-50us-64pkts",
// "loopback/blocking".
func (v Variant) String() string {
	s := string(v.Device) + "/" + string(v.Mechanism)
	if v.Mechanism.KernelBusyPoll() {
		s += "-" + strconv.FormatInt(int64(v.Timeout/time.Microsecond), 10) + "us"
	}
	if v.Mechanism == SoBusyPollBudget {
		s += "-" + strconv.Itoa(v.Budget) + "pkts"
	}
	return s
}

// ParseVariant reads what String writes.
func ParseVariant(s string) (Variant, error) {
	dev, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Variant{}, fmt.Errorf("variant %q: want DEVICE/MECHANISM", s)
	}
	v := Variant{Device: Device(dev)}
	if !slices.Contains(Devices, v.Device) {
		return Variant{}, fmt.Errorf("variant %q: unknown device %q", s, dev)
	}
	parts := strings.Split(rest, "-")
	v.Mechanism = Mechanism(parts[0])
	if !slices.Contains(Mechanisms, v.Mechanism) {
		return Variant{}, fmt.Errorf("variant %q: unknown mechanism %q", s, parts[0])
	}
	want := 1
	if v.Mechanism.KernelBusyPoll() {
		want++
	}
	if v.Mechanism == SoBusyPollBudget {
		want++
	}
	if len(parts) != want {
		return Variant{}, fmt.Errorf("variant %q: mechanism %s takes %d fields, got %d", s, v.Mechanism, want, len(parts))
	}
	if v.Mechanism.KernelBusyPoll() {
		us, err := strconv.ParseUint(strings.TrimSuffix(parts[1], "us"), 10, 31)
		if err != nil || !strings.HasSuffix(parts[1], "us") {
			return Variant{}, fmt.Errorf("variant %q: timeout %q: want whole microseconds such as 50us", s, parts[1])
		}
		v.Timeout = time.Duration(us) * time.Microsecond
	}
	if v.Mechanism == SoBusyPollBudget {
		n, err := strconv.ParseUint(strings.TrimSuffix(parts[2], "pkts"), 10, 16)
		if err != nil || !strings.HasSuffix(parts[2], "pkts") || n == 0 {
			return Variant{}, fmt.Errorf("variant %q: budget %q: want packets such as 64pkts", s, parts[2])
		}
		v.Budget = int(n)
	}
	return v, nil
}

// Expand lists the variants of one device: each mechanism, timed ones once
// per timeout (whole µs; duplicates after truncation dropped).
func Expand(d Device, mechs []Mechanism, timeouts []time.Duration, budget int) []Variant {
	var out []Variant
	seen := map[string]bool{}
	for _, m := range mechs {
		ts := []time.Duration{0}
		if m.KernelBusyPoll() {
			ts = timeouts
		}
		for _, t := range ts {
			v := Variant{Device: d, Mechanism: m, Timeout: t.Truncate(time.Microsecond)}
			if m == SoBusyPollBudget {
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
