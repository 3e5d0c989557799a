package conns

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/sock"
)

// The roles of a step run at the same time and meet at barriers: the
// client drives, the server answers each command once it has done its
// part. Commands travel on a control connection (the port the server
// announces as ready) as JSON framed by a 4-byte length. The control
// connection is one socket per side, part of every snapshot's baseline.
//
// Both sides end it with a reset (abort), never with a FIN: a FIN would
// leave a TIME_WAIT socket behind for a minute, in the next step's
// baseline. For the same reason a cancelled role is not woken with
// shutdown(2) (which sends a FIN): receive polls and watches ctx.

// Commands (client to server) and replies (server to client).
const (
	opHello  = "hello"  // client: its ephemeral port range; server: its listening ports
	opSnap   = "snap"   // read the server's side of a snapshot
	opOpen   = "open"   // accept the step's connections; reply once all are in place
	opFin    = "fin"    // the client is closing: reply once every FIN has arrived
	opClose  = "close"  // close the server's ends; reply once the kernel has freed them
	opStop   = "stop"   // conn-limits: the client is done opening
	opDone   = "done"   // end of the step
	opOK     = "ok"     // a command done
	opFailed = "failed" // either side: the role failed; Err names it and says why
)

type message struct {
	Op        string   `json:"op"`
	Phase     string   `json:"phase,omitempty"`
	PortRange int      `json:"port_range,omitempty"`
	Ports     []uint16 `json:"ports,omitempty"`
	// Memcg is the server's memory cgroup (hello) and Kmem its kernel
	// memory (snap), which the client adds to its own when the roles
	// are in different cgroups.
	Memcg  string `json:"memcg,omitempty"`
	Kmem   int64  `json:"kmem,omitempty"`
	KmemOK bool   `json:"kmem_ok,omitempty"`
	Err    string `json:"err,omitempty"`
}

// maxMessage bounds a control message (a port list is the largest).
const maxMessage = 64 << 10

func send(fd sock.FD, m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	if _, err := sock.WriteFull(fd, append(frame, b...)); err != nil {
		return fmt.Errorf("control: send %s: %w", m.Op, err)
	}
	return nil
}

// receive waits for the next message, watching ctx.
func receive(ctx context.Context, fd sock.FD) (message, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, 100)
		if err != nil && err != unix.EINTR {
			return message{}, fmt.Errorf("control: poll: %w", err)
		}
		if n > 0 {
			break
		}
		if ctx.Err() != nil {
			return message{}, ctx.Err()
		}
	}
	var hdr [4]byte
	if _, err := sock.ReadFull(fd, hdr[:]); err != nil {
		return message{}, fmt.Errorf("control: receive: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxMessage {
		return message{}, fmt.Errorf("control: message of %d bytes (at most %d)", n, maxMessage)
	}
	b := make([]byte, n)
	if _, err := sock.ReadFull(fd, b); err != nil {
		return message{}, fmt.Errorf("control: receive: %w", err)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return message{}, fmt.Errorf("control: %w", err)
	}
	return m, nil
}

// expect receives a message and checks that it is op; a failed server
// becomes the client's error.
func expect(ctx context.Context, fd sock.FD, op string) (message, error) {
	m, err := receive(ctx, fd)
	if err != nil {
		return m, err
	}
	if m.Op == opFailed {
		return m, errors.New(m.Err) // names the role that failed
	}
	if m.Op != op {
		return m, fmt.Errorf("control: got %q, want %q", m.Op, op)
	}
	return m, nil
}

// call sends a command and waits for its reply.
func call(ctx context.Context, fd sock.FD, m message) (message, error) {
	if err := send(fd, m); err != nil {
		return message{}, err
	}
	return expect(ctx, fd, opOK)
}

// finish ends the client's side of the control connection once the step
// is done: it waits (a few seconds at most) for the server's reset (the
// server aborts its end after reading opDone), so that neither end leaves
// a TIME_WAIT socket.
func finish(ctx context.Context, fd sock.FD) error {
	if err := send(fd, message{Op: opDone}); err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if m, err := receive(wait, fd); err == nil {
		return fmt.Errorf("control: got %q after done", m.Op)
	}
	return ctx.Err()
}

// dialControl connects the client to the server's control connection and
// tells the orchestrator the client is ready (it listens on nothing).
func dialControl(env *experiments.Env) (netip.AddrPort, sock.FD, error) {
	peer, err := env.Peer(experiments.Server)
	if err != nil {
		return netip.AddrPort{}, -1, err
	}
	cfd, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return netip.AddrPort{}, -1, fmt.Errorf("control: %w", err)
	}
	env.Ready(0)
	return peer, cfd, nil
}
