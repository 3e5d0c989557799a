package kstat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/labctl/labctl/internal/privtest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Keep the main goroutine on the main thread, so that no test goroutine ever
// locks it: a namespace switch on the thread group leader would also change
// what /proc/self shows, hiding the difference /proc/thread-self makes, and
// the leader is never terminated, so its namespaces would outlive the test.
func init() { runtime.LockOSThread() }

// onFreshThread runs fn on a new OS thread moved into new namespaces
// (unshare flags). The goroutine never unlocks its thread, so when it ends Go
// terminates the thread, and namespaces nothing else holds die with it: the
// test leaves nothing behind, on success or failure. With CLONE_NEWNS the
// new mount namespace is made private first, so that mounts made inside
// (tracefs) never propagate to the host.
func onFreshThread(t testing.TB, flags int, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(flags); err != nil {
			errc <- fmt.Errorf("unshare(%#x): %w", flags, err)
			return
		}
		if flags&unix.CLONE_NEWNS != 0 {
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				errc <- fmt.Errorf("make / private in the new mount namespace: %w", err)
				return
			}
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// loopbackUp brings lo up in the calling thread's (new) network namespace.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

var loopback = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}

// udpOverLoopback sends one datagram to 127.0.0.1 and receives it, with raw
// sockets of the calling thread's namespace.
func udpOverLoopback() error {
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	defer unix.Close(rx)
	// A safety net against a hang, not a timing assertion.
	if err := unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(rx, loopback); err != nil {
		return fmt.Errorf("bind udp to 127.0.0.1: %w", err)
	}
	to, err := unix.Getsockname(rx)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	defer unix.Close(tx)
	if err := unix.Sendto(tx, []byte("labctl"), 0, to); err != nil {
		return fmt.Errorf("sendto 127.0.0.1: %w", err)
	}
	if _, _, err := unix.Recvfrom(rx, make([]byte, 64), 0); err != nil {
		return fmt.Errorf("recvfrom: %w", err)
	}
	return nil
}

// tcpOverLoopback opens and closes one TCP connection on 127.0.0.1.
func tcpOverLoopback() error {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tcp socket: %w", err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, loopback); err != nil {
		return fmt.Errorf("bind tcp to 127.0.0.1: %w", err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr, err := unix.Getsockname(ln)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tcp socket: %w", err)
	}
	defer unix.Close(c)
	if err := unix.Connect(c, addr); err != nil { // the handshake completes before accept
		return fmt.Errorf("connect: %w", err)
	}
	s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer unix.Close(s)
	return nil
}

func TestReadHostWideLive(t *testing.T) {
	online, err := ReadOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	possible, err := ReadPossibleCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if len(online) == 0 || len(possible) < len(online) {
		t.Fatalf("online CPUs %v, possible %v", online, possible)
	}

	sn, err := ReadSoftnet()
	if err != nil {
		t.Fatal(err)
	}
	if cpus := softnetCPUs(sn); !reflect.DeepEqual(cpus, online) {
		t.Errorf("softnet_stat rows for CPUs %v, online CPUs %v", cpus, online)
	}
	if want := 15; kernelAtLeast(t, 6, 4) && sn.Columns != want {
		t.Errorf("softnet_stat has %d columns, want %d on Linux 6.4+", sn.Columns, want)
	}

	si, err := ReadSoftirqs()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(si.CPUs, possible) {
		t.Errorf("softirqs columns for CPUs %v, possible CPUs %v", si.CPUs, possible)
	}
	for _, name := range []string{"NET_RX", "NET_TX", "TIMER"} {
		if _, ok := si.Counts[name]; !ok {
			t.Errorf("softirqs has no %s row", name)
		}
	}

	in, err := ReadInterrupts()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.CPUs, online) || len(in.IRQs) == 0 {
		t.Errorf("interrupts: CPUs %v (online %v), %d IRQs", in.CPUs, online, len(in.IRQs))
	}

	st, err := ReadCPUStat()
	if err != nil {
		t.Fatal(err)
	}
	var statCPUs []int
	for _, c := range st.CPUs {
		statCPUs = append(statCPUs, c.CPU)
		if c.Idle > st.All.Idle {
			t.Errorf("CPU %d idle %v exceeds all CPUs' %v", c.CPU, c.Idle, st.All.Idle)
		}
	}
	if !reflect.DeepEqual(statCPUs, online) || st.All.Busy() <= 0 {
		t.Errorf("/proc/stat: CPUs %v (online %v), busy %v", statCPUs, online, st.All.Busy())
	}

	ks, err := FindKsoftirqd()
	if err != nil {
		t.Fatal(err)
	}
	byCPU := map[int]int{}
	for _, k := range ks {
		byCPU[k.CPU] = k.PID
	}
	for _, cpu := range online {
		pid, ok := byCPU[cpu]
		if !ok {
			t.Errorf("no ksoftirqd for online CPU %d in %+v", cpu, ks)
			continue
		}
		ts, err := ReadTaskStat(pid, pid)
		if err != nil {
			t.Fatal(err)
		}
		if ts.Comm != fmt.Sprintf("ksoftirqd/%d", cpu) || ts.PPID != kthreadd || ts.TID != pid {
			t.Errorf("ksoftirqd of CPU %d: %+v", cpu, ts)
		}
	}
}

func softnetCPUs(s Softnet) []int {
	var cpus []int
	for _, c := range s.CPUs {
		cpus = append(cpus, c.CPU)
	}
	return cpus
}

// kernelAtLeast reports whether the running kernel is at least major.minor.
func kernelAtLeast(t testing.TB, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", u.Release[:], err)
	}
	return ma > major || ma == major && mi >= minor
}

func TestReadTaskStatOfThisThread(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ts, err := ReadTaskStat(os.Getpid(), unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	// The thread is running while it reads its own stat.
	if ts.TID != unix.Gettid() || ts.State != "R" || ts.PPID != os.Getppid() {
		t.Errorf("own thread: %+v (tid %d, ppid %d)", ts, unix.Gettid(), os.Getppid())
	}
}

func TestReadSlabInfoLive(t *testing.T) {
	privtest.Root(t)
	s, err := ReadSlabInfo()
	if err != nil {
		t.Fatal(err)
	}
	if len(s) < 10 {
		t.Fatalf("only %d slab caches", len(s))
	}
	for name, c := range s {
		if c.ActiveObjs > c.NumObjs || c.ObjSize <= 0 || c.ActiveSlabs > c.NumSlabs {
			t.Errorf("cache %s: %+v", name, c)
		}
	}
}

// TestNamespacedReadersFollowTheThread reads NetStat, SockStat and LinkStats
// on a thread moved into a new network namespace: they must show that
// namespace (fresh counters, only lo) and count a datagram sent there.
func TestNamespacedReadersFollowTheThread(t *testing.T) {
	privtest.Root(t)
	onFreshThread(t, unix.CLONE_NEWNET, func() error {
		if err := loopbackUp(); err != nil {
			return err
		}
		ns0, err := ReadNetStat()
		if err != nil {
			return err
		}
		links0, err := ReadLinkStats(nil)
		if err != nil {
			return err
		}
		if ns0["Udp.OutDatagrams"] != 0 || len(links0) != 1 || links0["lo"] != (LinkCounters{}) {
			return fmt.Errorf("a new namespace should start empty: Udp.OutDatagrams %d, links %+v (the host's?)", ns0["Udp.OutDatagrams"], links0)
		}

		if err := udpOverLoopback(); err != nil {
			return err
		}
		ns1, err := ReadNetStat()
		if err != nil {
			return err
		}
		links1, err := ReadLinkStats(nil)
		if err != nil {
			return err
		}
		d := ns1.Sub(ns0)
		if d["Udp.OutDatagrams"] < 1 || d["Udp.InDatagrams"] < 1 || d["Ip.OutRequests"] < 1 {
			return fmt.Errorf("after one datagram on lo: Udp.OutDatagrams +%d, Udp.InDatagrams +%d, Ip.OutRequests +%d",
				d["Udp.OutDatagrams"], d["Udp.InDatagrams"], d["Ip.OutRequests"])
		}
		if lo := links1.Sub(links0)["lo"]; lo.TxPackets < 1 || lo.RxPackets < 1 || lo.TxBytes < uint64(len("labctl")) {
			return fmt.Errorf("after one datagram on lo: lo counters +%+v", lo)
		}

		// A socket open in this namespace shows in its sockstat.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("udp socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, loopback); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		ss, err := ReadSockStat()
		if err != nil {
			return err
		}
		if ss["UDP.inuse"] != 1 || ss["sockets.used"] < 1 {
			return fmt.Errorf("sockstat with one bound UDP socket: UDP.inuse %d, sockets.used %d", ss["UDP.inuse"], ss["sockets.used"])
		}
		if _, err := os.Stat("/proc/net/if_inet6"); err == nil {
			if _, ok := ss["TCP6.inuse"]; !ok {
				return errors.New("IPv6 is enabled but sockstat has no TCP6.inuse")
			}
		}
		return nil
	})
}

// TestReadLinkStatsThroughHandle reads a namespace from outside it, through
// a netlink handle, as labctl does per node.
func TestReadLinkStatsThroughHandle(t *testing.T) {
	privtest.Root(t)
	var ns netns.NsHandle
	onFreshThread(t, unix.CLONE_NEWNET, func() error {
		var err error
		if ns, err = netns.Get(); err != nil {
			return fmt.Errorf("open the new namespace: %w", err)
		}
		if err := loopbackUp(); err != nil {
			return err
		}
		return udpOverLoopback()
	})
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in the new namespace: %v", err)
	}
	t.Cleanup(h.Close)

	s, err := ReadLinkStats(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 1 || s["lo"].TxPackets < 1 {
		t.Errorf("new namespace through a handle: %+v, want only lo with the datagram", s)
	}
}

// openTracepointPrivately opens a counter from a thread in a private mount
// namespace, so the tracefs mount OpenTracepoint may make never reaches the
// host and vanishes with the thread; the counter's perf events outlive it.
func openTracepointPrivately(t testing.TB, group, event string, opts ...TracepointOption) *TracepointCounter {
	t.Helper()
	var c *TracepointCounter
	onFreshThread(t, unix.CLONE_NEWNS, func() error {
		var err error
		c, err = OpenTracepoint(group, event, opts...)
		return err
	})
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// TestTracepointCounter counts sock:inet_sock_set_state while a TCP
// connection opens and closes in a namespace the counter was not opened
// in: tracepoints count for the whole host.
func TestTracepointCounter(t *testing.T) {
	privtest.Root(t)
	c := openTracepointPrivately(t, "sock", "inet_sock_set_state")
	before, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	onFreshThread(t, unix.CLONE_NEWNET, func() error {
		if err := loopbackUp(); err != nil {
			return err
		}
		return tcpOverLoopback()
	})
	after, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	// The client alone moves CLOSE -> SYN_SENT -> ESTABLISHED -> FIN_WAIT1.
	if d.Total < 3 {
		t.Errorf("inet_sock_set_state +%d over one TCP connection, want >= 3", d.Total)
	}
	online, err := ReadOnlineCPUs()
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, n := range after.PerCPU {
		sum += n
	}
	if !reflect.DeepEqual(after.CPUs, online) || sum != after.Total || after.Name != "sock:inet_sock_set_state" {
		t.Errorf("count %+v: CPUs should be the online ones %v and PerCPU add up to Total", after, online)
	}
}

func TestOpenTracepointErrors(t *testing.T) {
	privtest.Root(t)
	pidMax, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	noSuchPID, err := strconv.Atoi(strings.TrimSpace(string(pidMax)))
	if err != nil {
		t.Fatalf("/proc/sys/kernel/pid_max: %v", err)
	}
	tests := []struct {
		group, event string
		opts         []TracepointOption
		wantErr      string
		wantNotExist bool
	}{
		{group: "..", event: "x", wantErr: `invalid tracepoint name part ".."`},
		{group: "sock", event: "a/b", wantErr: `invalid tracepoint name part "a/b"`},
		{group: "", event: "x", wantErr: `invalid tracepoint name part ""`},
		{group: "labctl_no_such_group", event: "nothing", wantErr: "events/labctl_no_such_group/nothing/id", wantNotExist: true},
		{group: "sock", event: "inet_sock_set_state", opts: []TracepointOption{WithFilter("labctl_no_such_field == 1")},
			wantErr: `tracepoint sock:inet_sock_set_state (filter "labctl_no_such_field == 1"): set filter: invalid argument`},
		{group: "sock", event: "inet_sock_set_state", opts: []TracepointOption{ForProcess(0)}, wantErr: "invalid pid 0"},
		// pid_max is one more than the largest pid.
		{group: "sock", event: "inet_sock_set_state", opts: []TracepointOption{ForProcess(noSuchPID)},
			wantErr: fmt.Sprintf("/proc/%d/task", noSuchPID), wantNotExist: true},
	}
	for _, tt := range tests {
		onFreshThread(t, unix.CLONE_NEWNS, func() error {
			_, err := OpenTracepoint(tt.group, tt.event, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || tt.wantNotExist != errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("OpenTracepoint(%q, %q) err = %v, want %q", tt.group, tt.event, err, tt.wantErr)
			}
			return nil
		})
	}
}

// TestTracepointFilter counts sock:inet_sock_set_state over one TCP
// connection with three counters of the whole host: a filter that matches
// nothing (no TCP state is 0) must count 0 while the unfiltered counter and
// one filtered to TCP_SYN_SENT grow.
func TestTracepointFilter(t *testing.T) {
	privtest.Root(t)
	filters := []string{"", "newstate == 2", "newstate == 0"}
	counters := make([]*TracepointCounter, len(filters))
	before := make([]TracepointCount, len(filters))
	for i, f := range filters {
		counters[i] = openTracepointPrivately(t, "sock", "inet_sock_set_state", WithFilter(f))
		var err error
		if before[i], err = counters[i].Read(); err != nil {
			t.Fatal(err)
		}
	}
	onFreshThread(t, unix.CLONE_NEWNET, func() error {
		if err := loopbackUp(); err != nil {
			return err
		}
		return tcpOverLoopback()
	})
	d := make([]uint64, len(filters))
	for i, c := range counters {
		after, err := c.Read()
		if err != nil {
			t.Fatal(err)
		}
		d[i] = after.Sub(before[i]).Total
	}
	// The client alone moves CLOSE -> SYN_SENT -> ESTABLISHED -> FIN_WAIT1.
	if d[0] < 3 {
		t.Errorf("unfiltered: +%d over one TCP connection, want >= 3", d[0])
	}
	if d[1] < 1 {
		t.Errorf("filter %q: +%d over one TCP connection, want >= 1 (the client's connect)", filters[1], d[1])
	}
	if d[2] != 0 {
		t.Errorf("filter %q: +%d, want 0: no socket ever enters state 0", filters[2], d[2])
	}
}

// TestTracepointForThread counts raw_syscalls:sys_enter of one thread
// while another thread of the process makes n system calls, then while the
// counted thread makes n itself: the first must not reach n, the second
// must.
func TestTracepointForThread(t *testing.T) {
	privtest.Root(t)
	const n = 10000
	onFreshThread(t, unix.CLONE_NEWNS, func() error {
		c, err := OpenTracepoint("raw_syscalls", "sys_enter", ForThread())
		if err != nil {
			return err
		}
		defer c.Close()
		c0, err := c.Read()
		if err != nil {
			return err
		}
		done := make(chan struct{})
		go func() { // on another thread: this goroutine's thread is locked
			for range n {
				unix.Getppid()
			}
			close(done)
		}()
		<-done
		c1, err := c.Read()
		if err != nil {
			return err
		}
		for range n {
			unix.Getppid()
		}
		c2, err := c.Read()
		if err != nil {
			return err
		}
		if other := c1.Sub(c0).Total; other >= n {
			return fmt.Errorf("+%d while another thread made %d system calls, want fewer: only this thread's own", other, n)
		}
		if own := c2.Sub(c1).Total; own < n {
			return fmt.Errorf("+%d while this thread made %d system calls, want at least %d", own, n, n)
		}
		if !reflect.DeepEqual(c2.CPUs, []int{-1}) || !reflect.DeepEqual(c2.PerCPU, []uint64{c2.Total}) {
			return fmt.Errorf("count %+v, want the one slot of CPU -1", c2)
		}
		return nil
	})
}

// TestTracepointForProcess counts raw_syscalls:sys_enter of this process,
// whose threads started after the open must be counted too, and of another
// process (a sleep), which must not count this one's system calls.
func TestTracepointForProcess(t *testing.T) {
	privtest.Root(t)
	if _, err := exec.LookPath("sleep"); err != nil {
		privtest.Unavailable(t, "no sleep command: "+err.Error())
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sleeper.Process.Kill()
		sleeper.Wait()
	})
	self, listed := openSelfSettled(t)
	other := openTracepointPrivately(t, "raw_syscalls", "sys_enter", ForProcess(sleeper.Process.Pid))
	s0, err := self.Read()
	if err != nil {
		t.Fatal(err)
	}
	o0, err := other.Read()
	if err != nil {
		t.Fatal(err)
	}
	// Workers that hold their threads all at once, so that the runtime must
	// start threads for some of them. Each never unlocks: its thread ends
	// with it, and perf adds an ended child's count to its parent's.
	const workers, k = 16, 10000
	tids := make(chan int, workers)
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			<-release
			for range k {
				unix.Getppid()
			}
		})
	}
	started := 0
	for range workers {
		if !listed[<-tids] {
			started++
		}
	}
	close(release)
	wg.Wait()
	if started == 0 {
		t.Fatalf("all %d workers ran on threads that existed when the counter opened: nothing tests inheritance", workers)
	}
	s1, err := self.Read()
	if err != nil {
		t.Fatal(err)
	}
	o1, err := other.Read()
	if err != nil {
		t.Fatal(err)
	}
	// Any other thread of the process only adds to the count.
	if d := s1.Sub(s0).Total; d < workers*k {
		t.Errorf("this process: +%d over %d system calls on %d threads (%d started after the open), want at least %d", d, workers*k, workers, started, workers*k)
	}
	if d := o1.Sub(o0).Total; d >= workers*k {
		t.Errorf("the sleep process: +%d while this process made %d system calls, want fewer: only its own", d, workers*k)
	}
	if !reflect.DeepEqual(s1.CPUs, []int{-1}) || !reflect.DeepEqual(s1.PerCPU, []uint64{s1.Total}) {
		t.Errorf("count %+v, want the one slot of CPU -1", s1)
	}
}

// openSelfSettled opens a ForProcess counter of raw_syscalls:sys_enter of
// this process, again until no thread started while it opened, and returns
// the threads alive then. A thread the runtime starts during the open from
// a thread not yet counted is missed (see ForProcess); once none did, every
// thread alive has an event of its own and every later thread inherits one,
// so the test's count is exact.
func openSelfSettled(t *testing.T) (*TracepointCounter, map[int]bool) {
	t.Helper()
	for range 10 {
		var c *TracepointCounter
		var before, after []int
		onFreshThread(t, unix.CLONE_NEWNS, func() error {
			var err error
			if before, err = processThreads(os.Getpid()); err != nil {
				return err
			}
			if c, err = OpenTracepoint("raw_syscalls", "sys_enter", ForProcess(os.Getpid())); err != nil {
				return err
			}
			after, err = processThreads(os.Getpid())
			return err
		})
		alive := map[int]bool{}
		for _, tid := range before {
			alive[tid] = true
		}
		settled := true
		for _, tid := range after {
			settled = settled && alive[tid]
		}
		if settled {
			t.Cleanup(func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			})
			return c, alive
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("threads started during every one of 10 opens of a process counter")
	return nil, nil
}

// TestEnsureTracefsMountsOnce checks that tracefs gets mounted when missing
// and that a second call leaves the existing mount alone.
func TestEnsureTracefsMountsOnce(t *testing.T) {
	privtest.Root(t)
	onFreshThread(t, unix.CLONE_NEWNS, func() error {
		for range 2 {
			if err := ensureTracefs(); err != nil {
				return err
			}
		}
		info, err := os.ReadFile("/proc/thread-self/mountinfo")
		if err != nil {
			return err
		}
		n := 0
		for line := range strings.Lines(string(info)) {
			if f := strings.Fields(line); len(f) > 4 && f[4] == tracefsDir && strings.Contains(line, " - tracefs ") {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d tracefs mounts on %s after two calls, want 1", n, tracefsDir)
		}
		return nil
	})
}
