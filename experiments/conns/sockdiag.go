package conns

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The kernel's own view of the connections: inet_diag over
// NETLINK_SOCK_DIAG (include/uapi/linux/inet_diag.h). A dump lists the TCP
// sockets of the caller's network namespace with their state and queues,
// TIME_WAIT ones included (which no descriptor can reach), and SOCK_DESTROY
// removes one by its 4-tuple. The roles use the dump as the evidence that
// their connections are in the state a snapshot claims, and to know when
// the kernel has finished a transition (FIN handshakes, delayed ACKs);
// SOCK_DESTROY takes back the TIME_WAIT sockets a step made, so the next
// step does not start with them expiring under its measurement.

// TCP states (include/net/tcp_states.h). For a TIME_WAIT socket inet_diag
// reports its substate: tcpFinWait2 while the peer's FIN is still to come,
// tcpTimeWait after it.
const (
	tcpEstablished uint8 = 1
	tcpSynSent     uint8 = 2
	tcpSynRecv     uint8 = 3
	tcpFinWait1    uint8 = 4
	tcpFinWait2    uint8 = 5
	tcpTimeWait    uint8 = 6
	tcpClose       uint8 = 7
	tcpCloseWait   uint8 = 8
	tcpLastAck     uint8 = 9
	tcpListen      uint8 = 10
	tcpClosing     uint8 = 11
)

// allStates selects every state in a dump (TCPF_ALL).
const allStates = 0xfff

// stateMask selects the given states in a dump.
func stateMask(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// sockID is an IPv4 TCP connection's 4-tuple.
type sockID struct {
	Local, Remote netip.AddrPort
}

// diagSocket is one socket of a dump (struct inet_diag_msg).
type diagSocket struct {
	ID    sockID
	State uint8
	// RQueue is the unread bytes of a connection, or the accept queue
	// length of a listener; WQueue the unacknowledged bytes, or the
	// listener's accept backlog limit (sk_max_ack_backlog).
	RQueue, WQueue uint32
	// Inode is the socket's inode; 0 for a TIME_WAIT socket or an
	// orphan (closed by the application, still in the kernel).
	Inode uint32
}

// Sizes of the uapi structs: inet_diag_sockid (48 bytes),
// inet_diag_req_v2 (56), inet_diag_msg (72).
const (
	sizeofSockID  = 48
	sizeofDiagReq = 8 + sizeofSockID
	sizeofDiagMsg = 4 + sizeofSockID + 20
	// nocookie is INET_DIAG_NOCOOKIE: match by 4-tuple only.
	nocookie = ^uint32(0)
)

// putSockID writes an inet_diag_sockid: ports and addresses in network
// byte order, interface and cookie in host order.
func putSockID(b []byte, id sockID) {
	binary.BigEndian.PutUint16(b[0:], id.Local.Port())
	binary.BigEndian.PutUint16(b[2:], id.Remote.Port())
	if id.Local.Addr().Is4() {
		a := id.Local.Addr().As4()
		copy(b[4:8], a[:])
	}
	if id.Remote.Addr().Is4() {
		a := id.Remote.Addr().As4()
		copy(b[20:24], a[:])
	}
	binary.NativeEndian.PutUint32(b[36:], 0)
	binary.NativeEndian.PutUint32(b[40:], nocookie)
	binary.NativeEndian.PutUint32(b[44:], nocookie)
}

// appendRequest appends one netlink message carrying an inet_diag_req_v2
// for IPv4 TCP.
func appendRequest(buf []byte, typ, flags uint16, seq, states uint32, id sockID) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, unix.NLMSG_HDRLEN+sizeofDiagReq)...)
	m := buf[start:]
	binary.NativeEndian.PutUint32(m[0:], uint32(len(m)))
	binary.NativeEndian.PutUint16(m[4:], typ)
	binary.NativeEndian.PutUint16(m[6:], flags)
	binary.NativeEndian.PutUint32(m[8:], seq)
	r := m[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_INET
	r[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], states)
	putSockID(r[8:], id)
	return buf
}

// parseDiagMsg reads an inet_diag_msg.
func parseDiagMsg(b []byte) (diagSocket, error) {
	if len(b) < sizeofDiagMsg {
		return diagSocket{}, fmt.Errorf("inet_diag_msg of %d bytes, want at least %d", len(b), sizeofDiagMsg)
	}
	if b[0] != unix.AF_INET {
		return diagSocket{}, fmt.Errorf("inet_diag_msg of family %d, want AF_INET", b[0])
	}
	id := b[4:]
	s := diagSocket{
		State: b[1],
		ID: sockID{
			Local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[4:8])), binary.BigEndian.Uint16(id[0:])),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte(id[20:24])), binary.BigEndian.Uint16(id[2:])),
		},
	}
	rest := b[4+sizeofSockID:]
	s.RQueue = binary.NativeEndian.Uint32(rest[4:])
	s.WQueue = binary.NativeEndian.Uint32(rest[8:])
	s.Inode = binary.NativeEndian.Uint32(rest[16:])
	return s, nil
}

// nlMessage is one message of a netlink reply.
type nlMessage struct {
	Type    uint16
	Seq     uint32
	Payload []byte
}

// splitMessages splits a netlink reply into its messages.
func splitMessages(b []byte) ([]nlMessage, error) {
	var out []nlMessage
	for len(b) >= unix.NLMSG_HDRLEN {
		n := int(binary.NativeEndian.Uint32(b[0:]))
		if n < unix.NLMSG_HDRLEN || n > len(b) {
			return out, fmt.Errorf("netlink message of length %d in %d bytes", n, len(b))
		}
		out = append(out, nlMessage{Type: binary.NativeEndian.Uint16(b[4:]), Seq: binary.NativeEndian.Uint32(b[8:]), Payload: b[unix.NLMSG_HDRLEN:n]})
		b = b[min(nlAlign(n), len(b)):]
	}
	return out, nil
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// nlError reads the errno of an NLMSG_ERROR message (0 for an ACK).
func nlError(payload []byte) (unix.Errno, error) {
	if len(payload) < 4 {
		return 0, fmt.Errorf("NLMSG_ERROR of %d bytes", len(payload))
	}
	return unix.Errno(-int32(binary.NativeEndian.Uint32(payload))), nil
}

// diag is a NETLINK_SOCK_DIAG socket of the calling thread's network
// namespace.
type diag struct {
	fd  int
	seq uint32
	buf []byte
}

func openDiag() (*diag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag netlink socket: %w", err)
	}
	// Acknowledgements without a copy of the request keep a batch of
	// SOCK_DESTROY replies small (NETLINK_CAP_ACK, Linux 4.3).
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag netlink socket: NETLINK_CAP_ACK: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag netlink socket: bind: %w", err)
	}
	// A dump part is at most 32 KiB; a batch of destroy ACKs is smaller.
	return &diag{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (d *diag) close() error { return unix.Close(d.fd) }

func (d *diag) send(b []byte) error {
	if err := unix.Sendto(d.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag: send: %w", err)
	}
	return nil
}

// recv reads one datagram of replies.
func (d *diag) recv() ([]nlMessage, error) {
	for {
		n, _, flags, _, err := unix.Recvmsg(d.fd, d.buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag: recv: %w", err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return nil, fmt.Errorf("sock_diag: reply larger than %d bytes", len(d.buf))
		}
		return splitMessages(d.buf[:n])
	}
}

// dump calls fn for every IPv4 TCP socket of the namespace in one of the
// given states.
func (d *diag) dump(states uint32, fn func(diagSocket)) error {
	d.seq++
	seq := d.seq
	if err := d.send(appendRequest(nil, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, seq, states, sockID{})); err != nil {
		return err
	}
	for {
		msgs, err := d.recv()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Seq != seq {
				continue
			}
			switch m.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				errno, err := nlError(m.Payload)
				if err != nil {
					return fmt.Errorf("sock_diag dump: %w", err)
				}
				return fmt.Errorf("sock_diag dump: %w", errno)
			case unix.SOCK_DIAG_BY_FAMILY:
				s, err := parseDiagMsg(m.Payload)
				if err != nil {
					return fmt.Errorf("sock_diag dump: %w", err)
				}
				fn(s)
			}
		}
	}
}

// destroyBatch bounds the SOCK_DESTROY requests sent in one datagram.
const destroyBatch = 256

// destroy removes sockets by 4-tuple with SOCK_DESTROY, which needs
// CONFIG_INET_DIAG_DESTROY and CAP_NET_ADMIN; on a TIME_WAIT socket it
// deschedules the timer and frees it at once (tcp_abort, Linux 4.5+). A
// socket already gone (ENOENT) is not an error; it returns how many were.
func (d *diag) destroy(ids []sockID) (gone int, err error) {
	req := make([]byte, 0, destroyBatch*(unix.NLMSG_HDRLEN+sizeofDiagReq))
	for len(ids) > 0 {
		batch := ids[:min(destroyBatch, len(ids))]
		ids = ids[len(batch):]
		req = req[:0]
		first := d.seq + 1
		for _, id := range batch {
			d.seq++
			req = appendRequest(req, unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, d.seq, 0, id)
		}
		if err := d.send(req); err != nil {
			return gone, err
		}
		for acked := 0; acked < len(batch); {
			msgs, err := d.recv()
			if err != nil {
				return gone, err
			}
			for _, m := range msgs {
				if m.Type != unix.NLMSG_ERROR || m.Seq < first || m.Seq > d.seq {
					continue
				}
				acked++
				errno, err := nlError(m.Payload)
				switch {
				case err != nil:
					return gone, fmt.Errorf("sock_diag destroy: %w", err)
				case errno == unix.ENOENT:
					gone++
				case errno == unix.EOPNOTSUPP:
					return gone, fmt.Errorf("sock_diag destroy: %w (the kernel lacks CONFIG_INET_DIAG_DESTROY)", errno)
				case errno != 0:
					id := batch[m.Seq-first]
					return gone, fmt.Errorf("sock_diag destroy %v -> %v: %w", id.Local, id.Remote, errno)
				}
			}
		}
	}
	return gone, nil
}
