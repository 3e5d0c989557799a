package softirq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/labctl/labctl/internal/kstat"
)

// noDevice is the dev_name the napi:napi_poll tracepoint records for a NAPI
// instance without a device: the per-CPU backlog (process_backlog), which
// netif_rx and RPS queue packets to (include/trace/events/napi.h).
const noDevice = "(no_device)"

// openDevicePolls counts, on every CPU, the napi:napi_poll hits of the NAPI
// instances whose dev_name is dev, with a filter the kernel evaluates, so
// no record leaves it: it tells the backlog's polls from a device's.
func openDevicePolls(dev string) (*kstat.TracepointCounter, error) {
	// The filter grammar quotes strings in double quotes without escapes;
	// Linux allows quotes in interface names, the filter cannot hold them.
	if strings.ContainsAny(dev, `"\`) {
		return nil, fmt.Errorf("napi:napi_poll filter: device name %q has a quote or backslash", dev)
	}
	return kstat.OpenTracepoint("napi", "napi_poll", kstat.WithFilter(fmt.Sprintf(`dev_name == "%s"`, dev)))
}

// probe holds the host-wide counters a step reads before and after, and
// the node's own.
type probe struct {
	cpus      []int
	all       *kstat.TracepointCounter
	backlog   *kstat.TracepointCounter
	device    *kstat.TracepointCounter
	ksoftirqd []kstat.Ksoftirqd
	iface     string
}

// openProbe opens the poll counters (all polls, the backlog's, iface's)
// and finds the ksoftirqd threads. Close it when done.
func openProbe(iface string) (*probe, error) {
	cpus, err := kstat.ReadOnlineCPUs()
	if err != nil {
		return nil, err
	}
	p := &probe{cpus: cpus, iface: iface}
	if p.all, err = kstat.OpenTracepoint("napi", "napi_poll"); err != nil {
		return nil, err
	}
	if p.backlog, err = openDevicePolls(noDevice); err != nil {
		p.Close()
		return nil, err
	}
	if p.device, err = openDevicePolls(iface); err != nil {
		p.Close()
		return nil, err
	}
	if p.ksoftirqd, err = kstat.FindKsoftirqd(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *probe) Close() {
	if p.all != nil {
		p.all.Close()
	}
	if p.backlog != nil {
		p.backlog.Close()
	}
	if p.device != nil {
		p.device.Close()
	}
}

// snapshot is one reading of every counter a step reports.
type snapshot struct {
	At       time.Time
	Softnet  kstat.Softnet
	Softirqs kstat.Softirqs
	IRQs     kstat.Interrupts
	CPU      kstat.CPUStat
	// Polls, BacklogPolls and DevicePolls have one count per CPU of
	// CPUs: every napi_poll, the backlog's, the interface's.
	CPUs                             []int
	Polls, BacklogPolls, DevicePolls []uint64
	// Ksoftirqd is the CPU time of ksoftirqd/N by CPU.
	Ksoftirqd map[int]time.Duration
	// Links and Net are the node's own (per namespace).
	Links kstat.LinkStats
	Net   kstat.NetStat
}

// read takes a snapshot; the host-wide files first, the node's last.
func (p *probe) read() (snapshot, error) {
	s := snapshot{At: time.Now(), CPUs: p.cpus, Ksoftirqd: map[int]time.Duration{}}
	var err error
	if s.Softnet, err = kstat.ReadSoftnet(); err != nil {
		return s, err
	}
	if s.Softirqs, err = kstat.ReadSoftirqs(); err != nil {
		return s, err
	}
	if s.IRQs, err = kstat.ReadInterrupts(); err != nil {
		return s, err
	}
	if s.CPU, err = kstat.ReadCPUStat(); err != nil {
		return s, err
	}
	all, err := p.all.Read()
	if err != nil {
		return s, err
	}
	backlog, err := p.backlog.Read()
	if err != nil {
		return s, err
	}
	device, err := p.device.Read()
	if err != nil {
		return s, err
	}
	s.Polls, s.BacklogPolls, s.DevicePolls = all.PerCPU, backlog.PerCPU, device.PerCPU
	for _, k := range p.ksoftirqd {
		st, err := kstat.ReadTaskStat(k.PID, k.PID)
		if err != nil {
			return s, fmt.Errorf("ksoftirqd/%d: %w", k.CPU, err)
		}
		s.Ksoftirqd[k.CPU] = st.CPUTime()
	}
	if s.Links, err = kstat.ReadLinkStats(nil); err != nil {
		return s, err
	}
	s.Net, err = kstat.ReadNetStat()
	return s, err
}

// cpuDelta is what one CPU did between two snapshots (CPU -1: all CPUs).
type cpuDelta struct {
	CPU int `json:"cpu"`
	// From softnet_stat: packets taken off the backlog or polled by NAPI,
	// backlog drops, budget exhaustions, RPS IPIs received.
	Processed, Dropped, TimeSqueeze, ReceivedRPS uint64
	// NetRx counts NET_RX softirq runs (/proc/softirqs).
	NetRx uint64
	// Polls counts napi_poll calls; BacklogPolls those of the per-CPU
	// backlog, DevicePolls those of the receiving interface's own NAPI.
	Polls, BacklogPolls, DevicePolls uint64
	// CallIPIs and ReschedIPIs are the x86 CAL and RES rows of
	// /proc/interrupts: RPS kicks a remote CPU with a function call IPI.
	CallIPIs, ReschedIPIs uint64
	// SoftirqTime is time spent in softirq context (/proc/stat, 10 ms
	// ticks); Ksoftirqd the CPU time of ksoftirqd/N (10 ms ticks), part of
	// SoftirqTime when ksoftirqd ran the softirqs.
	SoftirqTime, Ksoftirqd time.Duration
}

func (d *cpuDelta) add(o cpuDelta) {
	d.Processed += o.Processed
	d.Dropped += o.Dropped
	d.TimeSqueeze += o.TimeSqueeze
	d.ReceivedRPS += o.ReceivedRPS
	d.NetRx += o.NetRx
	d.Polls += o.Polls
	d.BacklogPolls += o.BacklogPolls
	d.DevicePolls += o.DevicePolls
	d.CallIPIs += o.CallIPIs
	d.ReschedIPIs += o.ReschedIPIs
	d.SoftirqTime += o.SoftirqTime
	d.Ksoftirqd += o.Ksoftirqd
}

// delta is what happened between two snapshots.
type delta struct {
	Elapsed time.Duration
	PerCPU  []cpuDelta
	Total   cpuDelta
	// DeviceIRQs counts the hard interrupts of every device on the host
	// (the numbered rows of /proc/interrupts); IfaceIRQs those whose
	// handler names the receiving interface (none for a veth, which has no
	// interrupt).
	DeviceIRQs, IfaceIRQs uint64
	// Links and Net are the node's own counters.
	Links kstat.LinkStats
	Net   kstat.NetStat
}

// Sub returns what happened from prev to s, for the interface iface.
func (s snapshot) Sub(prev snapshot, iface string) delta {
	d := delta{Elapsed: s.At.Sub(prev.At), Total: cpuDelta{CPU: -1}, Links: s.Links.Sub(prev.Links), Net: s.Net.Sub(prev.Net)}
	softnet := map[int]kstat.SoftnetCPU{}
	for _, c := range s.Softnet.Sub(prev.Softnet).CPUs {
		softnet[c.CPU] = c
	}
	sirq := s.Softirqs.Sub(prev.Softirqs)
	irqs := s.IRQs.Sub(prev.IRQs)
	cpuTimes := map[int]kstat.CPUTimes{}
	for _, c := range s.CPU.Sub(prev.CPU).CPUs {
		cpuTimes[c.CPU] = c
	}
	for i, cpu := range s.CPUs {
		c := cpuDelta{CPU: cpu,
			Processed: softnet[cpu].Processed, Dropped: softnet[cpu].Dropped,
			TimeSqueeze: softnet[cpu].TimeSqueeze, ReceivedRPS: softnet[cpu].ReceivedRPS,
			NetRx:       perCPU(sirq.CPUs, sirq.Counts["NET_RX"], cpu),
			CallIPIs:    perCPU(irqs.CPUs, irqs.IRQs["CAL"].PerCPU, cpu),
			ReschedIPIs: perCPU(irqs.CPUs, irqs.IRQs["RES"].PerCPU, cpu),
			SoftirqTime: cpuTimes[cpu].SoftIRQ,
			Ksoftirqd:   s.Ksoftirqd[cpu] - prev.Ksoftirqd[cpu],
		}
		if i < len(s.Polls) && i < len(prev.Polls) {
			c.Polls = s.Polls[i] - prev.Polls[i]
			c.BacklogPolls = s.BacklogPolls[i] - prev.BacklogPolls[i]
			c.DevicePolls = s.DevicePolls[i] - prev.DevicePolls[i]
		}
		d.PerCPU = append(d.PerCPU, c)
		d.Total.add(c)
	}
	for name, irq := range irqs.IRQs {
		if _, err := strconv.Atoi(name); err != nil {
			continue // an architecture counter (LOC, RES, CAL, ...)
		}
		d.DeviceIRQs += irq.Total
		if namesIface(irq.Desc, iface) {
			d.IfaceIRQs += irq.Total
		}
	}
	return d
}

// perCPU picks cpu's count from counts laid out as cpus.
func perCPU(cpus []int, counts []uint64, cpu int) uint64 {
	for i, c := range cpus {
		if c == cpu && i < len(counts) {
			return counts[i]
		}
	}
	return 0
}

// namesIface reports whether an interrupt's handler list names iface, as
// NIC drivers name their vectors ("eth0", "eth0-TxRx-0", "eth0-rx-1").
func namesIface(desc, iface string) bool {
	for _, f := range strings.Fields(desc) {
		for _, h := range strings.Split(f, ",") {
			if h == iface || strings.HasPrefix(h, iface+"-") {
				return true
			}
		}
	}
	return false
}
