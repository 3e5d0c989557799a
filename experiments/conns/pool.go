package conns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sock"
)

// RLIMIT_NOFILE caps descriptor numbers per descriptor table, not per
// process: a thread that unshares its table (unshare(CLONE_FILES)) gets a
// copy of the process's and may open up to the limit in it. Raising the
// hard limit needs CAP_SYS_RESOURCE, which a container's root often lacks
// (this lab's machine: hard limit 20,000), and would change the whole
// agent; so a role that holds more connections than one table takes
// spreads them over threads with tables of their own. The agent's other
// threads never see those descriptors, and nothing process-wide changes.

// shard is a locked OS thread with a descriptor table of its own, in the
// network namespace of the thread that made it.
type shard struct {
	calls chan func()
	done  chan struct{}
}

// newShard starts a shard in the network namespace of netnsFD; of the
// process's sockets its table keeps only those in keep.
func newShard(netnsFD int, keep []sock.FD) (*shard, error) {
	s := &shard{calls: make(chan func()), done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The goroutine ends without UnlockOSThread, so the Go runtime
		// ends the thread with it, and the private table with the
		// thread: the thread is never reused with another table.
		runtime.LockOSThread()
		defer close(s.done)
		// A new thread may come from anywhere in the process; follow the
		// role's namespace (a no-op in an agent, whose threads all live
		// in the node's).
		if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
			started <- fmt.Errorf("enter the role's network namespace: %w", err)
			return
		}
		if err := unix.Unshare(unix.CLONE_FILES); err != nil {
			started <- fmt.Errorf("private descriptor table (unshare CLONE_FILES): %w", err)
			return
		}
		// The copy references every socket and pipe of the process;
		// holding them would keep them open after their owners close
		// them (a pipe to a command that another goroutine runs at this
		// moment would never see its end: its Wait would hang).
		if err := closeSockets(keep); err != nil {
			started <- err
			return
		}
		started <- nil
		for fn := range s.calls {
			fn()
		}
	}()
	if err := <-started; err != nil {
		<-s.done
		return nil, err
	}
	return s, nil
}

// closeSockets closes the sockets and pipes of the calling thread's
// descriptor table but those in keep. Only those: the table also holds the
// Go runtime's own descriptors (the netpoller's epoll instance and
// eventfd), which the runtime uses from whatever thread it runs on, this
// one too.
func closeSockets(keep []sock.FD) error {
	entries, err := os.ReadDir("/proc/thread-self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 || slices.Contains(keep, sock.FD(fd)) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || (st.Mode&unix.S_IFMT != unix.S_IFSOCK && st.Mode&unix.S_IFMT != unix.S_IFIFO) {
			continue // not a socket or pipe, or the directory's own descriptor, gone by now
		}
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("close inherited socket %d: %w", fd, err)
		}
	}
	return nil
}

// do runs fn on the shard's thread and returns its error.
func (s *shard) do(fn func() error) error {
	errc := make(chan error, 1)
	s.calls <- func() { errc <- fn() }
	return <-errc
}

// stop closes the sockets of the shard's table and ends its thread.
// Closing them here, before stop returns, rather than leaving them to the
// thread's exit (some moment after), lets the role's own close of what it
// kept be the last one.
func (s *shard) stop() {
	_ = s.do(func() error { return closeSockets(nil) })
	close(s.calls)
	<-s.done
}

// pool holds connections in shards, per descriptors in each. A shard's
// descriptors are valid only on its thread: every use goes through each.
type pool struct {
	shards []*shard
	per    int
	fds    [][]sock.FD // fds[i] belongs to shards[i]
}

// tableRoom is how many connections a shard's table takes: descriptor
// numbers are handed out lowest first and must stay below the soft
// RLIMIT_NOFILE, and the table holds what the process held besides
// sockets, the kept sockets and a few the role opens on the shard's thread.
func tableRoom(kept int) (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	room := int(min(lim.Cur, 1<<30)) - 64 - kept
	if room < 1 {
		return 0, fmt.Errorf("no room for descriptors: RLIMIT_NOFILE is %d", lim.Cur)
	}
	return room, nil
}

// newPool makes enough shards for n connections, per in each (per <= 0:
// as many as a table takes), in the calling thread's network namespace.
// Of the process's sockets, the shards' tables keep only those in keep
// (the listeners the shards accept from).
func newPool(n, per int, keep ...sock.FD) (*pool, error) {
	if per <= 0 {
		room, err := tableRoom(len(keep))
		if err != nil {
			return nil, err
		}
		per = room
	}
	ns, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network namespace of the role: %w", err)
	}
	defer unix.Close(ns)
	p := &pool{per: per}
	for range max(1, (n+per-1)/per) {
		s, err := newShard(ns, keep)
		if err != nil {
			p.close()
			return nil, err
		}
		p.shards = append(p.shards, s)
		p.fds = append(p.fds, nil)
	}
	return p, nil
}

// each runs fn on every shard's thread in turn, with its descriptors,
// until one fails.
func (p *pool) each(fn func(fds *[]sock.FD) error) error {
	for i, s := range p.shards {
		if err := s.do(func() error { return fn(&p.fds[i]) }); err != nil {
			return err
		}
	}
	return nil
}

// Sentinels of fill.
var (
	errEnough = errors.New("enough descriptors")          // open has no more to give
	errFull   = errors.New("every shard's table is full") // fill ran out of room
)

// fill adds descriptors from open to the shards, filling each in turn on
// its thread, until open returns errEnough (fill returns nil), another
// error (fill returns it), or every shard holds per (fill returns
// errFull). open runs on the shard's thread: what it opens belongs there.
func (p *pool) fill(open func() (sock.FD, error)) error {
	for i, s := range p.shards {
		err := s.do(func() error {
			for len(p.fds[i]) < p.per {
				fd, err := open()
				if err != nil {
					return err
				}
				p.fds[i] = append(p.fds[i], fd)
			}
			return nil
		})
		if errors.Is(err, errEnough) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return errFull
}

// tableFDs counts the descriptors of the first shard's table.
func (p *pool) tableFDs() (n int, err error) {
	err = p.shards[0].do(func() error {
		n, err = tableFDs()
		return err
	})
	return n, err
}

// count is the number of descriptors the pool holds.
func (p *pool) count() int {
	n := 0
	for _, f := range p.fds {
		n += len(f)
	}
	return n
}

// abort resets every connection the pool holds (no TIME_WAIT is left).
func (p *pool) abort() {
	_ = p.each(func(fds *[]sock.FD) error {
		abortAll(*fds)
		*fds = nil
		return nil
	})
}

// close resets what is left and ends the shards' threads.
func (p *pool) close() {
	if p == nil {
		return
	}
	p.abort()
	for _, s := range p.shards {
		s.stop()
	}
	p.shards = nil
}
