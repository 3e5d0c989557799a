package netns

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsEntry is one namespace opened once: a descriptor for setns and
// IFLA_NET_NS_FD, and a netlink handle whose socket lives in the namespace
// (a socket stays in the namespace it was made in, whichever thread uses it).
type nsEntry struct {
	name string
	fd   int
	h    *netlink.Handle
}

func (e *nsEntry) close() {
	if e.h != nil {
		e.h.Close()
	}
	if e.fd >= 0 {
		unix.Close(e.fd)
	}
}

// openEntry opens namespace name.
func openEntry(name string) (*nsEntry, error) {
	fd, err := openNS(name)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("namespace %s: netlink: %w", name, err)
	}
	return &nsEntry{name: name, fd: fd, h: h}, nil
}

// nsCache keeps every namespace an operation touches open for its whole
// length, so each is opened once however many objects live in it. It is
// safe for concurrent use; opening one namespace does not wait for another.
type nsCache struct {
	mu sync.Mutex
	m  map[string]*nsSlot
}

type nsSlot struct {
	once sync.Once
	e    *nsEntry
	err  error
}

func newNSCache() *nsCache { return &nsCache{m: map[string]*nsSlot{}} }

// get returns namespace name, opening it on first use. A namespace that
// does not exist gives an error matching os.ErrNotExist, and is looked for
// again on the next call.
func (c *nsCache) get(name string) (*nsEntry, error) {
	c.mu.Lock()
	s := c.m[name]
	if s == nil {
		s = &nsSlot{}
		c.m[name] = s
	}
	c.mu.Unlock()
	s.once.Do(func() { s.e, s.err = openEntry(name) })
	if s.err != nil {
		c.mu.Lock()
		if c.m[name] == s {
			delete(c.m, name)
		}
		c.mu.Unlock()
	}
	return s.e, s.err
}

// put adds a namespace that was just created.
func (c *nsCache) put(e *nsEntry) {
	s := &nsSlot{e: e}
	s.once.Do(func() {})
	c.mu.Lock()
	old := c.m[e.name]
	c.m[e.name] = s
	c.mu.Unlock()
	if old != nil && old.e != nil {
		old.e.close()
	}
}

// drop closes namespace name so that the cache does not keep it alive
// once it is deleted.
func (c *nsCache) drop(name string) {
	c.mu.Lock()
	s := c.m[name]
	delete(c.m, name)
	c.mu.Unlock()
	if s != nil && s.e != nil {
		s.e.close()
	}
}

// close closes every namespace.
func (c *nsCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, s := range c.m {
		if s.e != nil {
			s.e.close()
		}
		delete(c.m, name)
	}
}

// isNotExist reports whether err says that a namespace or a link is not
// there.
func isNotExist(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, os.ErrNotExist)
}
