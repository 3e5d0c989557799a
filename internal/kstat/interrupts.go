package kstat

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Interrupts is a snapshot of /proc/interrupts. Host-wide.
type Interrupts struct {
	// CPUs are the CPU numbers of the columns: the CPUs online when the
	// file was read.
	CPUs []int `json:"cpus"`
	// IRQs is keyed by the first column without its colon: an IRQ number
	// ("24") or an architecture counter ("NMI", "LOC", "RES").
	IRQs map[string]IRQ `json:"irqs"`
}

// IRQ is one row of /proc/interrupts.
type IRQ struct {
	// PerCPU holds one count per entry of Interrupts.CPUs; it is nil for
	// rows the kernel prints as one host-wide number (x86 ERR and MIS).
	PerCPU []uint64 `json:"per_cpu,omitempty"`
	// Total is the sum of PerCPU, or the host-wide number.
	Total uint64 `json:"total"`
	// Desc is the rest of the row with runs of spaces folded: the irq chip,
	// hardware IRQ and trigger, then the handlers' names, e.g.
	// "PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0" or, for architecture
	// counters, "Local timer interrupts".
	Desc string `json:"desc,omitempty"`
}

// ReadInterrupts reads /proc/interrupts.
func ReadInterrupts() (Interrupts, error) { return readFile("/proc/interrupts", ParseInterrupts) }

// ParseInterrupts parses /proc/interrupts: a header of online CPU names, then
// rows "NAME: count per CPU ... description". A row with a single count and
// no more (x86 ERR, MIS) is host-wide.
func ParseInterrupts(r io.Reader) (Interrupts, error) {
	sc := newScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Interrupts{}, err
		}
		return Interrupts{}, fmt.Errorf("empty input, want a CPU header")
	}
	cpus, err := parseCPUHeader(sc.Text())
	if err != nil {
		return Interrupts{}, err
	}
	in := Interrupts{CPUs: cpus, IRQs: map[string]IRQ{}}
	for line := 2; sc.Scan(); line++ {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return Interrupts{}, fmt.Errorf("line %d: no \"NAME:\" prefix in %q", line, sc.Text())
		}
		f := strings.Fields(rest)
		// Leading numeric fields are counts, at most one per CPU; the
		// description never starts with a bare number.
		var counts []uint64
		for _, v := range f[:min(len(f), len(cpus))] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				break
			}
			counts = append(counts, n)
		}
		irq := IRQ{Desc: strings.Join(f[len(counts):], " ")}
		switch {
		case len(counts) == len(cpus):
			irq.PerCPU = counts
			for _, c := range counts {
				irq.Total += c
			}
		case len(counts) == 1 && irq.Desc == "":
			irq.Total = counts[0]
		default:
			return Interrupts{}, fmt.Errorf("line %d: IRQ %s has %d counts for %d CPUs", line, name, len(counts), len(cpus))
		}
		in.IRQs[name] = irq
	}
	if err := sc.Err(); err != nil {
		return Interrupts{}, err
	}
	return in, nil
}

// Sub returns the interrupts counted since prev, for the CPUs present in
// both snapshots. The kernel keeps the counts as 32-bit unsigned ints; one
// wrap-around between the snapshots is accounted for. An IRQ missing from
// prev (requested in between) counts from 0.
func (in Interrupts) Sub(prev Interrupts) Interrupts {
	cpus, cur, old := commonCPUs(in.CPUs, prev.CPUs)
	d := Interrupts{CPUs: cpus, IRQs: make(map[string]IRQ, len(in.IRQs))}
	for name, irq := range in.IRQs {
		p := prev.IRQs[name]
		di := IRQ{Desc: irq.Desc}
		if irq.PerCPU == nil {
			di.Total = delta32(irq.Total, p.Total)
			d.IRQs[name] = di
			continue
		}
		di.PerCPU = make([]uint64, len(cpus))
		for i := range cpus {
			var before uint64
			if p.PerCPU != nil {
				before = p.PerCPU[old[i]]
			}
			di.PerCPU[i] = delta32(irq.PerCPU[cur[i]], before)
			di.Total += di.PerCPU[i]
		}
		d.IRQs[name] = di
	}
	return d
}

// TotalMatching sums the Total of every IRQ whose Desc contains substr, for
// example "virtio2-input" for the receive interrupts of one NIC queue or
// "eth0" for all of a driver's vectors named after the interface.
func (in Interrupts) TotalMatching(substr string) uint64 {
	var t uint64
	for _, irq := range in.IRQs {
		if strings.Contains(irq.Desc, substr) {
			t += irq.Total
		}
	}
	return t
}
