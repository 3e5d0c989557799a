package pktpath

import (
	"fmt"
	"slices"
	"strings"
)

// Stage numbers as the programs report them (enum stage in bpf/pktpath.c).
const (
	stageNF = iota + 1
	stageDevQueue
	stageStartXmit
	stageNetifRx
	stageReceive
	stageTCPReceive
	stageDataReady
	stageWakeup
	stageCopy
	stageDrop
	stageConsume
	stageSYN
	stageCapture
	stageTCEgress
	stageGROEntry
)

// hooks are netfilter's IPv4 hooks, by number (enum nf_inet_hooks).
var hooks = []string{"PRE_ROUTING", "LOCAL_IN", "FORWARD", "LOCAL_OUT", "POST_ROUTING"}

// stageName is how a stage reads in spans and tables.
func stageName(stage uint16, hook uint8) string {
	switch stage {
	case stageNF:
		if int(hook) < len(hooks) {
			return "nf " + hooks[hook]
		}
		return fmt.Sprintf("nf hook %d", hook)
	case stageTCEgress:
		return "tc egress"
	case stageDevQueue:
		return "net_dev_queue"
	case stageStartXmit:
		return "net_dev_start_xmit"
	case stageNetifRx:
		return "netif_rx"
	case stageGROEntry:
		return "napi_gro_receive"
	case stageReceive:
		return "netif_receive_skb"
	case stageTCPReceive:
		return "tcp receive"
	case stageDataReady:
		return "sk_data_ready"
	case stageWakeup:
		return "reader wakeup"
	case stageCopy:
		return "copy to user"
	case stageDrop:
		return "drop"
	case stageConsume:
		return "consumed"
	case stageCapture:
		return "capture copy"
	}
	return fmt.Sprintf("stage %d", stage)
}

// A program is one stage's attachment; Stages lists them in path order,
// with the Linux version each needs (kernel.Feature), so that a kernel
// without one is reported by name.
type program struct {
	name    string // as Missing and results name it
	stage   uint16 // the stage it reports
	section string // the program's name in the object
	since   [2]int
	detail  Detail // the least Options.Stages that attaches it
}

// reports says whether p reports the stage called name (stageName).
func (p program) reports(name string) bool {
	if p.stage == stageNF {
		return strings.HasPrefix(name, "nf ")
	}
	return stageName(p.stage, 0) == name
}

// The tracepoints (tp_btf), the netfilter program and the devices' egress
// hook, in path order.
var programs = []program{
	{"nf (LOCAL_OUT, POST_ROUTING, PRE_ROUTING, LOCAL_IN, FORWARD)", stageNF, "nf_hook", [2]int{6, 4}, Drops},
	{"tc egress (tcx on the lab's devices)", stageTCEgress, "tc_egress", [2]int{6, 6}, Landmarks},
	{"net_dev_queue", stageDevQueue, "dev_queue", [2]int{5, 5}, Every},
	{"net_dev_start_xmit", stageStartXmit, "start_xmit", [2]int{5, 5}, Every},
	{"netif_rx", stageNetifRx, "netif_rx", [2]int{5, 5}, Every},
	{"napi_gro_receive (napi_gro_receive_entry)", stageGROEntry, "gro_entry", [2]int{5, 5}, Every},
	{"netif_receive_skb", stageReceive, "receive", [2]int{5, 5}, Every},
	{"tcp receive (tcp_probe)", stageTCPReceive, "tcp_receive", [2]int{5, 5}, Every},
	{"sk_data_ready", stageDataReady, "data_ready", [2]int{6, 3}, Every},
	{"reader wakeup (sched_waking)", stageWakeup, "wakeup", [2]int{5, 5}, Every},
	{"copy to user (skb_copy_datagram_iovec)", stageCopy, "copy", [2]int{5, 5}, Landmarks},
	{"drop (kfree_skb with its reason)", stageDrop, "drop", [2]int{5, 17}, Drops},
	{"consumed (consume_skb)", stageConsume, "consume", [2]int{5, 5}, Every},
}

// IsStage reports whether name is a stage a program reports.
func IsStage(name string) bool {
	return slices.ContainsFunc(programs, func(p program) bool { return p.reports(name) })
}

// DetailFor is what attaches every one of the named stages (as tables name
// them): the least Detail above Drops, and whether the netfilter stages
// (Options.Netfilter, not a Detail's) are among them.
func DetailFor(stages []string) (d Detail, netfilter bool) {
	d = Landmarks
	for _, s := range stages {
		for _, p := range programs {
			if !p.reports(s) {
				continue
			}
			if p.stage == stageNF {
				netfilter = true
			} else {
				d = max(d, p.detail)
			}
		}
	}
	return d, netfilter
}
