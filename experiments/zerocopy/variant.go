package zerocopy

import (
	"fmt"
	"strings"

	"github.com/labctl/labctl/internal/units"
)

// Send paths: how the client moves each message of the stream into its
// socket. The first four read a file of the role's own; the others send
// from one page-aligned memory buffer.
const (
	ReadWrite        = "read_write"          // pread the file into a buffer, write the buffer
	MmapWrite        = "mmap_write"          // write from a mapping of the file
	Sendfile         = "sendfile"            // sendfile(2) from the file
	Splice           = "splice"              // splice(2) file → pipe → socket
	Write            = "write"               // write(2) from memory
	MsgZerocopy      = "msg_zerocopy"        // send(2) with MSG_ZEROCOPY from memory
	UringSend        = "uring_send"          // io_uring IORING_OP_SEND from memory
	UringSendZC      = "uring_send_zc"       // io_uring IORING_OP_SEND_ZC from memory
	UringSendZCFixed = "uring_send_zc_fixed" // SEND_ZC from a registered buffer
)

// Receive paths: how the server takes the stream out of its socket.
const (
	Read      = "read"         // read(2) into a buffer
	RecvTrunc = "recv_trunc"   // recv(2) with MSG_TRUNC: discarded in the kernel
	TCPZC     = "tcp_zerocopy" // TCP_ZEROCOPY_RECEIVE into a mapping of the socket
)

// Links: where the stream runs.
const (
	LinkLab      = "lab"      // between the server's and the client's nodes
	LinkLoopback = "loopback" // inside the client's node, over 127.0.0.1
)

var (
	sendPaths = []string{ReadWrite, MmapWrite, Sendfile, Splice, Write, MsgZerocopy, UringSend, UringSendZC, UringSendZCFixed}
	recvPaths = []string{Read, RecvTrunc, TCPZC}
)

// fileBased paths read the role's file; the others send from memory.
func fileBased(send string) bool {
	switch send {
	case ReadWrite, MmapWrite, Sendfile, Splice:
		return true
	}
	return false
}

// zerocopySend paths ask the kernel to send user pages without copying
// them; their completions say whether it did.
func zerocopySend(send string) bool {
	switch send {
	case MsgZerocopy, UringSendZC, UringSendZCFixed:
		return true
	}
	return false
}

// baseline is the path a send path is judged against: the same source and
// submission, with the copy the path avoids. Copy paths have none.
func baseline(send string) string {
	switch send {
	case MmapWrite, Sendfile, Splice:
		return ReadWrite
	case MsgZerocopy:
		return Write
	case UringSendZC, UringSendZCFixed:
		return UringSend
	}
	return ""
}

// label names a path in explanations.
func label(send string) string {
	switch send {
	case ReadWrite:
		return "read+write"
	case MmapWrite:
		return "mmap+write"
	case MsgZerocopy:
		return "MSG_ZEROCOPY"
	case UringSend:
		return "io_uring SEND"
	case UringSendZC:
		return "io_uring SEND_ZC"
	case UringSendZCFixed:
		return "io_uring SEND_ZC (registered buffer)"
	}
	return send
}

// Variant is one cell of the sweep: a link, a send path, a receive path
// and a message size.
type Variant struct {
	// Link is the device kind the stream crosses: "lo" for loopback, else
	// the lab link's kind (veth, bridge, macvlan, nic).
	Link string
	Send string
	Recv string
	Size int
}

// String is the variant's name in results: link/send/recv/size, as in
// "veth/sendfile/read/64KiB".
func (v Variant) String() string {
	return strings.Join([]string{v.Link, v.Send, v.Recv, units.FormatSize(int64(v.Size))}, "/")
}

// ParseVariant reads a variant's name back.
func ParseVariant(name string) (Variant, error) {
	f := strings.Split(name, "/")
	if len(f) != 4 {
		return Variant{}, fmt.Errorf("variant %q: want link/send/recv/size", name)
	}
	size, _, err := units.ParseSize(f[3])
	if err != nil {
		return Variant{}, fmt.Errorf("variant %q: %w", name, err)
	}
	return Variant{Link: f[0], Send: f[1], Recv: f[2], Size: int(size)}, nil
}

// stepVariant is what a role reads from its step's parameters: Steps gives
// each step one link, one send path, one receive path and one size.
func stepVariant(p params) (link, send, recv string, size int) {
	return p.Link[0], p.Send[0], p.Recv[0], int(p.Sizes[0])
}
