package captureorder

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// direction is which copies of frames a capture counts.
type direction int

const (
	// ingress counts frames the interface received (the tap in
	// __netif_receive_skb_core).
	ingress direction = iota
	// egress counts frames the interface sent (the tap in
	// dev_queue_xmit_nit, PACKET_OUTGOING).
	egress
)

func (d direction) String() string {
	if d == egress {
		return "egress"
	}
	return "ingress"
}

// recvTimeout bounds each blocking receive of a tally, so it notices Stop;
// it is also how long a stopping tally waits for a last datagram.
const recvTimeout = 20 * time.Millisecond

// forcedRcvbuf is the receive buffer of the counting sockets: large enough
// for the largest run (count max 100,000 small datagrams, about 1 KiB of
// truesize each, minus what the reader drains meanwhile) so that counts are
// not cut short by the socket itself. SO_RCVBUFFORCE ignores rmem_max and
// needs CAP_NET_ADMIN, which the agent has.
const forcedRcvbuf = 64 << 20

// tally counts what a socket receives that passes accept, on a goroutine
// of its own, until stopped.
type tally struct {
	fd     int
	accept func(b []byte, from unix.Sockaddr) bool
	n      atomic.Int64
	stop   atomic.Bool
	done   chan error

	once sync.Once
	err  error
}

func startTally(fd int, bufSize int, accept func([]byte, unix.Sockaddr) bool) (*tally, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, forcedRcvbuf); err != nil {
		return nil, fmt.Errorf("setsockopt SO_RCVBUFFORCE on fd %d: %w", fd, err)
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("setsockopt SO_RCVTIMEO on fd %d: %w", fd, err)
	}
	t := &tally{fd: fd, accept: accept, done: make(chan error, 1)}
	go t.run(make([]byte, bufSize))
	return t, nil
}

func (t *tally) run(buf []byte) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		n, from, err := unix.Recvfrom(t.fd, buf, 0)
		switch err {
		case nil:
			if t.accept(buf[:min(n, len(buf))], from) {
				t.n.Add(1)
			}
		case unix.EAGAIN, unix.EINTR:
			// A receive that timed out after Stop means the queue is
			// empty: everything queued before Stop has been counted.
			if t.stop.Load() {
				t.done <- nil
				return
			}
		default:
			t.done <- fmt.Errorf("recvfrom fd %d: %w", t.fd, err)
			return
		}
	}
}

// Stop drains what the socket has queued and returns the count; calls
// after the first return the same.
func (t *tally) Stop() (int64, error) {
	t.once.Do(func() {
		t.stop.Store(true)
		t.err = <-t.done
	})
	return t.n.Load(), t.err
}

// capture is an AF_PACKET socket on one interface, the mechanism tcpdump
// uses (libpcap opens the same kind of socket): the kernel hands it a copy
// of every frame the interface receives or sends, and it counts the run's
// datagrams in one direction.
type capture struct {
	Iface string
	Dir   direction
	fd    int
	t     *tally

	once   sync.Once
	result captureCount
	err    error
}

// openCapture starts counting, on iface of the calling thread's network
// namespace, the frames in direction dir that carry an IPv4 UDP datagram
// to port whose payload starts with tag.
func openCapture(iface string, dir direction, port int, tag []byte) (*capture, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	if et := link.Attrs().EncapType; et != "ether" && et != "loopback" {
		return nil, fmt.Errorf("capture on %s: link type %s; only Ethernet-framed devices (and lo) are supported", iface, et)
	}
	// Protocol 0 until bind: a socket opened with ETH_P_ALL would receive
	// the frames of every interface until it is bound to one.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: AF_PACKET socket: %w", iface, err)
	}
	c := &capture{Iface: iface, Dir: dir, fd: fd}
	// ETH_P_ALL puts the socket on the ptype_all list, which both taps
	// walk; a socket bound to ETH_P_IP would only see received frames.
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("capture on %s: bind: %w", iface, err)
	}
	c.t, err = startTally(fd, 2048, func(b []byte, from unix.Sockaddr) bool {
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || (ll.Pkttype == unix.PACKET_OUTGOING) != (dir == egress) {
			return false
		}
		return matchFrame(b, port, tag)
	})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	return c, nil
}

// captureCount is what a capture saw.
type captureCount struct {
	Matched int64
	// Drops are frames the kernel could not queue to the socket
	// (PACKET_STATISTICS tp_drops): a count with drops is a lower bound.
	Drops uint32
}

// Stop drains the capture, closes it and returns its count; calls after
// the first return the same.
func (c *capture) Stop() (captureCount, error) {
	c.once.Do(func() {
		n, err := c.t.Stop()
		c.result.Matched = n
		if st, serr := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); serr == nil {
			c.result.Drops = st.Drops
		} else if err == nil {
			err = fmt.Errorf("getsockopt PACKET_STATISTICS: %w", serr)
		}
		unix.Close(c.fd)
		if err != nil {
			c.err = fmt.Errorf("capture on %s: %w", c.Iface, err)
		}
	})
	return c.result, c.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// matchFrame reports whether an Ethernet frame (as a SOCK_RAW packet socket
// delivers it, lo's included) carries an IPv4 UDP datagram to port whose
// payload starts with tag. Later fragments carry no UDP header and never
// match.
func matchFrame(frame []byte, port int, tag []byte) bool {
	const ethLen = 14
	if len(frame) < ethLen || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP {
		return false
	}
	ip := frame[ethLen:]
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_UDP {
		return false
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
		return false
	}
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl+8 {
		return false
	}
	udp := ip[ihl:]
	return int(binary.BigEndian.Uint16(udp[2:4])) == port && bytes.HasPrefix(udp[8:], tag)
}
