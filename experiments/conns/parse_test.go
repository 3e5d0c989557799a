package conns

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kstat"
)

// littleEndian guards the captured netlink messages: netlink headers and
// inet_diag's host-order fields were recorded on x86-64.
func littleEndian(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("testdata was captured on a little-endian host")
	}
}

func TestDumpRequestMatchesCapture(t *testing.T) {
	littleEndian(t)
	want, err := os.ReadFile("testdata/sockdiag_req_dump_listen.bin")
	if err != nil {
		t.Fatal(err)
	}
	got := appendRequest(nil, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, 7, stateMask(tcpListen), sockID{})
	if !bytes.Equal(got, want) {
		t.Errorf("dump request\n got %x\nwant %x", got, want)
	}
}

// sockdiag_dump_listen.bin is the kernel's answer (Linux 6.18) to that
// request in a namespace with two listeners: 127.0.0.1:9090 with backlog 3
// and 127.0.0.1:8080 with backlog 5.
func TestParseCapturedDump(t *testing.T) {
	littleEndian(t)
	b, err := os.ReadFile("testdata/sockdiag_dump_listen.bin")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := splitMessages(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []diagSocket
	for _, m := range msgs {
		if m.Type != unix.SOCK_DIAG_BY_FAMILY || m.Seq != 7 {
			t.Fatalf("message type %d seq %d", m.Type, m.Seq)
		}
		s, err := parseDiagMsg(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		s.Inode = 0 // differs per capture
		got = append(got, s)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	unspecified := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	want := []diagSocket{
		{ID: sockID{Local: netip.AddrPortFrom(lo, 9090), Remote: unspecified}, State: tcpListen, WQueue: 3},
		{ID: sockID{Local: netip.AddrPortFrom(lo, 8080), Remote: unspecified}, State: tcpListen, WQueue: 5},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", got, want)
	}
}

func TestDestroyRequestCarriesTheTuple(t *testing.T) {
	id := sockID{Local: netip.MustParseAddrPort("198.18.0.1:40001"), Remote: netip.MustParseAddrPort("198.18.0.2:8080")}
	b := appendRequest(nil, unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 9, 0, id)
	msgs, err := splitMessages(b)
	if err != nil || len(msgs) != 1 || msgs[0].Type != unix.SOCK_DESTROY || msgs[0].Seq != 9 {
		t.Fatalf("messages %+v, %v", msgs, err)
	}
	r := msgs[0].Payload
	if r[0] != unix.AF_INET || r[1] != unix.IPPROTO_TCP || binary.NativeEndian.Uint32(r[4:]) != 0 {
		t.Errorf("header of the request: % x", r[:8])
	}
	// The request's sockid reads back like a dump's.
	msg := append([]byte{unix.AF_INET, tcpTimeWait, 0, 0}, r[8:8+sizeofSockID]...)
	msg = append(msg, make([]byte, 20)...)
	s, err := parseDiagMsg(msg)
	if err != nil || s.ID != id {
		t.Errorf("sockid %+v (%v), want %+v", s.ID, err, id)
	}
	// The cookie is INET_DIAG_NOCOOKIE: match by 4-tuple alone.
	if binary.NativeEndian.Uint32(r[8+40:]) != nocookie || binary.NativeEndian.Uint32(r[8+44:]) != nocookie {
		t.Errorf("cookie % x", r[8+40:8+48])
	}
}

func TestSplitMessages(t *testing.T) {
	ack := func(seq uint32, errno int32) []byte {
		b := make([]byte, 16+4)
		binary.NativeEndian.PutUint32(b[0:], 20)
		binary.NativeEndian.PutUint16(b[4:], unix.NLMSG_ERROR)
		binary.NativeEndian.PutUint32(b[8:], seq)
		binary.NativeEndian.PutUint32(b[16:], uint32(errno))
		return b
	}
	b := append(ack(1, 0), ack(2, -int32(unix.ENOENT))...)
	msgs, err := splitMessages(b)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for i, want := range []unix.Errno{0, unix.ENOENT} {
		if got, err := nlError(msgs[i].Payload); err != nil || got != want {
			t.Errorf("message %d: errno %v (%v), want %v", i, got, err, want)
		}
	}
	if _, err := splitMessages(ack(1, 0)[:18]); err == nil {
		t.Error("a message cut short parsed")
	}
	if _, err := parseDiagMsg(make([]byte, 10)); err == nil {
		t.Error("a short inet_diag_msg parsed")
	}
}

func TestResolveLines(t *testing.T) {
	// /sys/kernel/slab as Linux 6.18 x86-64 shows it: merged caches are
	// links to a directory named by size and flags; /proc/slabinfo shows
	// each merged cache under one of its aliases.
	targets := map[string]string{
		"TCP": "TCP", "tw_sock_TCP": "tw_sock_TCP", "dentry": "dentry",
		":A-0000128": ":A-0000128", "eventpoll_epi": ":A-0000128", "tcp_bind_bucket": ":A-0000128", "tcp_bind2_bucket": ":A-0000128", "fib6_node": ":A-0000128",
		":A-0000064": ":A-0000064", "eventpoll_pwq": ":A-0000064", "anon_vma_chain": ":A-0000064",
	}
	info := kstat.SlabInfo{"TCP": {}, "tw_sock_TCP": {}, "dentry": {}, "eventpoll_epi": {}, "anon_vma_chain": {}, "filp": {}}
	got := resolveLines(info, targets, []string{"TCP", "eventpoll_epi", "tcp_bind_bucket", "tcp_bind2_bucket", "eventpoll_pwq", "filp", "skbuff_small_head"})
	want := []slabLine{
		{Name: "TCP", Caches: []string{"TCP"}, Aliases: []string{"TCP"}},
		{Name: "eventpoll_epi", Caches: []string{"eventpoll_epi", "tcp_bind_bucket", "tcp_bind2_bucket"},
			Aliases: []string{"eventpoll_epi", "fib6_node", "tcp_bind2_bucket", "tcp_bind_bucket"}},
		{Name: "anon_vma_chain", Caches: []string{"eventpoll_pwq"}, Aliases: []string{"anon_vma_chain", "eventpoll_pwq"}},
		// Not in sysfs (no SLUB debug view): taken by its name.
		{Name: "filp", Caches: []string{"filp"}, Aliases: []string{"filp"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines\n%+v\nwant\n%+v", got, want)
	}
	if o := otherAliases(got[1]); !reflect.DeepEqual(o, []string{"fib6_node"}) {
		t.Errorf("other aliases of eventpoll_epi: %v", o)
	}
}

func TestMemoryDelta(t *testing.T) {
	lines := []slabLine{{Name: "TCP"}, {Name: "filp"}}
	base := snapshot{
		Slab:     kstat.SlabInfo{"TCP": {ActiveObjs: 10, ObjSize: 2368}, "filp": {ActiveObjs: 100, ObjSize: 192}, "kmalloc-64": {ActiveObjs: 5, ObjSize: 64}},
		SockStat: kstat.SockStat{"TCP.mem": 3},
		Memcg:    memcgSample{OK: true, Kmem: 1000, Sock: 4096, SockValid: true},
	}
	cur := snapshot{
		Slab:     kstat.SlabInfo{"TCP": {ActiveObjs: 30, ObjSize: 2368}, "filp": {ActiveObjs: 110, ObjSize: 192}, "kmalloc-64": {ActiveObjs: 4, ObjSize: 64}},
		SockStat: kstat.SockStat{"TCP.mem": 5},
		Memcg:    memcgSample{OK: true, Kmem: 51000, Sock: 8192, SockValid: true},
	}
	want := map[string]float64{"TCP": 20 * 2368, "filp": 10 * 192, seriesConnCaches: 20*2368 + 10*192, seriesAllSlab: 20*2368 + 10*192 - 64,
		seriesTCPMem: 2 * 4096, seriesMemcgKmem: 50000, seriesMemcgSock: 4096}
	if got := memoryDelta(lines, base, cur); !reflect.DeepEqual(got, want) {
		t.Errorf("delta %v\nwant %v", got, want)
	}
	cur.Memcg.OK = false
	if got := memoryDelta(lines, base, cur); got[seriesMemcgKmem] != 0 {
		t.Errorf("a failed cgroup reading gave %v", got[seriesMemcgKmem])
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		file, path string
		v2         bool
	}{
		{"testdata/proc_cgroup_v1", "/process_api/5bc2ce401f0ac74a5fa35fffbe5d5b2b", false},
		{"testdata/proc_cgroup_v2", "/user.slice/user-1000.slice/session-2.scope", true},
	} {
		f, err := os.Open(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		path, v2, err := parseProcCgroup(f)
		f.Close()
		if err != nil || path != tc.path || v2 != tc.v2 {
			t.Errorf("%s: %q v2=%v (%v), want %q v2=%v", tc.file, path, v2, err, tc.path, tc.v2)
		}
	}
	if _, _, err := parseProcCgroup(strings.NewReader("4:cpu:/\n")); err == nil {
		t.Error("a file without a memory cgroup parsed")
	}
}

func TestParseMemoryStat(t *testing.T) {
	b, err := os.ReadFile("testdata/memory_stat_v2")
	if err != nil {
		t.Fatal(err)
	}
	want := memcgSample{OK: true, Kmem: 9617408, Sock: 12288, SockValid: true}
	if got := parseMemoryStat(string(b)); got != want {
		t.Errorf("%+v, want %+v", got, want)
	}
}

func TestPortRangeAndPorts(t *testing.T) {
	lo, hi, err := parsePortRange("32768\t60999\n")
	if err != nil || lo != 32768 || hi != 60999 {
		t.Errorf("parsed %d-%d, %v", lo, hi, err)
	}
	for _, bad := range []string{"", "1", "9 8", "a b"} {
		if _, _, err := parsePortRange(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	for _, tc := range []struct{ n, portRange, want int }{
		{1000, 28232, 1}, {14116, 28232, 1}, {14117, 28232, 2}, {100_000, 28232, 8}, {100, 2, 100},
	} {
		if got, err := portsFor(tc.n, tc.portRange); err != nil || got != tc.want {
			t.Errorf("portsFor(%d, %d) = %d, %v; want %d", tc.n, tc.portRange, got, err, tc.want)
		}
	}
	if _, err := portsFor(100_000, 100); err == nil {
		t.Error("2000 server ports accepted")
	}
	if _, err := portsFor(10, 1); err == nil {
		t.Error("a range of one port accepted")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err   error
		limit string
		errno unix.Errno
	}{
		{nil, limitNone, 0},
		{fmt.Errorf("socket: %w", unix.EMFILE), limitNofile, unix.EMFILE},
		{fmt.Errorf("socket: %w", unix.ENFILE), limitFileMax, unix.ENFILE},
		{fmt.Errorf("connect fd 3 to x: %w", unix.EADDRNOTAVAIL), limitPorts, unix.EADDRNOTAVAIL},
		{fmt.Errorf("connect fd 3 to x: %w", errPending), limitBacklog, 0},
		{fmt.Errorf("socket: %w", unix.ENOBUFS), limitMemory, unix.ENOBUFS},
		{fmt.Errorf("connect: %w", unix.ECONNREFUSED), "unexpected: connect: connection refused", unix.ECONNREFUSED},
	} {
		limit, errno := classify(tc.err)
		if limit != tc.limit || errno != tc.errno {
			t.Errorf("classify(%v) = %q %v, want %q %v", tc.err, limit, errno, tc.limit, tc.errno)
		}
	}
}

func TestSourceAddrs(t *testing.T) {
	pfx, addrs, err := sourceAddrs("198.19.248.7/24", 3)
	want := []netip.Addr{netip.MustParseAddr("198.19.248.1"), netip.MustParseAddr("198.19.248.2"), netip.MustParseAddr("198.19.248.3")}
	if err != nil || pfx.String() != "198.19.248.0/24" || !reflect.DeepEqual(addrs, want) {
		t.Errorf("%v %v %v", pfx, addrs, err)
	}
	for _, bad := range []struct {
		prefix string
		n      int
	}{{"198.19.248.0/30", 4}, {"2001:db8::/64", 1}, {"nonsense", 1}} {
		if _, _, err := sourceAddrs(bad.prefix, bad.n); err == nil {
			t.Errorf("%s with %d addresses accepted", bad.prefix, bad.n)
		}
	}
}

func TestWaitForGivesUp(t *testing.T) {
	calls := 0
	err := waitFor(t.Context(), 0, "never", func() (bool, error) { calls++; return false, nil })
	if err == nil || calls != 1 {
		t.Errorf("err %v after %d calls", err, calls)
	}
	boom := errors.New("boom")
	if err := waitFor(t.Context(), 0, "x", func() (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("err %v", err)
	}
}

func TestRootShared(t *testing.T) {
	for file, want := range map[string]bool{"testdata/mountinfo_slave": false, "testdata/mountinfo_shared": true} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := rootShared(f)
		f.Close()
		if err != nil || got != want {
			t.Errorf("%s: shared %v (%v), want %v", file, got, err, want)
		}
	}
	if _, err := rootShared(strings.NewReader("30 29 0:26 / /sys rw - sysfs sysfs rw\n")); err == nil {
		t.Error("mountinfo without / parsed")
	}
}
