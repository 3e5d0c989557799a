package zerocopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/sock"
	"github.com/labctl/labctl/internal/uring"
)

// Every buffer the kernel reads from here is an anonymous or file mapping,
// outside the Go heap: its address never changes, so it can travel as a
// uintptr through the raw system calls below, to io_uring, and be pinned by
// MSG_ZEROCOPY for as long as the kernel likes.

// drainEvery is how many MSG_ZEROCOPY sends go by between two reads of the
// error queue: reading after every send would add a system call per
// message, never reading lets uncompleted sends exhaust the socket's
// option memory (ENOBUFS). The kernel's msg_zerocopy selftest reads after
// 32 sends as well.
const drainEvery = 32

// completionWait bounds the wait for the last completions after the
// stream: they arrive as soon as the receiver has acknowledged the data.
const completionWait = 10 * time.Second

// sender moves messages of one size into a connected TCP socket through
// one send path, counting every system call it makes.
type sender struct {
	path  string
	size  int
	fd    sock.FD
	calls int64

	// The file-based paths send the file cyclically from off; its length
	// is a multiple of size, so a message never wraps.
	file    *os.File
	fileFD  int
	fileLen int64
	off     int64
	mapping []byte // mmap_write: the whole file, mapped
	pipe    [2]int // splice: read and write end
	pipeCap int

	// buf is the user buffer: read_write's destination, the memory paths'
	// source; an anonymous mapping of size bytes.
	buf []byte

	ring    *uring.Ring
	zcFlags uring.ZCFlags

	// Zero-copy accounting: sends the kernel will complete (MSG_ZEROCOPY
	// sends it numbered, SEND_ZC requests that announced a notification)
	// and what the completions said.
	zcSends int64
	tally   zcTally
	drained int
	compl   []sock.Completion
}

// newSender prepares a path's source: the file (filled, and unlinked at
// once so that nothing outlives the role) for the file-based paths, the
// user buffer, the pipe for splice. What needs the socket or io_uring comes
// in attach.
func newSender(path string, size int, fileSize int64, runID string) (*sender, error) {
	s := &sender{path: path, size: size, fd: -1, fileFD: -1, pipe: [2]int{-1, -1}}
	var err error
	if s.buf, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("%s: map a %d-byte buffer: %w", path, size, err)
	}
	for i := range s.buf {
		s.buf[i] = byte(i*7 + 1)
	}
	if !fileBased(path) {
		return s, nil
	}
	if err := s.openFile(max(int64(size), fileSize/int64(size)*int64(size)), runID); err != nil {
		s.close()
		return nil, err
	}
	switch path {
	case mmapWrite:
		if s.mapping, err = unix.Mmap(s.fileFD, 0, int(s.fileLen), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			s.close()
			return nil, fmt.Errorf("mmap %s: %w", s.file.Name(), err)
		}
	case splice:
		if err := s.openPipe(); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// openFile creates the role's file in the temp directory and fills it.
// Unlinked right away, it lives as long as its descriptor, even if the
// agent is killed. Its pages stay in the page cache, which is what
// sendfile and splice send from.
func (s *sender) openFile(length int64, runID string) error {
	f, err := os.CreateTemp("", "labctl-zerocopy-"+safeName(runID)+"-*")
	if err != nil {
		return fmt.Errorf("%s: temp file: %w", s.path, err)
	}
	s.file, s.fileFD, s.fileLen = f, int(f.Fd()), length
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("%s: unlink %s: %w", s.path, f.Name(), err)
	}
	for off := int64(0); off < length; off += int64(len(s.buf)) {
		n := min(int64(len(s.buf)), length-off)
		if _, err := f.WriteAt(s.buf[:n], off); err != nil {
			return fmt.Errorf("%s: fill %s: %w", s.path, f.Name(), err)
		}
	}
	return nil
}

// openPipe makes splice's pipe and widens it to a message, so that one
// splice pair moves a whole message when the kernel allows.
func (s *sender) openPipe() error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("splice: pipe: %w", err)
	}
	s.pipe = p
	// F_SETPIPE_SZ rounds up to a power of two pages; without
	// CAP_SYS_RESOURCE it stops at fs.pipe-max-size (1 MiB by default), and
	// a message larger than the pipe moves in several splices.
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, s.size); err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("splice: F_SETPIPE_SZ %d: %w", s.size, err)
	}
	c, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return fmt.Errorf("splice: F_GETPIPE_SZ: %w", err)
	}
	s.pipeCap = c
	return nil
}

// attach sets up what needs the connected socket: SO_ZEROCOPY, the ring.
// A path this kernel cannot run returns a *kernel.NotSupportedError.
func (s *sender) attach(fd sock.FD) error {
	s.fd = fd
	switch s.path {
	case msgZerocopy:
		if err := sock.SetZerocopy(fd, true); err != nil {
			return kernel.NotSupported(kernel.Feature{Name: "SO_ZEROCOPY on TCP", Since: kernel.V(4, 14)}, err)
		}
	case uringSend, uringSendZC, uringSendZCFixed:
		return s.openRing()
	}
	return nil
}

func (s *sender) openRing() error {
	r, err := uring.New(8)
	if errors.Is(err, uring.ErrUnavailable) {
		return kernel.NotSupported(kernel.Feature{Name: "io_uring (kernel.io_uring_disabled, seccomp)"}, err)
	}
	if err != nil {
		return err
	}
	s.ring = r
	probe, err := r.Probe()
	if errors.Is(err, kernel.ErrNotSupported) {
		return err
	}
	if err != nil {
		return err
	}
	op := uring.OpSend
	if s.path != uringSend {
		op = uring.OpSendZC
	}
	if err := probe.Require(op); err != nil {
		return err
	}
	if s.path == uringSend {
		return nil
	}
	s.zcFlags = uring.SendZCReportUsage
	if s.path == uringSendZCFixed {
		if err := r.RegisterBuffers([][]byte{s.buf}); err != nil {
			return kernel.NotSupported(kernel.Feature{Name: "io_uring registered buffers", Since: kernel.V(5, 1)}, err)
		}
		s.zcFlags |= uring.RecvSendFixedBuf
	}
	return nil
}

// syscalls is every system call the sender made.
func (s *sender) syscalls() int64 {
	if s.ring != nil {
		return s.calls + int64(s.ring.Enters())
	}
	return s.calls
}

// send moves one message of size bytes into the socket.
func (s *sender) send() error {
	switch s.path {
	case readWrite:
		return s.readWrite()
	case mmapWrite:
		err := s.writeAll(s.mapping[s.off : s.off+int64(s.size)])
		s.advance(s.size)
		return err
	case sendfile:
		return s.sendfile()
	case splice:
		return s.splice()
	case write:
		return s.writeAll(s.buf)
	case msgZerocopy:
		return s.msgZerocopy()
	case uringSend, uringSendZC, uringSendZCFixed:
		return s.uringSend()
	}
	return fmt.Errorf("no send path %q", s.path)
}

// advance moves the file offset on, wrapping at the end of the file.
func (s *sender) advance(n int) {
	if s.off += int64(n); s.off >= s.fileLen {
		s.off = 0
	}
}

func (s *sender) readWrite() error {
	for got := 0; got < s.size; {
		p := s.buf[got:]
		s.calls++
		n, _, e := unix.Syscall6(unix.SYS_PREAD64, uintptr(s.fileFD), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(s.off), 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return fmt.Errorf("pread %s at %d: %w", s.file.Name(), s.off, e)
		case n == 0:
			return fmt.Errorf("pread %s at %d: end of file", s.file.Name(), s.off)
		}
		got += int(n)
		s.advance(int(n))
	}
	return s.writeAll(s.buf)
}

// writeAll writes p with write(2), looping over short writes (a signal
// can interrupt a blocking write after part of it was queued).
func (s *sender) writeAll(p []byte) error {
	for len(p) > 0 {
		s.calls++
		n, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(s.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			p = p[n:]
		case unix.EINTR:
		default:
			return fmt.Errorf("write %d bytes to fd %d: %w", len(p), s.fd, e)
		}
	}
	return nil
}

func (s *sender) sendfile() error {
	for left := s.size; left > 0; {
		off := s.off
		s.calls++
		n, _, e := unix.Syscall6(unix.SYS_SENDFILE, uintptr(s.fd), uintptr(s.fileFD), uintptr(unsafe.Pointer(&off)), uintptr(left), 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return fmt.Errorf("sendfile %s at %d to fd %d: %w", s.file.Name(), s.off, s.fd, e)
		case n == 0:
			return fmt.Errorf("sendfile %s at %d: end of file", s.file.Name(), s.off)
		}
		left -= int(n)
		s.advance(int(n))
	}
	return nil
}

// splice moves a message from the file into the pipe and from the pipe
// into the socket, a pipeful at a time. The pipe holds references to the
// page-cache pages, not copies.
func (s *sender) splice() error {
	for left := s.size; left > 0; {
		off := s.off
		s.calls++
		n, _, e := unix.Syscall6(unix.SYS_SPLICE, uintptr(s.fileFD), uintptr(unsafe.Pointer(&off)), uintptr(s.pipe[1]), 0, uintptr(min(left, s.pipeCap)), unix.SPLICE_F_MOVE)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return fmt.Errorf("splice %s at %d to pipe: %w", s.file.Name(), s.off, e)
		case n == 0:
			return fmt.Errorf("splice %s at %d: end of file", s.file.Name(), s.off)
		}
		left -= int(n)
		s.advance(int(n))
		for inPipe := int(n); inPipe > 0; {
			s.calls++
			m, _, e := unix.Syscall6(unix.SYS_SPLICE, uintptr(s.pipe[0]), 0, uintptr(s.fd), 0, uintptr(inPipe), unix.SPLICE_F_MOVE)
			switch e {
			case 0:
				inPipe -= int(m)
			case unix.EINTR:
			default:
				return fmt.Errorf("splice pipe to fd %d: %w", s.fd, e)
			}
		}
	}
	return nil
}

// msgZerocopy sends the buffer with MSG_ZEROCOPY. The kernel numbers every
// send that queues data (a send that fails having queued nothing gives its
// number back), and completes each number once the pages are released.
func (s *sender) msgZerocopy() error {
	for p := s.buf; len(p) > 0; {
		s.calls++
		n, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_ZEROCOPY, 0, 0)
		switch {
		case e == 0 && n == 0:
			return fmt.Errorf("send with MSG_ZEROCOPY to fd %d sent nothing", s.fd)
		case e == 0:
			s.zcSends++
			p = p[n:]
		case e == unix.EINTR:
		case e == unix.ENOBUFS:
			// Too many sends wait for completion: the socket's option memory
			// (net.core.optmem_max) or the locked-memory limit is used up.
			if err := s.awaitCompletions(100 * time.Millisecond); err != nil {
				return err
			}
		default:
			return fmt.Errorf("send %d bytes with MSG_ZEROCOPY to fd %d: %w", len(p), s.fd, e)
		}
	}
	if s.drained++; s.drained >= drainEvery {
		s.drained = 0
		return s.drain()
	}
	return nil
}

// drain reads every completion queued on the error queue.
func (s *sender) drain() error {
	var err error
	s.compl, err = sock.ReadZerocopyCompletions(s.fd, s.compl[:0])
	s.calls += int64(len(s.compl)) + 1 // one recvmsg per message, and the EAGAIN that ends the read
	s.tally.add(s.compl)
	return err
}

// awaitCompletions waits up to timeout for the error queue to fill (poll
// reports it as POLLERR without being asked) and drains it.
func (s *sender) awaitCompletions(timeout time.Duration) error {
	p := sock.Poll{}
	p.Add(s.fd, 0)
	s.calls++
	if _, err := p.Wait(timeout); err != nil {
		return err
	}
	return s.drain()
}

// uringSend sends the buffer with one SEND or SEND_ZC request at a time,
// MSG_WAITALL making io_uring retry short sends itself, and waits for the
// request's result (a notification that arrives meanwhile is counted).
func (s *sender) uringSend() error {
	for p := s.buf; len(p) > 0; {
		var err error
		if s.path == uringSend {
			err = s.ring.PrepSend(int(s.fd), p, unix.MSG_WAITALL, 0)
		} else {
			err = s.ring.PrepSendZC(int(s.fd), p, unix.MSG_WAITALL, s.zcFlags, 0)
		}
		if err != nil {
			return err
		}
		if _, err := s.ring.SubmitAndWait(1); err != nil {
			return err
		}
		for {
			c, err := s.ring.WaitCQE()
			if err != nil {
				return err
			}
			if c.Notif() {
				s.tally.addNotification(c.ZCCopied())
				s.ring.SeenCQE()
				continue
			}
			res, more := c.Res, c.More()
			s.ring.SeenCQE()
			if more {
				s.zcSends++
			}
			if res < 0 {
				return s.uringError(unix.Errno(-res))
			}
			if res == 0 {
				return fmt.Errorf("io_uring %s on fd %d sent nothing", label(s.path), s.fd)
			}
			p = p[res:]
			break
		}
	}
	return nil
}

func (s *sender) uringError(e unix.Errno) error {
	// A kernel with SEND_ZC but without usage reports (6.0, 6.1) refuses
	// the flag; without the report a copied send cannot be told from a
	// zero-copy one, so the path cannot be judged here.
	if e == unix.EINVAL && s.path != uringSend && s.zcSends == 0 && s.tally.Completed == 0 {
		return kernel.NotSupported(kernel.Feature{Name: "IORING_SEND_ZC_REPORT_USAGE", Since: kernel.V(6, 2)}, e)
	}
	return fmt.Errorf("io_uring %s on fd %d: %w", label(s.path), s.fd, e)
}

// finish waits until the kernel has completed every zero-copy send, so
// that the count of copied sends covers the whole stream and no page is
// still in use when the buffer goes away. The socket must still be open:
// the kernel drops the completions of a closed socket.
func (s *sender) finish(ctx context.Context) error {
	deadline := time.Now().Add(completionWait)
	for s.tally.Completed < s.zcSends {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d sends still uncompleted after %v", label(s.path), s.zcSends-s.tally.Completed, s.zcSends, completionWait)
		}
		if s.ring == nil {
			if err := s.awaitCompletions(100 * time.Millisecond); err != nil {
				return err
			}
			continue
		}
		c, err := s.ring.WaitCQE()
		if err != nil {
			return err
		}
		if c.Notif() {
			s.tally.addNotification(c.ZCCopied())
		}
		s.ring.SeenCQE()
	}
	return nil
}

// close releases everything newSender and attach made.
func (s *sender) close() error {
	var errs []error
	if s.ring != nil {
		errs = append(errs, s.ring.Close())
	}
	for _, m := range [][]byte{s.mapping, s.buf} {
		if m != nil {
			errs = append(errs, unix.Munmap(m))
		}
	}
	for _, fd := range s.pipe {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	if s.file != nil {
		errs = append(errs, s.file.Close())
	}
	return errors.Join(errs...)
}

// safeName keeps a run id usable in a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '/' || c == 0 || c == '*' {
			b[i] = '_'
		}
	}
	return string(b)
}
