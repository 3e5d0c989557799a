package sock

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Socket options the experiments use, each with its level and value type.
// golang.org/x/sys/unix v0.49.0 defines every constant needed here (the
// newest, SO_PREFER_BUSY_POLL and SO_BUSY_POLL_BUDGET, are from Linux 5.11).

func setInt(fd FD, level, opt int, name string, v int) error {
	if err := unix.SetsockoptInt(int(fd), level, opt, v); err != nil {
		return fmt.Errorf("setsockopt %s=%d on fd %d: %w", name, v, fd, err)
	}
	return nil
}

func getInt(fd FD, level, opt int, name string) (int, error) {
	v, err := unix.GetsockoptInt(int(fd), level, opt)
	if err != nil {
		return 0, fmt.Errorf("getsockopt %s on fd %d: %w", name, fd, err)
	}
	return v, nil
}

func boolInt(on bool) int {
	if on {
		return 1
	}
	return 0
}

// SetNoDelay sets TCP_NODELAY: with on, small segments go out at once instead
// of waiting, by Nagle's algorithm, for the ACK of data in flight.
func SetNoDelay(fd FD, on bool) error {
	return setInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY", boolInt(on))
}

// SetQuickAck sets TCP_QUICKACK: with on, the kernel leaves delayed-ACK
// ("pingpong") mode and acknowledges at once. The setting is not sticky: the
// kernel re-enters delayed-ACK mode on its own when it sees an interactive
// exchange, so a latency experiment sets it again after every receive.
func SetQuickAck(fd FD, on bool) error {
	return setInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, "TCP_QUICKACK", boolInt(on))
}

// SetRecvBuffer sets SO_RCVBUF. The kernel stores twice the requested value,
// the extra half covering its sk_buff bookkeeping, after capping the request
// at net.core.rmem_max (and raising it to a minimum of about 2.3 KB); it also
// stops TCP's receive-buffer autotuning on this socket. RecvBuffer reads back
// what the kernel kept.
func SetRecvBuffer(fd FD, bytes int) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, "SO_RCVBUF", bytes)
}

// RecvBuffer returns SO_RCVBUF as the kernel keeps it: the doubled value
// after SetRecvBuffer, or TCP's autotuned size otherwise.
func RecvBuffer(fd FD) (int, error) {
	return getInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, "SO_RCVBUF")
}

// SetSendBuffer sets SO_SNDBUF: as SetRecvBuffer, the kernel doubles the
// value after capping it at net.core.wmem_max (minimum about 4.6 KB) and stops
// send-buffer autotuning.
func SetSendBuffer(fd FD, bytes int) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, "SO_SNDBUF", bytes)
}

// SendBuffer returns SO_SNDBUF as the kernel keeps it (doubled, see
// SetSendBuffer).
func SendBuffer(fd FD) (int, error) {
	return getInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, "SO_SNDBUF")
}

// SetBusyPoll sets SO_BUSY_POLL, the time a blocking receive on this socket
// busy polls the device queue of the NAPI context its last packet came from
// (see IncomingNAPIID) before sleeping. The kernel counts whole microseconds,
// so d is truncated to µs. Raising it above its current value needs
// CAP_NET_ADMIN (EPERM otherwise). It does nothing for a socket whose
// packets arrive through no NAPI context, such as over loopback.
func SetBusyPoll(fd FD, d time.Duration) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, "SO_BUSY_POLL", int(d/time.Microsecond))
}

// SetPreferBusyPoll sets SO_PREFER_BUSY_POLL (Linux 5.11+): with on, busy
// polling keeps softirq processing of the device queue deferred while the
// application polls, so the two do not race for packets; it takes effect with
// the device's napi_defer_hard_irqs and gro_flush_timeout set. Turning it on
// needs CAP_NET_ADMIN.
func SetPreferBusyPoll(fd FD, on bool) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, "SO_PREFER_BUSY_POLL", boolInt(on))
}

// SetBusyPollBudget sets SO_BUSY_POLL_BUDGET (Linux 5.11+), the number of
// packets one busy poll iteration may process (default 8, at most 65535).
// Raising it above its current value needs CAP_NET_ADMIN. The kernel offers
// no way to read it back (getsockopt answers ENOPROTOOPT, as of Linux 6.18).
func SetBusyPollBudget(fd FD, packets int) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL_BUDGET, "SO_BUSY_POLL_BUDGET", packets)
}

// IncomingNAPIID returns SO_INCOMING_NAPI_ID (Linux 4.12+), the id of the
// NAPI context that delivered the last packet received on fd. 0 means the
// packet came through no NAPI context (loopback, veth without GRO or XDP) or
// nothing has been received yet: busy polling cannot engage for this socket.
// A kernel built without CONFIG_NET_RX_BUSY_POLL answers ENOPROTOOPT.
func IncomingNAPIID(fd FD) (uint32, error) {
	v, err := getInt(fd, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID, "SO_INCOMING_NAPI_ID")
	return uint32(v), err
}

// IncomingCPU returns SO_INCOMING_CPU, the CPU that processed the last packet
// received on fd in softirq context, or -1 for a socket that never received
// one. A TCP socket counts its handshake: a connected or accepted socket
// already has a CPU before any data arrives.
func IncomingCPU(fd FD) (int, error) {
	return getInt(fd, unix.SOL_SOCKET, unix.SO_INCOMING_CPU, "SO_INCOMING_CPU")
}

// SetZerocopy sets SO_ZEROCOPY (TCP since Linux 4.14, UDP since 5.0), which
// lets Send honour MSG_ZEROCOPY; completions then arrive on the error queue
// (ReadZerocopyCompletions).
func SetZerocopy(fd FD, on bool) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_ZEROCOPY, "SO_ZEROCOPY", boolInt(on))
}

// SetReuseAddr sets SO_REUSEADDR: a TCP socket may bind a local port that
// connections in TIME_WAIT still use.
func SetReuseAddr(fd FD, on bool) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, "SO_REUSEADDR", boolInt(on))
}

// SetReusePort sets SO_REUSEPORT: sockets of the same user that all set it
// before bind may bind the same address, and the kernel spreads incoming
// connections or datagrams among them by flow hash. Set after bind it only
// admits later sockets into the group.
func SetReusePort(fd FD, on bool) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, "SO_REUSEPORT", boolInt(on))
}

// SetRecvLowat sets SO_RCVLOWAT: a blocking receive, and poll/epoll
// readability of a TCP socket, wait until at least bytes bytes are queued (a
// receive still returns less at EOF or on a signal). Since Linux 4.18 TCP
// also holds back the reader's wakeup until then and grows the receive buffer
// to fit the value.
func SetRecvLowat(fd FD, bytes int) error {
	return setInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, "SO_RCVLOWAT", bytes)
}
