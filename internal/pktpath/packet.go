package pktpath

import (
	"net/netip"
	"time"
)

// Packet is one sampled packet (one skb: with TSO a segment of several
// MSS, with GRO what the receiver merged) and the stages it went through.
type Packet struct {
	ID       uint64
	Proto    string // tcp, udp
	Src, Dst netip.AddrPort
	// Seq and Ack of TCP; for UDP Ack is the UDP length.
	Seq, Ack uint32
	IPID     uint16
	Flags    uint8 // TCP flags
	// Offset is the TCP stream offset of the packet's first byte (seq −
	// ISN − 1), which joins it to the application message that carried
	// it; -1 when the connection's SYN was not seen.
	Offset int64
	Stages []Stage // in time order
	Drop   *Drop   // how it died, when it was dropped
}

// Stage is one point of a packet's path.
type Stage struct {
	Name    string
	Node    string // "" when the stage cannot tell its namespace
	Time    time.Time
	Ifindex int
	CPU     int
	Len     int    // skb->len there
	NAPIID  uint32 // receive entry: the NAPI instance (0: none, the backlog)
	PID     int    // reader wakeup: the woken thread
	Copied  int    // copy to user: bytes
	Polled  string // netif_receive_skb: PolledSoftirq, PolledBusy, or "" when unknown
}

// Who took a received packet from its device's queue (Stage.Polled): the
// receive softirq, or a thread busy polling the device's NAPI instance
// (SO_BUSY_POLL, epoll's busy poll).
const (
	PolledSoftirq = "softirq"
	PolledBusy    = "busy poll"
)

// The programs' enum polled (0: unknown).
const (
	polledSoftirq = iota + 1
	polledBusy
)

var polledNames = map[uint32]string{polledSoftirq: PolledSoftirq, polledBusy: PolledBusy}

// Drop is a packet of the lab that the kernel dropped.
type Drop struct {
	Time     time.Time
	Node     string
	Src, Dst netip.AddrPort
	Proto    string
	// Reason is the kernel's skb_drop_reason without its prefix
	// (NETFILTER_DROP, NO_SOCKET); Location the code that dropped it
	// (nft_do_chain+0x46f).
	Reason, Location string
	Packet           uint64 // the sampled packet's id, 0 when not sampled

	// What the kernel said, named by Take and TakeDrops (naming reads the
	// kernel's BTF and symbols, too slow for the reader of events).
	reason   uint32
	location uint64
}

// name fills Reason and Location.
func (d *Drop) name() {
	if d.Reason == "" {
		d.Reason, d.Location = dropReason(d.reason), symbol(d.location)
	}
}
