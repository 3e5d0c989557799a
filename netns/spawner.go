package netns

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spawner starts processes inside nodes, as Start does, for many at once
// (an agent per node): each process still gets a mount namespace of its
// own, but copied from one the Spawner prepared once instead of from the
// host's. The host's mount table holds a mount for every namespace in
// RunDir, so a copy of it costs O(namespaces), and an agent per node made
// bringing a lab up O(nodes²) (2,000 agents: ~50 ms of CPU each, against
// ~14 ms at 1,000); the prepared one is the host's without RunDir, the
// same size however many labs are up. Processes started from it see no
// named namespaces, which agents never use.
type Spawner struct {
	reqs chan spawnReq
	wg   sync.WaitGroup
}

type spawnReq struct {
	ns   string
	fd   int // of ns, opened in the caller's mount namespace (RunDir is not in the worker's)
	cmd  *exec.Cmd
	errc chan error
}

// NewSpawner prepares the mount namespace and workers threads to fork
// from (1 or more).
func NewSpawner(workers int) (*Spawner, error) {
	s := &Spawner{reqs: make(chan spawnReq)}
	template := make(chan int, 1)
	ready := make(chan error, 1)
	s.wg.Add(1)
	go s.worker(-1, template, ready) // the first makes the mount namespace
	if err := <-ready; err != nil {
		s.wg.Wait()
		return nil, err
	}
	fd := <-template
	defer unix.Close(fd)
	for i := 1; i < max(workers, 1); i++ {
		s.wg.Add(1)
		go s.worker(fd, nil, ready)
		if err := <-ready; err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// worker serves requests from a thread of its own in the prepared mount
// namespace: made here if template is nil (its descriptor sent on
// template), else joined from mnt. The thread never goes back to the
// runtime: its goroutine ends locked, and Go ends the thread with it.
func (s *Spawner) worker(mnt int, template chan<- int, ready chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The main thread: what /proc/self shows of the process is its,
		// and a locked goroutine that ends on it does not end it. Never
		// move it to another mount namespace; work from another thread.
		go s.worker(mnt, template, ready)
		runtime.UnlockOSThread()
		return
	}
	defer s.wg.Done()
	// A thread shares its root and working directory with the process
	// (CLONE_FS) until it unshares them, and may not change its mount
	// namespace while it shares them.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		ready <- fmt.Errorf("spawner: unshare CLONE_FS: %w", err)
		return
	}
	if template != nil {
		if err := prepareMounts(); err != nil {
			ready <- err
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ready <- fmt.Errorf("spawner: %w", err)
			return
		}
		template <- fd
	} else if err := unix.Setns(mnt, unix.CLONE_NEWNS); err != nil {
		ready <- fmt.Errorf("spawner: join the prepared mount namespace: %w", err)
		return
	}
	ready <- nil
	for r := range s.reqs {
		r.errc <- spawnOne(r.ns, r.fd, r.cmd)
	}
}

// prepareMounts turns the calling thread's new mount namespace into the
// template: private, so that nothing done in it reaches the host's, and
// without RunDir and the namespaces mounted in it.
func prepareMounts() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("spawner: unshare a mount namespace: %w", err)
	}
	// Private before anything is unmounted: RunDir is a shared mount, and
	// an unmount here would otherwise propagate to the host's.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("spawner: make / private: %w", err)
	}
	if err := unix.Unmount(RunDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("spawner: unmount %s: %w", RunDir, err)
	}
	return nil
}

// spawnOne starts cmd in namespace ns (open as fd) from the calling
// (worker) thread.
func spawnOne(ns string, fd int, cmd *exec.Cmd) error {
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("namespace %s: setns: %w", ns, err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
	return cmd.Start()
}

// Start starts cmd so that the child lives in namespace ns, in a mount
// namespace of its own copied from the prepared one (see Start and
// MountSysfs for what the child may then do).
func (s *Spawner) Start(ns string, cmd *exec.Cmd) error {
	fd, err := openNS(ns)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	s.reqs <- spawnReq{ns: ns, fd: fd, cmd: cmd, errc: errc}
	return <-errc
}

// Close ends the workers, and their threads with them.
func (s *Spawner) Close() {
	close(s.reqs)
	s.wg.Wait()
}
