package pktpath

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// Drop reasons are named from the running kernel's BTF (enum
// skb_drop_reason), since their values change between kernels (NO_SOCKET
// is 3 on 6.18 and was 2 before NOT_SPECIFIED moved).
var dropReasons = sync.OnceValue(func() map[uint32]string {
	out := map[uint32]string{}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return out
	}
	var e *btf.Enum
	if err := spec.TypeByName("skb_drop_reason", &e); err != nil {
		return out
	}
	for _, v := range e.Values {
		out[uint32(v.Value)] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return out
})

func dropReason(v uint32) string {
	if name, ok := dropReasons()[v]; ok {
		return name
	}
	// The high 16 bits name a subsystem with its own enum (mac80211,
	// openvswitch).
	if sub := v >> 16; sub != 0 {
		return fmt.Sprintf("subsystem %d reason %d", sub, v&0xffff)
	}
	return fmt.Sprintf("reason %d", v)
}

type ksym struct {
	addr uint64
	name string
}

// ksyms are the kernel's text symbols, sorted, read once when the first
// drop or a tracer of every stage needs them (/proc/kallsyms has some
// 120,000 lines).
var ksyms = sync.OnceValue(func() []ksym {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []ksym
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		a, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil || a == 0 {
			continue // without privilege every address reads 0
		}
		out = append(out, ksym{a, fields[2]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
})

// symbol names a kernel address as function+offset.
func symbol(addr uint64) string {
	syms := ksyms()
	i := sort.Search(len(syms), func(i int) bool { return syms[i].addr > addr }) - 1
	if addr == 0 || i < 0 {
		return fmt.Sprintf("%#x", addr)
	}
	return fmt.Sprintf("%s+%#x", syms[i].name, addr-syms[i].addr)
}

// funcRange is the code of the kernel function name: from its address to
// the next symbol's.
func funcRange(name string) ([2]uint64, bool) {
	syms := ksyms()
	for i, k := range syms {
		if k.name == name && i+1 < len(syms) {
			return [2]uint64{k.addr, syms[i+1].addr}, true
		}
	}
	return [2]uint64{}, false
}
