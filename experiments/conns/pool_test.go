package conns

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/sock"
)

// A pool holds more sockets than RLIMIT_NOFILE lets one descriptor table
// hold, none of them in the process's own table.
func TestPoolOutgrowsOneTable(t *testing.T) {
	privtest.Root(t) // entering the namespace (setns) needs CAP_SYS_ADMIN
	restore, err := lowerNofile(256)
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	before, err := tableFDs()
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPool(500, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if len(p.shards) < 3 {
		t.Fatalf("%d shards of %d for 500 sockets under a limit of 256", len(p.shards), p.per)
	}
	opened := 0
	err = p.fill(func() (sock.FD, error) {
		if opened == 500 {
			return -1, errEnough
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		opened++
		return sock.FD(fd), err
	})
	if err != nil || p.count() != 500 {
		t.Fatalf("filled %d of 500: %v", p.count(), err)
	}
	if after, _ := tableFDs(); after != before {
		t.Errorf("the process's table went from %d to %d descriptors", before, after)
	}
	p.close()
	if p.count() != 0 {
		t.Errorf("%d descriptors left after close", p.count())
	}
}
