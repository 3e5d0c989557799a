package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Command returns a command that runs name inside namespace ns exactly as
// `ip netns exec ns name args...` runs it: in the namespace's network stack,
// and with a private /sys that shows the namespace's own interfaces, so a
// command such as `echo f > /sys/class/net/eth0/queues/rx-0/rps_cpus`
// reaches the node's eth0. (Go cannot start a child in another network
// namespace without a locked thread, which a plain exec.Cmd does not have;
// Start is that path.)
func Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Start starts cmd so that the child, and so every thread it will have,
// lives in namespace ns, in a new mount namespace of its own where it can
// mount its own sysfs (see MountSysfs). The child is forked from a thread
// switched into ns (a child inherits the namespaces of the thread that
// forks it), through a Spawner made for it; to start many, make one
// Spawner and start them all from it.
//
// Go remounts / recursively private in the child after unsharing the mount
// namespace, so nothing the child mounts reaches the host.
func Start(ns string, cmd *exec.Cmd) error {
	s, err := NewSpawner(1)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Start(ns, cmd)
}

// MountSysfs is called by a process started with Start, before it looks at
// /sys: it mounts a fresh sysfs on /sys, which then shows the interfaces of
// the process's network namespace (sysfs takes the namespace of the task
// that mounts it), as `ip netns exec` does. Like ip, it detaches the old
// /sys with everything mounted under it (cgroup, bpf, tracefs); mount those
// again if needed. It refuses to run in the mount namespace of PID 1 or of
// its parent, where it would replace the host's /sys.
func MountSysfs() error {
	// The calling thread's mount namespace, which mount acts on; the
	// process's (/proc/self) is its main thread's.
	self, err := os.Readlink("/proc/thread-self/ns/mnt")
	if err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	for _, pid := range []int{1, os.Getppid()} {
		other, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		if err == nil && other == self {
			return fmt.Errorf("mount sysfs: the process shares its mount namespace with PID %d; start it with netns.Start", pid)
		}
	}
	// Go's Start left / private already; a process that got its mount
	// namespace some other way might still share mounts with the host, so
	// make sure nothing mounted here propagates back.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount sysfs: make / a slave mount: %w", err)
	}
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err != nil && err != unix.EINVAL {
		return fmt.Errorf("mount sysfs: unmount /sys: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount sysfs on /sys: %w", err)
	}
	return nil
}

// run runs name inside ns and returns an error that carries the command
// line and its output when it fails.
func run(ctx context.Context, ns, stdin, name string, args ...string) error {
	cmd := Command(ctx, ns, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		line := strings.Join(append([]string{name}, args...), " ")
		var ee *exec.ExitError
		if out = bytes.TrimSpace(out); len(out) > 0 && errors.As(err, &ee) {
			return fmt.Errorf("%s: %w: %s", line, err, out)
		}
		return fmt.Errorf("%s: %w", line, err)
	}
	return nil
}
