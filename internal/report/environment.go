package report

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/sysctl"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// HostSysctls are the global settings that change what receive-path
// experiments measure; every result records them.
var HostSysctls = []string{
	"net.core.busy_read", "net.core.busy_poll", "net.core.netdev_max_backlog",
	"net.core.netdev_budget", "net.core.netdev_budget_usecs", "net.core.rps_sock_flow_entries",
	"kernel.sched_autogroup_enabled",
}

// Host describes the machine, for the result of a run.
func Host(version string) *experimentv1.HostEnvironment {
	h := &experimentv1.HostEnvironment{Arch: runtime.GOARCH, Cpus: int32(runtime.NumCPU()), LabctlVersion: version, Sysctls: ReadSysctls(HostSysctls)}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
		h.Hostname = unix.ByteSliceToString(u.Nodename[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// ReadSysctls reads sysctls by key; keys that do not exist (in this
// namespace, on this kernel) are left out. /proc/sys/net follows the network
// namespace of the reading thread.
func ReadSysctls(keys []string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, err := sysctl.Read(k); err == nil {
			out[k] = v
		}
	}
	return out
}

// Node describes the current network namespace: its interfaces with the
// settings that change a measurement, the given sysctls, and the packet
// sockets open in it.
func Node(ctx context.Context, node string, sysctls []string) *experimentv1.NodeEnvironment {
	env := &experimentv1.NodeEnvironment{Node: node, Sysctls: ReadSysctls(sysctls), PinnedCpu: -1, PacketSockets: packetSockets()}
	links, err := netlink.LinkList()
	if err != nil {
		return env
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	for _, l := range links {
		a := l.Attrs()
		i := &experimentv1.Interface{Name: a.Name, Kind: l.Type(), Mtu: int32(a.MTU), RxQueues: int32(a.NumRxQueues),
			TxQueues: int32(a.NumTxQueues), Xdp: a.Xdp != nil && a.Xdp.Attached}
		if l.Type() == "device" && a.Name == "lo" {
			i.Kind = "loopback"
		}
		if addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL); err == nil {
			for _, ad := range addrs {
				if ad.IP.IsLinkLocalUnicast() {
					continue
				}
				i.Addresses = append(i.Addresses, ad.IPNet.String())
			}
		}
		if qs, err := netlink.QdiscList(l); err == nil {
			for _, q := range qs {
				if q.Attrs().Parent == netlink.HANDLE_ROOT {
					i.Qdisc = q.Type()
				}
			}
		}
		i.OffloadsOn = offloadsOn(ctx, a.Name)
		env.Interfaces = append(env.Interfaces, i)
	}
	return env
}

// offloadNames maps ethtool -k's long feature names to the short names a
// topology uses.
var offloadNames = map[string]string{
	"generic-receive-offload": "gro", "generic-segmentation-offload": "gso", "tcp-segmentation-offload": "tso",
	"large-receive-offload": "lro", "scatter-gather": "sg", "tx-checksumming": "tx-checksum",
	"rx-checksumming": "rx-checksum", "rx-gro-list": "rx-gro-list", "rx-udp-gro-forwarding": "rx-udp-gro-forwarding",
	"rx-gro-hw": "rx-gro-hw", "receive-hashing": "rxhash",
}

// offloadsOn runs ethtool -k; a machine without ethtool reports none.
func offloadsOn(ctx context.Context, dev string) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ethtool", "-k", dev).Output()
	if err != nil {
		return nil
	}
	var on []string
	for _, line := range bytes.Split(out, []byte("\n")) {
		name, state, ok := strings.Cut(strings.TrimSpace(string(line)), ": ")
		if short, known := offloadNames[name]; ok && known && strings.HasPrefix(state, "on") {
			on = append(on, short)
		}
	}
	sort.Strings(on)
	return on
}

// packetSockets counts AF_PACKET sockets in the current namespace (tcpdump
// and friends); /proc/thread-self follows the calling thread's namespace.
func packetSockets() int32 {
	b, err := os.ReadFile("/proc/thread-self/net/packet")
	if err != nil {
		return 0
	}
	return int32(max(bytes.Count(b, []byte("\n"))-1, 0))
}
