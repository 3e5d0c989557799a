package all

import (
	"strings"
	"testing"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/pktpath"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func stage(from, to string, packets int64, p50 float64) *experimentv1.StageTime {
	return &experimentv1.StageTime{From: from, To: to, Packets: packets, P50Ns: p50, P99Ns: 2 * p50}
}

// TestPacketEvidence: the experiments that read packet paths say what they
// saw in their verdicts, from the summary rows' paths (made up here the
// way internal/pktpath summarises them), and nothing without one.
func TestPacketEvidence(t *testing.T) {
	spin := &experimentv1.PacketPath{Packets: 40, Stages: []*experimentv1.StageTime{
		stage("tcp receive@n2", "sk_data_ready@n2", 40, 900), stage("sk_data_ready@n2", "copy to user@n2", 40, 1500)}}
	blocking := &experimentv1.PacketPath{Packets: 40, Stages: []*experimentv1.StageTime{
		stage("tcp receive@n2", "sk_data_ready@n2", 40, 900), stage("sk_data_ready@n2", "reader wakeup@n2", 40, 2100),
		stage("reader wakeup@n2", "copy to user@n2", 40, 4300)}}
	for _, tc := range []struct {
		experiment string
		rows       []*experimentv1.SummaryRow
		want       []string
	}{
		{"capture-order", []*experimentv1.SummaryRow{
			{Variant: "input", PacketPath: &experimentv1.PacketPath{Packets: 50, Stages: []*experimentv1.StageTime{
				stage("netif_rx@rx", "netif_receive_skb@rx", 50, 3000), stage("netif_receive_skb@rx", "nf PRE_ROUTING@rx", 50, 800),
				stage("nf PRE_ROUTING@rx", "nf LOCAL_IN@rx", 50, 900), stage("nf LOCAL_IN@rx", "drop@rx", 50, 200)},
				Drops: []*experimentv1.DropCount{{Reason: "NETFILTER_DROP", Location: "nf_hook_slow+0x4a", Node: "rx", Count: 50}}}},
			{Variant: "output", PacketPath: &experimentv1.PacketPath{Packets: 50, Stages: []*experimentv1.StageTime{
				stage("nf LOCAL_OUT@tx", "drop@tx", 50, 300)},
				Drops: []*experimentv1.DropCount{{Reason: "NETFILTER_DROP", Location: "nf_hook_slow+0x4a", Node: "tx", Count: 50}}}},
		}, []string{"INPUT: 50 traced packets, 50 came to netif_receive_skb", "50 dropped with NETFILTER_DROP (nf_hook_slow+0x4a on rx)",
			"OUTPUT: 50 traced packets, 50 dropped with NETFILTER_DROP (nf_hook_slow+0x4a on tx), 0 reached net_dev_queue"}},
		{"rr", []*experimentv1.SummaryRow{{Variant: "tcp", Metrics: map[string]*experimentv1.Spread{"client.rtt_p50_ns": {Median: 30000}},
			PacketPath: &experimentv1.PacketPath{Packets: 100, Stages: []*experimentv1.StageTime{
				stage("net_dev_queue@n1", "netif_rx@n2", 50, 2000), stage("netif_rx@n2", "copy to user@n2", 50, 4000),
				stage("copy to user@n2", "consumed@n2", 50, 500), stage("net_dev_queue@n2", "netif_rx@n1", 50, 2000),
				stage("netif_rx@n1", "copy to user@n1", 50, 4000)}}}},
			[]string{"add up to 12.0 µs per round trip", "the other 18.0 µs of the p50 (60%)"}},
		{"io-models", []*experimentv1.SummaryRow{{Variant: "blocking/tcp", PacketPath: blocking}, {Variant: "spin/tcp", PacketPath: spin}},
			[]string{"blocking/tcp: sk_data_ready → reader wakeup 2.1 µs, wakeup → copy to user 4.3 µs", "spin/tcp: no wakeup on the path"}},
	} {
		t.Run(tc.experiment, func(t *testing.T) {
			e, ok := Registry().Get(tc.experiment)
			if !ok {
				t.Fatalf("no experiment %s", tc.experiment)
			}
			pj, ok := e.(experiments.PacketJudged)
			if !ok {
				t.Fatalf("%s does not read packet paths", tc.experiment)
			}
			v := &experimentv1.Verdict{Explanation: "before"}
			pj.JudgePackets(tc.rows, v)
			for _, want := range tc.want {
				if !strings.Contains(v.GetExplanation(), want) {
					t.Errorf("verdict %q lacks %q", v.GetExplanation(), want)
				}
			}
			for _, r := range tc.rows {
				r.PacketPath = nil
			}
			v = &experimentv1.Verdict{Explanation: "before"}
			pj.JudgePackets(tc.rows, v)
			if v.GetExplanation() != "before" {
				t.Errorf("without packet paths the verdict changed: %q", v.GetExplanation())
			}
		})
	}
}

// TestPacketStagesExist: every stage a verdict reads is one the tracer
// reports, so that a sampled run attaches it (a misspelt stage would
// leave it out, and the verdict would read its absence as evidence).
func TestPacketStagesExist(t *testing.T) {
	r := Registry()
	for _, spec := range r.Specs() {
		e, _ := r.Get(spec.GetName())
		pj, ok := e.(experiments.PacketJudged)
		if !ok {
			continue
		}
		for _, s := range pj.PacketStages() {
			if !pktpath.IsStage(s) {
				t.Errorf("%s reads stage %q, which no program reports", spec.GetName(), s)
			}
		}
	}
}
