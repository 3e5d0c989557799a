package pktpath

import "fmt"

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
	case stageDevQueue:
		return "net_dev_queue"
	case stageStartXmit:
		return "net_dev_start_xmit"
	case stageNetifRx:
		return "netif_rx"
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
	name    string // as Stages and results name it
	section string // the program's name in the object
	since   [2]int
}

// The tracepoints (tp_btf) and the netfilter program, in path order.
var programs = []program{
	{"nf (LOCAL_OUT, POST_ROUTING, PRE_ROUTING, LOCAL_IN, FORWARD)", "nf_hook", [2]int{6, 4}},
	{"net_dev_queue", "dev_queue", [2]int{5, 5}},
	{"net_dev_start_xmit", "start_xmit", [2]int{5, 5}},
	{"netif_rx", "netif_rx", [2]int{5, 5}},
	{"netif_receive_skb", "receive", [2]int{5, 5}},
	{"tcp receive (tcp_probe)", "tcp_receive", [2]int{5, 5}},
	{"sk_data_ready", "data_ready", [2]int{6, 3}},
	{"reader wakeup (sched_waking)", "wakeup", [2]int{5, 5}},
	{"copy to user (skb_copy_datagram_iovec)", "copy", [2]int{5, 5}},
	{"drop (kfree_skb with its reason)", "drop", [2]int{5, 17}},
	{"consumed (consume_skb)", "consume", [2]int{5, 5}},
}
