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
	readWrite        = "read_write"          // pread the file into a buffer, write the buffer
	mmapWrite        = "mmap_write"          // write from a mapping of the file
	sendfile         = "sendfile"            // sendfile(2) from the file
	splice           = "splice"              // splice(2) file → pipe → socket
	write            = "write"               // write(2) from memory
	msgZerocopy      = "msg_zerocopy"        // send(2) with MSG_ZEROCOPY from memory
	uringSend        = "uring_send"          // io_uring IORING_OP_SEND from memory
	uringSendZC      = "uring_send_zc"       // io_uring IORING_OP_SEND_ZC from memory
	uringSendZCFixed = "uring_send_zc_fixed" // SEND_ZC from a registered buffer
)

// Receive paths: how the server takes the stream out of its socket.
const (
	read      = "read"         // read(2) into a buffer
	recvTrunc = "recv_trunc"   // recv(2) with MSG_TRUNC: discarded in the kernel
	tcpzc     = "tcp_zerocopy" // TCP_ZEROCOPY_RECEIVE into a mapping of the socket
)

// Links: where the stream runs.
const (
	linkLab      = "lab"      // between the server's and the client's nodes
	linkLoopback = "loopback" // inside the client's node, over 127.0.0.1
)

var (
	sendPaths = []string{readWrite, mmapWrite, sendfile, splice, write, msgZerocopy, uringSend, uringSendZC, uringSendZCFixed}
	recvPaths = []string{read, recvTrunc, tcpzc}
)

// fileBased paths read the role's file; the others send from memory.
func fileBased(send string) bool {
	switch send {
	case readWrite, mmapWrite, sendfile, splice:
		return true
	}
	return false
}

// zerocopySend paths ask the kernel to send user pages without copying
// them; their completions say whether it did.
func zerocopySend(send string) bool {
	switch send {
	case msgZerocopy, uringSendZC, uringSendZCFixed:
		return true
	}
	return false
}

// baseline is the path a send path is judged against: the same source and
// submission, with the copy the path avoids. Copy paths have none.
func baseline(send string) string {
	switch send {
	case mmapWrite, sendfile, splice:
		return readWrite
	case msgZerocopy:
		return write
	case uringSendZC, uringSendZCFixed:
		return uringSend
	}
	return ""
}

// label names a path in explanations.
func label(send string) string {
	switch send {
	case readWrite:
		return "read+write"
	case mmapWrite:
		return "mmap+write"
	case msgZerocopy:
		return "MSG_ZEROCOPY"
	case uringSend:
		return "io_uring SEND"
	case uringSendZC:
		return "io_uring SEND_ZC"
	case uringSendZCFixed:
		return "io_uring SEND_ZC (registered buffer)"
	}
	return send
}

// variant is one cell of the sweep: a link, a send path, a receive path
// and a message size.
type variant struct {
	// Link is the device kind the stream crosses: "lo" for loopback, else
	// the lab link's kind (veth, bridge, macvlan, nic).
	Link string
	Send string
	Recv string
	Size int
}

// String is the variant's name in results: link/send/recv/size, as in
// "veth/sendfile/read/64KiB".
func (v variant) String() string {
	return strings.Join([]string{v.Link, v.Send, v.Recv, units.FormatSize(int64(v.Size))}, "/")
}

// parseVariant reads a variant's name back.
func parseVariant(name string) (variant, error) {
	f := strings.Split(name, "/")
	if len(f) != 4 {
		return variant{}, fmt.Errorf("variant %q: want link/send/recv/size", name)
	}
	size, _, err := units.ParseSize(f[3])
	if err != nil {
		return variant{}, fmt.Errorf("variant %q: %w", name, err)
	}
	return variant{Link: f[0], Send: f[1], Recv: f[2], Size: int(size)}, nil
}

// stepVariant is what a role reads from its step's parameters: Steps gives
// each step one link, one send path, one receive path and one size.
func stepVariant(p params) (link, send, recv string, size int) {
	return p.Link[0], p.Send[0], p.Recv[0], int(p.Sizes[0])
}
