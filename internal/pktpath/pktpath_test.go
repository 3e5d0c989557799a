package pktpath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
)

// pair makes two named namespaces, a (198.18.97.1) and b (198.18.97.2),
// joined by a veth; the names are marked for the sweep, and removed at
// cleanup.
func pair(t *testing.T) (a, b string) {
	t.Helper()
	privtest.Root(t)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		privtest.Unavailable(t, "no kernel BTF")
	}
	lab := labtest.Lab()
	a, b = "labctl-"+lab+".a", "labctl-"+lab+".b"
	for _, ns := range []string{a, b} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		if err := labtest.Mark(ns); err != nil {
			t.Fatal(err)
		}
	}
	labtest.VethPair(t, labtest.End{NS: labtest.Named(t, a), Name: "v0", Addr: mustPrefix("198.18.97.1/30")},
		labtest.End{NS: labtest.Named(t, b), Name: "v0", Addr: mustPrefix("198.18.97.2/30")})
	return a, b
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// in runs fn on a thread in the named namespace (sockets made there stay
// there, and can be used from any goroutine afterwards).
func in(t *testing.T, ns string, fn func() error) {
	t.Helper()
	if err := <-labtest.In(labtest.Named(t, ns), fn); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, o Options) *Tracer {
	t.Helper()
	tr, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// echo serves a TCP echo of size-byte messages in ns b and exchanges n of
// them from a.
func echo(t *testing.T, a, b string, n, size int) {
	t.Helper()
	var ln net.Listener
	in(t, b, func() (err error) { ln, err = net.Listen("tcp4", "198.18.97.2:0"); return err })
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// Read and write, not io.Copy: Go would splice socket to socket,
		// and the data would never be copied to user space.
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	var c net.Conn
	in(t, a, func() (err error) { c, err = net.Dial("tcp4", ln.Addr().String()); return err })
	defer c.Close()
	buf := make([]byte, size)
	for range n {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTCPPath: every request of a TCP echo, sampled at rate 1, goes from
// the client's device queue to the copy into the server's buffer through
// each stage, in time order, each in its node; stream offsets count the
// messages.
func TestTCPPath(t *testing.T) {
	a, b := pair(t)
	tr := start(t, Options{Namespaces: map[string]string{a: "a", b: "b"}, Rate: 1, Cap: 10000, Stages: Every, Netfilter: true})
	from := time.Now()
	echo(t, a, b, 50, 64)
	tr.Flush()
	packets := tr.Take(from, time.Now())
	want := []string{"nf LOCAL_OUT@a", "nf POST_ROUTING@a", "tc egress@a", "net_dev_queue@a", "net_dev_start_xmit@a", "netif_rx@b",
		"netif_receive_skb@b", "nf PRE_ROUTING@b", "nf LOCAL_IN@b", "tcp receive@b", "sk_data_ready@b", "copy to user@b"}
	var requests, complete, softirqMissed int
	var offsets []int64
	for _, p := range packets {
		if p.Src.Addr().String() != "198.18.97.1" || p.Flags&0x08 == 0 { // PSH: a message
			continue
		}
		requests++
		var got []string
		for _, s := range p.Stages {
			got = append(got, label(s))
		}
		if isSubsequence(want, got) {
			complete++
		} else if requests-complete <= 3 {
			t.Logf("request %d: %v", requests, got)
		}
		// veth without NAPI: its packets wait in the backlog, which the
		// receive softirq polls; nothing busy polls it.
		for _, s := range p.Stages {
			if s.Name == "netif_receive_skb" && s.Polled != PolledSoftirq {
				softirqMissed++
			}
		}
		offsets = append(offsets, p.Offset)
	}
	if requests < 50 || float64(complete) < 0.95*float64(requests) {
		t.Errorf("%d of %d requests went through every stage (want 95%%)", complete, requests)
	}
	slices.Sort(offsets)
	for i, off := range offsets[:min(len(offsets), 50)] {
		if off != int64(64*i) {
			t.Errorf("request %d: stream offset %d, want %d", i, off, 64*i)
			break
		}
	}
	if st := tr.Stats(); st.Lost != 0 {
		t.Errorf("%d events lost", st.Lost)
	}
	sum := Summarize(packets, nil)
	if len(sum.GetStages()) == 0 || sum.GetPackets() != int64(len(packets)) {
		t.Errorf("summary %v", sum)
	}
	if softirqMissed > 0 || sum.GetPolledByBusyPoll() != 0 {
		t.Errorf("%d requests received other than in softirq, %d receptions busy polled; want every one in softirq",
			softirqMissed, sum.GetPolledByBusyPoll())
	}
}

// TestLandmarks: a sampled trace of the path's landmarks attaches only
// the devices' egress hook (in every device of the lab's namespaces), the
// copy to the reader and the drop, says which stages it left out, and
// still joins a sampled request's transmit in one node to its copy in the
// other (through the in-flight array: every later stage is given the same
// skb on veth). Where the egress hook cannot attach, net_dev_queue takes
// its place, and the hook is reported missing.
func TestLandmarks(t *testing.T) {
	omitted := []string{"nf (LOCAL_OUT, POST_ROUTING, PRE_ROUTING, LOCAL_IN, FORWARD)", "net_dev_queue", "net_dev_start_xmit", "netif_rx",
		"napi_gro_receive (napi_gro_receive_entry)", "netif_receive_skb", "tcp receive (tcp_probe)", "sk_data_ready", "reader wakeup (sched_waking)", "consumed (consume_skb)"}
	for _, c := range []struct {
		name, fail, first string
		missing           []string
		omitted           []string
	}{
		{"egress hook", "", "tc egress", nil, omitted},
		{"net_dev_queue instead", "tc_egress", "net_dev_queue", []string{"tc egress (tcx on the lab's devices)"},
			slices.DeleteFunc(slices.Clone(omitted), func(s string) bool { return s == "net_dev_queue" })},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(FailEnv, c.fail)
			a, b := pair(t)
			tr := start(t, Options{Namespaces: map[string]string{a: "a", b: "b"}, Rate: 0.5, Stages: Landmarks})
			if got := tr.Omitted(); !slices.Equal(got, c.omitted) {
				t.Errorf("omitted %q, want %q", got, c.omitted)
			}
			var missing []string
			for _, m := range tr.Missing() {
				missing = append(missing, m.Stage)
			}
			if !slices.Equal(missing, c.missing) {
				t.Errorf("missing %q, want %q", missing, c.missing)
			}
			links := 3 // the first stage, the copy, kfree_skb
			if c.fail == "" {
				links = 2 + devices(t, a) + devices(t, b)
			}
			if n := len(tr.links); n != links {
				t.Errorf("%d links, want %d", n, links)
			}
			from := time.Now()
			echo(t, a, b, 200, 64)
			tr.Flush()
			var requests, complete int
			for _, p := range tr.Take(from, time.Now()) {
				if p.Src.Addr().String() != "198.18.97.1" || p.Flags&0x08 == 0 {
					continue
				}
				requests++
				var got []string
				for _, s := range p.Stages {
					got = append(got, label(s))
				}
				if slices.Equal(got, []string{c.first + "@a", "copy to user@b"}) {
					complete++
				} else if requests-complete <= 3 {
					t.Logf("request %d: %v", requests, got)
				}
			}
			if requests < 50 || float64(complete) < 0.95*float64(requests) {
				t.Errorf("%d of %d sampled requests went from %s in a to the copy in b", complete, requests, c.first)
			}
		})
	}
}

// devices counts the network devices of namespace ns.
func devices(t *testing.T, ns string) int {
	var n int
	in(t, ns, func() error {
		devs, err := net.Interfaces()
		n = len(devs)
		return err
	})
	return n
}

// isSubsequence reports whether want appears in got in order.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestClosedPortDrop: a SYN to a port nobody listens on is dropped by TCP's
// receive with the kernel's reason NO_SOCKET, in the server's node.
func TestClosedPortDrop(t *testing.T) {
	a, b := pair(t)
	tr := start(t, Options{Namespaces: map[string]string{a: "a", b: "b"}, Rate: 1, Stages: Every, Netfilter: true})
	from := time.Now()
	in(t, a, func() error {
		c, err := net.DialTimeout("tcp4", "198.18.97.2:9", time.Second)
		if err == nil {
			c.Close()
			return errors.New("port 9 is open")
		}
		return nil
	})
	tr.Flush()
	for _, p := range tr.Take(from, time.Now()) {
		t.Logf("packet %d %v -> %v seq %d flags %#x: %v", p.ID, p.Src, p.Dst, p.Seq, p.Flags, p.Stages)
	}
	drops := tr.TakeDrops(from, time.Now())
	found := false
	for _, d := range drops {
		t.Logf("drop: %s at %s in %s, %v -> %v, packet %d", d.Reason, d.Location, d.Node, d.Src, d.Dst, d.Packet)
		if d.Reason == "NO_SOCKET" && d.Node == "b" && d.Dst.Port() == 9 && strings.HasPrefix(d.Location, "tcp_v4_rcv") && d.Packet != 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("no NO_SOCKET drop at tcp_v4_rcv in b among %d drops", len(drops))
	}
}

// TestSampling: at rate r, the datagrams traced are within the binomial
// 99% interval of r·n, and none of their events is lost.
func TestSampling(t *testing.T) {
	a, b := pair(t)
	const n, rate = 2000, 0.3
	tr := start(t, Options{Namespaces: map[string]string{a: "a", b: "b"}, Rate: rate, Stages: Every})
	var sink net.PacketConn
	in(t, b, func() (err error) { sink, err = net.ListenPacket("udp4", "198.18.97.2:0"); return err })
	defer sink.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	var c net.Conn
	in(t, a, func() (err error) { c, err = net.Dial("udp4", sink.LocalAddr().String()); return err })
	defer c.Close()
	from := time.Now()
	for range n {
		if _, err := c.Write(make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Microsecond)
	}
	tr.Flush()
	traced, complete := 0, 0
	// UDP copies to the reader with skb_copy_and_csum_datagram_msg, which
	// has no tracepoint.
	want := []string{"tc egress", "net_dev_queue", "net_dev_start_xmit", "netif_rx", "netif_receive_skb"}
	for _, p := range tr.Take(from, time.Now()) {
		if p.Proto == "udp" && p.Src.Addr().String() == "198.18.97.1" {
			traced++
			var names []string
			for _, s := range p.Stages {
				names = append(names, s.Name)
			}
			if slices.Equal(names[:min(len(want), len(names))], want) {
				complete++
			} else if traced-complete < 4 {
				t.Logf("incomplete: %q", names)
			}
		}
	}
	// Sampled packets are found again at every later stage (through the
	// in-flight array when not every packet is traced).
	if complete < traced*95/100 {
		t.Errorf("%d of %d sampled datagrams have every stage", complete, traced)
	}
	mean, sd := n*rate, math.Sqrt(n*rate*(1-rate))
	if d := math.Abs(float64(traced) - mean); d > 2.576*sd {
		t.Errorf("%d of %d datagrams traced at rate %v; the 99%% interval is %.0f ± %.0f", traced, n, rate, mean, 2.576*sd)
	}
	if st := tr.Stats(); st.Lost != 0 {
		t.Errorf("%d events lost", st.Lost)
	}
}

// ours lists the ids of the programs of this package loaded now.
func ours(t *testing.T) []ebpf.ProgramID {
	t.Helper()
	names := map[string]bool{}
	for _, p := range programs {
		names[p.section[:min(len(p.section), 15)]] = true
	}
	var out []ebpf.ProgramID
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return out
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && names[info.Name] {
			out = append(out, id)
		}
		p.Close()
	}
}

// TestNothingLeft: closing a tracer, or killing the process that loaded
// it, leaves none of its programs (and so none of its links, which hold
// them) in the kernel.
func TestNothingLeft(t *testing.T) {
	a, b := pair(t)
	if left := ours(t); len(left) > 0 {
		t.Skipf("programs of another tracer are loaded: %v", left)
	}
	tr, err := Start(Options{Namespaces: map[string]string{a: "a", b: "b"}, Rate: 1, Stages: Every, Netfilter: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ours(t)) == 0 {
		t.Fatal("no program of the tracer is loaded while it runs")
	}
	tr.Close()
	waitNone(t, "after Close")

	// A process that loaded the programs and is killed: the kernel frees
	// them with its descriptors.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperTracer$")
	cmd.Env = append(os.Environ(), "PKTPATH_HELPER="+a+","+b)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "tracing") {
		_ = cmd.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	if len(ours(t)) == 0 {
		t.Error("the helper's programs are not loaded")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	waitNone(t, "after kill -9 of the loading process")
}

func waitNone(t *testing.T, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(ours(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: programs left: %v", when, ours(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHelperTracer is the process TestNothingLeft kills.
func TestHelperTracer(t *testing.T) {
	spec := os.Getenv("PKTPATH_HELPER")
	if spec == "" {
		t.Skip("run by TestNothingLeft")
	}
	nss := map[string]string{}
	for _, ns := range strings.Split(spec, ",") {
		nss[ns] = ns
	}
	tr, err := Start(Options{Namespaces: nss, Rate: 1, Stages: Every, Netfilter: true})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer tr.Close()
	fmt.Println("tracing")
	time.Sleep(time.Minute)
}

// TestMissingStage: a stage that cannot load is reported by name, and the
// others still trace.
func TestMissingStage(t *testing.T) {
	a, b := pair(t)
	t.Setenv(FailEnv, "receive")
	tr := start(t, Options{Namespaces: map[string]string{a: "a", b: "b"}, Rate: 1, Stages: Every, Netfilter: true})
	var missing []string
	for _, m := range tr.Missing() {
		missing = append(missing, m.Stage)
	}
	if len(missing) != 1 || !strings.HasPrefix(missing[0], "netif_receive_skb") {
		t.Errorf("missing %v, want netif_receive_skb", missing)
	}
	from := time.Now()
	echo(t, a, b, 5, 64)
	tr.Flush()
	seen := map[string]bool{}
	for _, p := range tr.Take(from, time.Now()) {
		for _, s := range p.Stages {
			seen[s.Name] = true
		}
	}
	if seen["netif_receive_skb"] || !seen["netif_rx"] || !seen["nf LOCAL_IN"] || !seen["copy to user"] {
		t.Errorf("stages seen: %v", seen)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestRingSize: the CPUs share 32 MiB of ring buffers, at least 1 MiB
// each, in powers of 2.
func TestRingSize(t *testing.T) {
	for _, c := range []struct {
		cpus int
		want uint32
	}{{1, 32 << 20}, {2, 16 << 20}, {3, 8 << 20}, {16, 2 << 20}, {64, 1 << 20}} {
		if got := ringSize(c.cpus); got != c.want {
			t.Errorf("%d CPUs: %d bytes each, want %d", c.cpus, got, c.want)
		}
	}
}

// TestDetailFor: a sampled run attaches the landmarks, and every stage
// beyond them that a verdict reads.
func TestDetailFor(t *testing.T) {
	for _, tc := range []struct {
		stages    []string
		want      Detail
		netfilter bool
	}{
		{nil, Landmarks, false},
		{[]string{"tc egress", "copy to user"}, Landmarks, false},
		{[]string{"net_dev_queue", "copy to user"}, Every, false}, // a landmark only where the egress hook is missing
		{[]string{"drop", "nf LOCAL_IN"}, Landmarks, true},        // netfilter is Options.Netfilter's
		{[]string{"copy to user", "reader wakeup"}, Every, false},
		{[]string{"netif_receive_skb"}, Every, false},
	} {
		if got, nf := DetailFor(tc.stages); got != tc.want || nf != tc.netfilter {
			t.Errorf("DetailFor(%q) = %d, %v; want %d, %v", tc.stages, got, nf, tc.want, tc.netfilter)
		}
	}
}
