package conns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The memory cgroup of the role: unlike slabinfo it counts only what is
// charged to the cgroup the agents run in, so the other tenants of the
// host do not blur it, but it does not count everything. Objects allocated
// in softirq context, such as the server's new socket (made when the
// handshake's last ACK arrives), have no task to charge; accept charges
// the socket to the acceptor's cgroup (kmem_cache_charge, Linux 6.12+) only
// when socket memory accounting is on: always on cgroup v2, on v1 only
// once a TCP limit is set. On v1 without one, a server end's tcp_sock is in
// slabinfo but in no cgroup.
//
// An agent has a mount namespace of its own with a fresh sysfs on /sys, so
// the host's cgroup mounts are not visible there; openMemcg mounts the
// memory hierarchy read-only on a temporary directory for the role's
// lifetime, provided the mount cannot propagate (the agent's / is a slave
// mount). A process that sees the host's cgroup mounts (tests) reads them
// and mounts nothing.

// memcgSample is one reading of the cgroup's counters, in bytes.
type memcgSample struct {
	OK   bool
	Kmem int64 // all kernel memory charged (v1 memory.kmem.usage_in_bytes, v2 memory.stat kernel)
	// Sock is socket buffer memory (v1 memory.kmem.tcp.usage_in_bytes,
	// v2 memory.stat sock). cgroup v1 counts it only once a TCP limit
	// has been written (SockValid false otherwise).
	Sock      int64
	SockValid bool
}

// memcg reads the memory cgroup of this process.
type memcg struct {
	Path    string // the cgroup, as /proc/self/cgroup names it
	V2      bool
	dir     string
	unmount func() error
}

// unlimited is what cgroup v1 shows for a limit never set
// (PAGE_COUNTER_MAX pages, on 64-bit with 4 KiB pages).
const unlimited = "9223372036854771712"

// parseProcCgroup finds the memory cgroup in /proc/self/cgroup: the v1
// line whose controllers include memory, else the v2 line "0::path".
func parseProcCgroup(r io.Reader) (path string, v2 bool, err error) {
	sc := bufio.NewScanner(r)
	var unified string
	haveUnified := false
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			unified, haveUnified = f[2], true
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				return f[2], false, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	if haveUnified {
		return unified, true, nil
	}
	return "", false, errors.New("/proc/self/cgroup names no memory cgroup")
}

// openMemcg finds this process's memory cgroup, mounting the hierarchy in
// the agent's own mount namespace when it is not visible.
func openMemcg() (*memcg, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	path, v2, err := parseProcCgroup(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	m := &memcg{Path: path, V2: v2}
	roots := []string{"/sys/fs/cgroup/memory"}
	if v2 {
		roots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}
	}
	for _, r := range roots {
		if _, err := os.Stat(filepath.Join(r, path, m.usageFile())); err == nil {
			m.dir = filepath.Join(r, path)
			return m, nil
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	shared, err := rootShared(mi)
	mi.Close()
	if err != nil {
		return nil, err
	}
	if shared {
		return nil, fmt.Errorf("memory cgroup %s: not mounted under /sys/fs/cgroup, and a mount here would propagate (/ is a shared mount)", path)
	}
	mnt, err := os.MkdirTemp("", "labctl-memcg-")
	if err != nil {
		return nil, err
	}
	fstype, data := "cgroup", "memory"
	if v2 {
		fstype, data = "cgroup2", ""
	}
	if err := unix.Mount(fstype, mnt, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		os.Remove(mnt)
		return nil, fmt.Errorf("mount the %s memory hierarchy on %s: %w", fstype, mnt, err)
	}
	m.dir = filepath.Join(mnt, path)
	m.unmount = func() error {
		err := unix.Unmount(mnt, unix.MNT_DETACH)
		return errors.Join(err, os.Remove(mnt))
	}
	if _, err := os.Stat(filepath.Join(m.dir, m.usageFile())); err != nil {
		m.Close()
		return nil, fmt.Errorf("memory cgroup %s: %w", path, err)
	}
	return m, nil
}

// rootShared reports whether the root mount of /proc/self/mountinfo
// propagates mounts to peers ("shared:N" among its optional fields): a
// mount made under it would then appear in other mount namespaces too. An
// agent's root is a slave mount (netns.MountSysfs makes it one).
func rootShared(r io.Reader) (bool, error) {
	sc := bufio.NewScanner(r)
	found, shared := false, false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 || f[4] != "/" {
			continue
		}
		// The last mount on / is the one in effect.
		found, shared = true, false
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			shared = shared || strings.HasPrefix(opt, "shared:")
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	if !found {
		return false, errors.New("mountinfo lists no root mount")
	}
	return shared, nil
}

func (m *memcg) usageFile() string {
	if m.V2 {
		return "memory.stat"
	}
	return "memory.kmem.usage_in_bytes"
}

// Close unmounts what openMemcg mounted.
func (m *memcg) Close() error {
	if m == nil || m.unmount == nil {
		return nil
	}
	return m.unmount()
}

// sample reads the counters; a nil memcg or a failed read gives a sample
// that is not OK.
func (m *memcg) sample() memcgSample {
	if m == nil {
		return memcgSample{}
	}
	if m.V2 {
		b, err := os.ReadFile(filepath.Join(m.dir, "memory.stat"))
		if err != nil {
			return memcgSample{}
		}
		return parseMemoryStat(string(b))
	}
	kmem, err := readInt(filepath.Join(m.dir, "memory.kmem.usage_in_bytes"))
	if err != nil {
		return memcgSample{}
	}
	s := memcgSample{OK: true, Kmem: kmem}
	limit, _ := os.ReadFile(filepath.Join(m.dir, "memory.kmem.tcp.limit_in_bytes"))
	if tcp, err := readInt(filepath.Join(m.dir, "memory.kmem.tcp.usage_in_bytes")); err == nil && strings.TrimSpace(string(limit)) != unlimited {
		s.Sock, s.SockValid = tcp, true
	}
	return s
}

// parseMemoryStat reads the kernel and sock lines of a v2 memory.stat.
func parseMemoryStat(text string) memcgSample {
	var s memcgSample
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "kernel":
			s.Kmem, s.OK = n, true
		case "sock":
			s.Sock, s.SockValid = n, true
		}
	}
	return s
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
