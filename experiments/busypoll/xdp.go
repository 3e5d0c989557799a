package busypoll

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// xdpPass is the experiment's XDP program attached to one interface: it
// counts the packets it sees in a per-CPU array and passes every one. Its
// only purpose is to make a veth receive through NAPI (veth_xdp_set turns
// NAPI on for a device with an XDP program, Linux 4.19+); the count proves
// the program ran on the packets of the run.
type xdpPass struct {
	iface  string
	counts *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
}

// attachXDP loads the program and attaches it to the interface in driver
// mode (generic mode would not give the device a NAPI instance) with a BPF
// link. A BPF link is detached by the kernel when its last descriptor
// closes, which includes the death of the process: an agent killed with
// SIGKILL leaves no program attached, so no journal record is needed to
// undo it, unlike an attachment through the netlink API, which outlives
// its creator.
func attachXDP(iface string, ifindex int) (*xdpPass, error) {
	counts, err := ebpf.NewMap(&ebpf.MapSpec{Name: "labctl_bp_cnt", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("XDP program for %s: counter map: %w", iface, err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "labctl_bp_pass",
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: passInstructions(counts.FD()),
	})
	if err != nil {
		counts.Close()
		return nil, fmt.Errorf("XDP program for %s: load: %w", iface, err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		prog.Close()
		counts.Close()
		return nil, fmt.Errorf("attach XDP program to %s in driver mode: %w", iface, err)
	}
	return &xdpPass{iface: iface, counts: counts, prog: prog, link: l}, nil
}

// passInstructions is the program:
//
//	key = 0; v = bpf_map_lookup_elem(counts, &key); if (v) *v += 1;
//	return XDP_PASS;
//
// The array is per CPU, so the increment needs no atomic operation.
func passInstructions(mapFD int) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
		asm.Return(),
	}
}

// Packets returns how many packets the program has seen, on all CPUs.
func (x *xdpPass) Packets() (uint64, error) {
	var perCPU []uint64
	if err := x.counts.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("XDP program on %s: read counter: %w", x.iface, err)
	}
	var n uint64
	for _, c := range perCPU {
		n += c
	}
	return n, nil
}

// Close detaches the program and frees it.
func (x *xdpPass) Close() error {
	return errors.Join(x.link.Close(), x.prog.Close(), x.counts.Close())
}

// xdpUnsupported tells a device that cannot run the program natively (or
// already runs another) from a real failure.
func xdpUnsupported(err error) bool {
	for _, e := range []error{unix.EOPNOTSUPP, unix.EINVAL, unix.EBUSY, unix.EEXIST, unix.ERANGE, ebpf.ErrNotSupported} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
