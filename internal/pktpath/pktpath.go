// Package pktpath traces the kernel's path of a lab's packets with eBPF:
// the netfilter hooks (BPF netfilter links, one per lab namespace and
// hook), the device queue and transmit, the receive entry, TCP's receive,
// the wakeup of the reading socket and thread, the copy to the
// application, and the drop with the kernel's reason and place. What
// attaches where on which kernel is in docs/packet-path.md.
//
// A Tracer is started for a run in the host's namespace (tracepoints see
// every namespace; the programs keep the lab's packets only), samples
// packets at their first stage, and gives back the packets of a time
// window with their stages, and every drop of the lab's traffic. It needs
// root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN) and the kernel's BTF. Nothing
// is pinned: closing the Tracer, or the end of its process, removes every
// program and link.
package pktpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/netns"
)

// FailEnv names stages (programs' names, comma-separated) to fail on
// purpose, to see a run without them (tests).
const FailEnv = "LABCTL_PKTPATH_FAIL"

// Options say what to trace.
type Options struct {
	// Namespaces are the lab's network namespaces, by name, with the node
	// each belongs to.
	Namespaces map[string]string
	// Rate is the fraction of packets sampled at their first stage: 1
	// every packet, 0 none (drops are reported either way).
	Rate float64
	// Cap bounds the packets traced; once reached, sampling stops (drops
	// are still reported) and the Tracer says so.
	Cap int
	// Stages says which of the tracepoint stages attach.
	Stages Detail
	// Netfilter attaches the netfilter stages (LOCAL_OUT, POST_ROUTING,
	// PRE_ROUTING, LOCAL_IN, FORWARD) too. A BPF netfilter hook makes every
	// packet of its namespace go through netfilter, which a namespace
	// without rules otherwise skips, and runs the program four times a
	// packet; without them packets are sampled at the lab's devices'
	// egress hook.
	Netfilter bool
}

// Detail is how many of the path's stages a Tracer attaches. Every
// attached tracepoint is a program run for every packet of the host that
// reaches it, sampled or not: on this project's 2-vCPU VM (kernel 6.18,
// retpolines) net_dev_queue's program added 1.9% to a 25 µs TCP round
// trip on a veth and the copy's about 1.2%, and programs that returned at
// once cost as much (the kernel's call into a program is the cost), so a
// sampled run, which should cost next to nothing, attaches few
// (docs/packet-path.md, "What it costs").
type Detail int

const (
	// Drops attaches kfree_skb alone: every drop of the lab's traffic.
	Drops Detail = iota
	// Landmarks adds the path's ends: the egress hook of the lab's
	// devices (tcx), where packets are sampled, and the copy to the
	// reader. Where the hook cannot attach (Linux before 6.6),
	// net_dev_queue takes its place.
	Landmarks
	// Every attaches every stage.
	Every
)

// Missing is a stage that could not attach, and why.
type Missing struct {
	Stage string
	Err   error
}

// Tracer is a running packet-path trace.
type Tracer struct {
	opts    Options
	spec    *ebpf.CollectionSpec
	coll    *ebpf.Collection // maps and variables
	progs   []*ebpf.Program
	links   []link.Link
	rings   []*ebpf.Map // one a possible CPU, in the events map
	readers []*ringbuf.Reader
	missing []Missing
	omitted []string
	nodes   map[uint32]string // namespace inode -> node
	offset  int64             // wall clock - CLOCK_MONOTONIC, ns
	done    chan struct{}
	stopped chan struct{}
	flush   chan chan struct{}

	mu      sync.Mutex
	packets map[uint64]*Packet
	drops   []Drop
	isn     map[conn]uint32
	traced  int
	capped  bool
	err     error
}

type conn struct {
	src, dst netip.AddrPort
}

// Start loads the programs, attaches every stage this kernel has (the ones
// it lacks are Missing), and starts reading. It fails only when nothing
// can be traced: no BTF, no privilege, no program at all.
func Start(o Options) (*Tracer, error) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, kernel.NotSupported(kernel.Feature{Name: "packet tracing: kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)"}, err)
	}
	t := &Tracer{opts: o, nodes: map[uint32]string{}, packets: map[uint64]*Packet{}, isn: map[conn]uint32{},
		done: make(chan struct{}), stopped: make(chan struct{}), flush: make(chan chan struct{})}
	if err := t.load(); err != nil {
		t.close()
		return nil, err
	}
	for ns, node := range o.Namespaces {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(netns.RunDir, ns), &st); err != nil {
			t.close()
			return nil, fmt.Errorf("packet tracing: namespace %s: %w", ns, err)
		}
		t.nodes[uint32(st.Ino)] = node
		if err := t.coll.Maps["lab_netns"].Put(uint32(st.Ino), uint8(1)); err != nil {
			t.close()
			return nil, fmt.Errorf("packet tracing: namespace %s: %w", ns, err)
		}
	}
	if err := t.attach(); err != nil {
		t.close()
		return nil, err
	}
	var mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	t.offset = time.Now().UnixNano() - mono.Nano()
	if err := t.setRate(o.Rate); err != nil {
		t.close()
		return nil, err
	}
	// Drops are named from the kernel's BTF and symbols, read once
	// (some 100 ms each): start now, so that the first drop waits less.
	go func() { dropReasons(); ksyms() }()
	for _, ring := range t.rings {
		r, err := ringbuf.NewReader(ring)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("packet tracing: ring buffer: %w", err)
		}
		t.readers = append(t.readers, r)
	}
	go t.read()
	return t, nil
}

// load loads the maps once, then each program on its own against them, so
// that a program this kernel refuses (a tracepoint it lacks) takes only
// its stage away.
func (t *Tracer) load() error {
	spec, err := loadPktpath()
	if err != nil {
		return fmt.Errorf("packet tracing: %w", err)
	}
	t.spec = spec
	if err := t.makeRings(spec.Maps["events"]); err != nil {
		return err
	}
	maps := spec.Copy()
	maps.Programs = nil
	t.coll, err = ebpf.NewCollection(maps)
	if err != nil {
		return privileged(fmt.Errorf("packet tracing: maps: %w", err))
	}
	for _, p := range programs {
		if p.detail > t.opts.Stages || p.section == "nf_hook" && !t.opts.Netfilter {
			t.omitted = append(t.omitted, p.name)
			continue
		}
		if err := t.loadProgram(p); err != nil {
			return err
		}
	}
	if t.loaded("tc_egress") == nil {
		if err := t.devQueueInstead(); err != nil {
			return err
		}
	}
	if t.loaded("receive") != nil {
		if err := t.loadPollers(); err != nil {
			return err
		}
	}
	if len(t.progs) == 0 {
		return fmt.Errorf("packet tracing: no stage could load: %v", t.missing)
	}
	return nil
}

// ringBytes are the ring buffers' bytes, all CPUs' together: on 2 CPUs,
// 16 MiB each, which holds a short run with every packet traced (some
// 11 MB of events, which may all come from one CPU) should the reader
// fall behind; with 8 MiB each, 20 such runs lost 6,512 events.
const ringBytes = 1 << 25

// ringSize is the size of each of n CPUs' ring buffers: ringBytes shared
// out, at least 1 MiB (a power of 2, as the kernel wants).
func ringSize(n int) uint32 {
	size := uint32(1 << 20)
	for uint64(size)*2*uint64(n) <= ringBytes {
		size *= 2
	}
	return size
}

// makeRings makes a ring buffer for each possible CPU and puts them in
// the events map's spec.
func (t *Tracer) makeRings(events *ebpf.MapSpec) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("packet tracing: CPUs: %w", err)
	}
	inner := events.InnerMap.Copy()
	inner.MaxEntries = ringSize(n)
	events.MaxEntries = uint32(n)
	events.Contents = nil
	for i := range n {
		ring, err := ebpf.NewMap(inner)
		if err != nil {
			return privileged(fmt.Errorf("packet tracing: ring buffer of CPU %d: %w", i, err))
		}
		t.rings = append(t.rings, ring)
		events.Contents = append(events.Contents, ebpf.MapKV{Key: uint32(i), Value: ring})
	}
	return nil
}

// loadProgram loads p's program against the maps. A program this kernel
// refuses is Missing; only a lack of privilege is an error.
func (t *Tracer) loadProgram(p program) error {
	if slices.Contains(strings.Split(os.Getenv(FailEnv), ","), p.section) {
		t.miss(p.name, fmt.Errorf("failed on purpose (%s)", FailEnv))
		return nil
	}
	one := t.spec.Copy()
	one.Programs = map[string]*ebpf.ProgramSpec{p.section: t.spec.Programs[p.section]}
	c, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: t.coll.Maps})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return privileged(err)
		}
		t.miss(p.name, kernel.NotSupported(kernel.Feature{Name: p.name, Since: kernel.V(p.since[0], p.since[1])}, err))
		return nil
	}
	t.progs = append(t.progs, c.DetachProgram(p.section))
	c.Close()
	return nil
}

// loaded is the loaded program of a section, or nil.
func (t *Tracer) loaded(section string) *ebpf.Program {
	for _, p := range t.progs {
		if sectionOf(p) == section {
			return p
		}
	}
	return nil
}

// miss notes a stage this kernel does not give, once.
func (t *Tracer) miss(stage string, err error) {
	if !slices.ContainsFunc(t.missing, func(m Missing) bool { return m.Stage == stage }) {
		t.missing = append(t.missing, Missing{stage, err})
	}
}

// devQueueInstead loads net_dev_queue, if it is not loaded yet, where the
// devices' egress hook, the landmark packets are sampled at, could not
// load or attach: the tracepoint samples the same packets a little later,
// at a cost to every packet of the host.
func (t *Tracer) devQueueInstead() error {
	if t.opts.Stages < Landmarks || t.loaded("dev_queue") != nil {
		return nil
	}
	i := slices.IndexFunc(programs, func(p program) bool { return p.section == "dev_queue" })
	t.omitted = slices.DeleteFunc(t.omitted, func(name string) bool { return name == programs[i].name })
	return t.loadProgram(programs[i])
}

func privileged(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (packet tracing needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)", err)
	}
	return err
}

// Where packets are sampled, as the programs read it (enum decide in
// bpf/pktpath.c).
const (
	decideLocalOut uint8 = iota
	decideTCEgress
	decideDevQueue
)

// attach links each loaded program: tracepoints once, host-wide; the
// netfilter program in every lab namespace at every IPv4 hook (a
// netfilter link belongs to the namespace of the thread that makes it),
// and the egress hook on every device of every lab namespace. A stage
// that cannot attach everywhere is Missing and attached nowhere. Then it
// tells the programs where packets are sampled: at the first transmit
// stage attached.
func (t *Tracer) attach() error {
	attached := map[string]bool{}
	for i := 0; i < len(t.progs); i++ {
		prog := t.progs[i]
		name := sectionOf(prog)
		var err error
		switch prog.Type() {
		case ebpf.Netfilter:
			if err = t.inEveryNamespace(func() ([]link.Link, error) { return netfilterLinks(prog) }); err != nil {
				err = kernel.NotSupported(kernel.Feature{Name: "BPF netfilter links", Since: kernel.V(6, 4)}, err)
			}
		case ebpf.SchedCLS:
			if err = t.inEveryNamespace(func() ([]link.Link, error) { return egressLinks(prog) }); err != nil {
				err = kernel.NotSupported(kernel.Feature{Name: "tcx links", Since: kernel.V(6, 6)}, err)
				// Loaded now, attached when this loop comes to it.
				if lerr := t.devQueueInstead(); lerr != nil {
					return lerr
				}
			}
		default:
			var l link.Link
			if l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp}); err == nil {
				t.links = append(t.links, l)
			}
		}
		if err != nil {
			t.miss(stageTitle(name), err)
			continue
		}
		attached[name] = true
	}
	decide := decideDevQueue
	switch {
	case attached["nf_hook"]:
		decide = decideLocalOut
	case attached["tc_egress"]:
		decide = decideTCEgress
	}
	if err := t.coll.Variables["decide_at"].Set(decide); err != nil {
		return fmt.Errorf("packet tracing: %w", err)
	}
	if t.opts.Stages == Every {
		// The receive entry and captures find sampled packets by headers.
		if err := t.coll.Variables["by_headers"].Set(uint8(1)); err != nil {
			return fmt.Errorf("packet tracing: %w", err)
		}
	}
	if len(t.links) == 0 {
		return fmt.Errorf("packet tracing: no stage could attach: %v", t.missing)
	}
	return nil
}

// pollers are the programs by which netif_receive_skb's tells who polled
// a packet: the receive softirq's entry and exit, on this CPU.
var pollers = []program{
	{"who polled a received packet (softirq_entry)", 0, "softirq_entry", [2]int{5, 5}, Every},
	{"who polled a received packet (softirq_exit)", 0, "softirq_exit", [2]int{5, 5}, Every},
}

// loadPollers loads the pollers and gives netif_receive_skb's program the
// code of the busy-poll loop and of the receive softirq, which it looks
// for on the stack of a reception outside the softirq, before anything
// attaches. Where kallsyms hides them (no privilege) or the kernel has
// neither (the loop was napi_busy_loop alone before Linux 6.9), a busy
// poll is not told, and the run says so.
func (t *Tracer) loadPollers() error {
	for _, p := range pollers {
		if err := t.loadProgram(p); err != nil {
			return err
		}
	}
	softirq, okS := funcRange("net_rx_action")
	busy, okB := funcRange("__napi_busy_loop")
	if !okB {
		busy, okB = funcRange("napi_busy_loop")
	}
	if !okS || !okB {
		t.miss("busy poll (who polled a received packet)", errors.New("/proc/kallsyms gives no net_rx_action or __napi_busy_loop"))
		return nil
	}
	for _, v := range []struct {
		name  string
		value uint64
	}{{"softirq_lo", softirq[0]}, {"softirq_hi", softirq[1]}, {"busy_lo", busy[0]}, {"busy_hi", busy[1]}} {
		if err := t.coll.Variables[v.name].Set(v.value); err != nil {
			return fmt.Errorf("packet tracing: %s: %w", v.name, err)
		}
	}
	return nil
}

// inEveryNamespace makes links in every lab namespace, all or none.
func (t *Tracer) inEveryNamespace(make func() ([]link.Link, error)) error {
	var made []link.Link
	for ns := range t.opts.Namespaces {
		err := netns.Do(ns, func() error {
			ls, err := make()
			made = append(made, ls...)
			return err
		})
		if err != nil {
			for _, l := range made {
				l.Close()
			}
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	t.links = append(t.links, made...)
	return nil
}

// netfilterLinks attaches prog at every IPv4 hook of this thread's
// namespace. Priority -1000 runs it before conntrack and any firewall
// rule, so it sees a packet a rule then drops.
func netfilterLinks(prog *ebpf.Program) ([]link.Link, error) {
	var ls []link.Link
	for _, h := range []link.NetfilterInetHook{link.NetfilterInetLocalOut, link.NetfilterInetPostRouting,
		link.NetfilterInetPreRouting, link.NetfilterInetLocalIn, link.NetfilterInetForward} {
		l, err := link.AttachNetfilter(link.NetfilterOptions{Program: prog, ProtocolFamily: link.NetfilterProtoIPv4, Hook: h, Priority: -1000})
		if err != nil {
			return ls, fmt.Errorf("hook %s: %w", hooks[h], err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// egressLinks attaches prog to the egress of every device of this
// thread's namespace, loopback included. It passes every packet on,
// whatever tc programs or qdiscs the lab has of its own.
func egressLinks(prog *ebpf.Program) ([]link.Link, error) {
	devs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var ls []link.Link
	for _, d := range devs {
		l, err := link.AttachTCX(link.TCXOptions{Interface: d.Index, Program: prog, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return ls, fmt.Errorf("device %s: %w", d.Name, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func sectionOf(p *ebpf.Program) string {
	if info, err := p.Info(); err == nil {
		return info.Name
	}
	return ""
}

func stageTitle(section string) string {
	for _, p := range programs {
		// The kernel keeps the first 15 bytes of a program's name.
		if p.section == section || len(section) == 15 && strings.HasPrefix(p.section, section) {
			return p.name
		}
	}
	return section
}

// setRate sets the sampling rate, as a threshold on a random uint32.
func (t *Tracer) setRate(rate float64) error {
	q := uint64(math.Round(math.Max(0, math.Min(1, rate)) * (1 << 32)))
	return t.coll.Variables["sample_q32"].Set(q)
}

// SetAttached detaches every stage (false), the programs, maps and reader
// kept, and attaches them again (true). bench/ uses it to compare windows
// with and without tracing in one run: between runs this project's VM
// drifts by ±15%, which hides a cost of a few percent.
func (t *Tracer) SetAttached(on bool) error {
	if on {
		if len(t.links) > 0 {
			return nil
		}
		return t.attach()
	}
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	return nil
}

// Missing lists the stages this kernel could not give.
func (t *Tracer) Missing() []Missing { return t.missing }

// Omitted lists the stages left out by Options (Stages, Netfilter).
func (t *Tracer) Omitted() []string { return t.omitted }

// pollEvery is how often the ring buffers are read: the programs never
// wake the reader, so events wait at most this long.
const pollEvery = 20 * time.Millisecond

func (t *Tracer) read() {
	defer close(t.stopped)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var rec ringbuf.Record
	for {
		select {
		case <-t.done:
			t.drain(&rec)
			return
		case ack := <-t.flush:
			// Everything committed before the request is read by now.
			t.drain(&rec)
			close(ack)
		case <-tick.C:
			t.drain(&rec)
		}
	}
}

// drain reads every event committed to each CPU's ring buffer.
func (t *Tracer) drain(rec *ringbuf.Record) {
	for _, r := range t.readers {
		r.SetDeadline(time.Now())
		for {
			err := r.ReadInto(rec)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, ringbuf.ErrClosed) {
					t.mu.Lock()
					t.err = err
					t.mu.Unlock()
				}
				break
			}
			// The event is the C struct in the host's layout and byte
			// order (bpf2go marks it structs.HostLayout): copied as it
			// is, with no reflection, since thousands arrive a second.
			var e pktpathEvent
			raw := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e))
			if len(rec.RawSample) < len(raw) {
				continue
			}
			copy(raw, rec.RawSample)
			t.add(&e)
		}
	}
}

func addr(be uint32, port uint16) netip.AddrPort {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], be) // network order in memory
	return netip.AddrPortFrom(netip.AddrFrom4(b), port)
}

// add files one event under its packet.
func (t *Tracer) add(e *pktpathEvent) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := time.Unix(0, int64(e.Ts)+t.offset)
	src, dst := addr(e.Saddr, e.Sport), addr(e.Daddr, e.Dport)
	node := t.nodes[e.Netns]
	switch e.Stage {
	case stageSYN:
		t.isn[conn{src, dst}] = e.Seq
		return
	case stageDrop:
		t.drops = append(t.drops, Drop{Time: at, Node: node, Src: src, Dst: dst, Proto: protoName(e.Proto),
			reason: e.Value, location: e.Location, Packet: e.Id})
	}
	if e.Id == 0 {
		return
	}
	p := t.packets[e.Id]
	if p == nil {
		if t.opts.Cap > 0 && t.traced >= t.opts.Cap {
			if !t.capped {
				t.capped = true
				_ = t.setRate(0)
			}
			return
		}
		t.traced++
		p = &Packet{ID: e.Id, Proto: protoName(e.Proto), Src: src, Dst: dst, Seq: e.Seq, Ack: e.Ack, IPID: e.Ipid, Flags: e.Flags}
		t.packets[e.Id] = p
	}
	s := Stage{Name: stageName(e.Stage, e.Hook), Node: node, Time: at, Ifindex: int(e.Ifindex), CPU: int(e.Cpu),
		Len: int(e.Len), NAPIID: e.NapiId}
	switch e.Stage {
	case stageWakeup:
		s.PID = int(e.Value)
	case stageReceive:
		s.Polled = polledNames[e.Value]
	case stageCopy, stageCapture:
		s.Copied = int(e.Value)
	case stageDrop:
		// A copy: a pointer into t.drops would be left on an old array
		// by the next append that grows it.
		d := t.drops[len(t.drops)-1]
		p.Drop = &d
	}
	p.Stages = append(p.Stages, s)
}

// Take removes and returns the packets whose first stage was in [from,
// to), in time order, each with its stream offset where its connection's
// SYN was seen.
func (t *Tracer) Take(from, to time.Time) []*Packet {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Packet
	for id, p := range t.packets {
		slices.SortFunc(p.Stages, func(a, b Stage) int { return a.Time.Compare(b.Time) })
		p.Stages = dropLateWakeup(p.Stages)
		if len(p.Stages) == 0 || p.Stages[0].Time.Before(from) || !p.Stages[0].Time.Before(to) {
			continue
		}
		p.Offset = -1
		if isn, ok := t.isn[conn{p.Src, p.Dst}]; ok && p.Proto == "tcp" {
			p.Offset = int64(p.Seq - isn - 1)
		}
		if p.Drop != nil {
			p.Drop.name()
		}
		out = append(out, p)
		delete(t.packets, id)
	}
	slices.SortFunc(out, func(a, b *Packet) int { return a.Stages[0].Time.Compare(b.Stages[0].Time) })
	return out
}

// dropLateWakeup drops a wakeup after the packet's copy to the reader: the
// reader was not asleep when the data came, and the waking the programs
// took for its wakeup was another (they cannot tell on the waker's CPU).
func dropLateWakeup(st []Stage) []Stage {
	out := st[:0]
	copied := false
	for _, s := range st {
		if copied && s.Name == "reader wakeup" {
			continue
		}
		copied = copied || s.Name == "copy to user"
		out = append(out, s)
	}
	return out
}

// TakeDrops removes and returns the drops reported in [from, to).
func (t *Tracer) TakeDrops(from, to time.Time) []Drop {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out, keep []Drop
	for _, d := range t.drops {
		if !d.Time.Before(from) && d.Time.Before(to) {
			d.name()
			out = append(out, d)
		} else {
			keep = append(keep, d)
		}
	}
	t.drops = keep
	return out
}

// Flush returns once every event committed before it was called has been
// read (within one poll).
func (t *Tracer) Flush() {
	ack := make(chan struct{})
	select {
	case t.flush <- ack:
		<-ack
	case <-t.stopped:
	}
}

// Stats are what a trace says of itself.
type Stats struct {
	Traced int    // packets traced
	Capped bool   // sampling stopped at Options.Cap
	Lost   uint64 // events the ring buffer had no room for
	// BPFTime is the time the kernel spent in the tracer's programs and
	// BPFPackets the transmissions the first device stage saw (each packet
	// once per device it is queued to: net_dev_queue counts the host's own
	// traffic too, the egress hook the lab's alone), when the kernel
	// counts run time (kernel.bpf_stats_enabled=1); 0 otherwise.
	BPFTime    time.Duration
	BPFPackets uint64
}

// Stats reports the trace so far.
func (t *Tracer) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{Traced: t.traced, Capped: t.capped}
	for _, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			continue
		}
		s.BPFTime += st.Runtime
		if name := sectionOf(p); name == "dev_queue" || name == "tc_egress" && s.BPFPackets == 0 {
			s.BPFPackets = st.RunCount
		}
	}
	var perCPU []uint64
	if err := t.coll.Maps["lost"].Lookup(uint32(0), &perCPU); err == nil {
		for _, n := range perCPU {
			s.Lost += n
		}
	}
	return s
}

// Close detaches every stage and frees the programs and maps; netfilter
// links go first, since each holds its namespace alive.
func (t *Tracer) Close() error {
	if t.readers != nil {
		close(t.done)
		<-t.stopped
	}
	t.close()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *Tracer) close() {
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	for _, r := range t.readers {
		r.Close()
	}
	t.readers = nil
	for _, m := range t.rings {
		m.Close()
	}
	t.rings = nil
	for _, p := range t.progs {
		p.Close()
	}
	t.progs = nil
	if t.coll != nil {
		t.coll.Close()
	}
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return fmt.Sprint(p)
}
