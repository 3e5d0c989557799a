package zerocopy

import (
	"strings"
	"testing"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// cell is one variant's hand-made repeats: the sender's CPU per byte of
// each repeat and the evidence every repeat reports.
type cell struct {
	variant string
	cost    []float64
	client  map[string]float64 // evidence of the client
	server  map[string]float64 // evidence of the server
}

func results(cells ...cell) []*experimentv1.StepResult {
	var steps []*experimentv1.StepResult
	for r := 0; ; r++ {
		added := false
		for _, c := range cells {
			if r >= len(c.cost) {
				continue
			}
			added = true
			client := &experimentv1.RoleReport{Role: "client", Metrics: map[string]float64{"cpu_ns_per_byte": c.cost[r]}, Environment: &experimentv1.NodeEnvironment{}}
			server := &experimentv1.RoleReport{Role: "server", Metrics: map[string]float64{"cpu_ns_per_byte": 0.5}}
			for name, v := range c.client {
				report.AddEvidence(client, name, v, "", "test", "")
			}
			for name, v := range c.server {
				report.AddEvidence(server, name, v, "", "test", "")
			}
			steps = append(steps, &experimentv1.StepResult{
				Step:    &experimentv1.Step{Variant: c.variant, Repeat: int32(r)},
				Reports: []*experimentv1.RoleReport{server, client},
			})
		}
		if !added {
			return steps
		}
	}
}

var (
	sg       = map[string]float64{"egress_sg": 1}
	noSG     = map[string]float64{"egress_sg": 0}
	copied   = map[string]float64{"zc_sends": 100, "zc_completed": 100, "zc_copied": 100}
	zeroCopy = map[string]float64{"zc_sends": 100, "zc_completed": 100, "zc_copied": 0}
	high     = []float64{0.50, 0.52, 0.51, 0.53, 0.50}
	low      = []float64{0.30, 0.31, 0.29, 0.30, 0.32}
	overlap  = []float64{0.49, 0.55, 0.47, 0.52, 0.51}
	higher   = []float64{0.70, 0.72, 0.71, 0.69, 0.73}
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name    string
		cells   []cell
		outcome experimentv1.Outcome
		// engaged maps variants to the engagement their row must show.
		engaged map[string]experimentv1.Engagement
		// explain and notes must appear in the explanation and the notes
		// of the named rows.
		explain []string
		notes   map[string]string
	}{
		{
			name: "sendfile pays off from 64KiB",
			cells: []cell{
				{"veth/read_write/read/4KiB", high, nil, nil}, {"veth/sendfile/read/4KiB", overlap, sg, nil},
				{"veth/read_write/read/64KiB", high, nil, nil}, {"veth/sendfile/read/64KiB", low, sg, nil},
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/sendfile/read/1MiB", low, sg, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_HOLDS,
			engaged: map[string]experimentv1.Engagement{
				"veth/read_write/read/1MiB": experimentv1.Engagement_ENGAGEMENT_BASELINE,
				"veth/sendfile/read/1MiB":   experimentv1.Engagement_ENGAGEMENT_ENGAGED,
			},
			explain: []string{"Over veth, received with read: sendfile 0.3 vs 0.51 ns/B of sender CPU (read+write) at 1MiB, pays off from 64KiB."},
			notes: map[string]string{
				"veth/sendfile/read/4KiB": "undecided",
				"veth/sendfile/read/1MiB": "sender CPU per byte 0.3 vs 0.51 ns/B of read_write: 40.4% lower [",
			},
		},
		{
			name: "veth copies every MSG_ZEROCOPY send",
			cells: []cell{
				{"veth/write/read/64KiB", high, nil, nil}, {"veth/msg_zerocopy/read/64KiB", low, copied, nil},
				{"veth/write/read/1MiB", high, nil, nil}, {"veth/msg_zerocopy/read/1MiB", low, copied, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED,
			engaged: map[string]experimentv1.Engagement{
				"veth/write/read/1MiB":        experimentv1.Engagement_ENGAGEMENT_BASELINE,
				"veth/msg_zerocopy/read/1MiB": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED,
			},
			// The lower cost must not be credited to zero copy.
			explain: []string{"MSG_ZEROCOPY: zero-copy not achieved on this path (the kernel copied 1000 of 1000 sends)"},
			notes:   map[string]string{"veth/msg_zerocopy/read/1MiB": "zero-copy not achieved on this path: the kernel copied 500 of 500"},
		},
		{
			name: "on a NIC MSG_ZEROCOPY pays off for large writes",
			cells: []cell{
				{"nic/write/read/4KiB", high, nil, nil}, {"nic/msg_zerocopy/read/4KiB", higher, zeroCopy, nil},
				{"nic/write/read/64KiB", high, nil, nil}, {"nic/msg_zerocopy/read/64KiB", low, zeroCopy, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_HOLDS,
			engaged: map[string]experimentv1.Engagement{"nic/msg_zerocopy/read/4KiB": experimentv1.Engagement_ENGAGEMENT_ENGAGED},
			explain: []string{"MSG_ZEROCOPY 0.3 vs 0.51 ns/B", "pays off from 64KiB"},
			notes:   map[string]string{"nic/msg_zerocopy/read/4KiB": "0.71 vs 0.51 ns/B of write: 38.5% higher ["},
		},
		{
			name: "sendfile holds, MSG_ZEROCOPY copied: conditional",
			cells: []cell{
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/sendfile/read/1MiB", low, sg, nil},
				{"veth/write/read/1MiB", high, nil, nil}, {"veth/msg_zerocopy/read/1MiB", high, copied, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_CONDITIONAL,
			explain: []string{"pays off from 1MiB", "zero-copy not achieved on this path"},
		},
		{
			name: "undecided",
			cells: []cell{
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/splice/read/1MiB", overlap, sg, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_UNDECIDED,
			explain: []string{"splice 0.51 vs 0.51 ns/B", "at 1MiB, undecided: -1.9% ["},
			notes:   map[string]string{"veth/splice/read/1MiB": "undecided"},
		},
		{
			name: "sendfile holds, splice undecided: conditional",
			cells: []cell{
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/sendfile/read/1MiB", low, sg, nil}, {"veth/splice/read/1MiB", overlap, sg, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_CONDITIONAL,
			explain: []string{"sendfile 0.3 vs 0.51 ns/B of sender CPU (read+write) at 1MiB, pays off from 1MiB; splice 0.51 vs 0.51 ns/B of sender CPU (read+write) at 1MiB, undecided"},
		},
		{
			name: "undecided, and not engaged",
			cells: []cell{
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/splice/read/1MiB", overlap, sg, nil},
				{"veth/write/read/1MiB", high, nil, nil}, {"veth/msg_zerocopy/read/1MiB", low, copied, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_UNDECIDED,
		},
		{
			name: "one sentence per link and receive path",
			cells: []cell{
				{"veth/write/read/1MiB", high, nil, nil}, {"veth/msg_zerocopy/read/1MiB", low, copied, nil},
				{"lo/write/read/1MiB", high, nil, nil}, {"lo/msg_zerocopy/read/1MiB", low, copied, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED,
			explain: []string{"Over veth, received with read: MSG_ZEROCOPY: zero-copy not achieved on this path (the kernel copied 500 of 500 sends). Over lo, received with read: MSG_ZEROCOPY: zero-copy not achieved"},
		},
		{
			name: "sendfile judged on its send path when the receiver maps nothing",
			cells: []cell{
				{"veth/read_write/tcp_zerocopy/1MiB", high, nil, map[string]float64{"mapped_bytes": 0, "copied_bytes": 1e9}},
				{"veth/sendfile/tcp_zerocopy/1MiB", low, sg, map[string]float64{"mapped_bytes": 0, "copied_bytes": 1e9}},
			},
			outcome: experimentv1.Outcome_OUTCOME_HOLDS,
			engaged: map[string]experimentv1.Engagement{"veth/sendfile/tcp_zerocopy/1MiB": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
			explain: []string{"Over veth, received with tcp_zerocopy: sendfile 0.3 vs 0.51 ns/B"},
		},
		{
			name: "three repeats cannot decide",
			cells: []cell{
				{"veth/read_write/read/1MiB", high[:3], nil, nil}, {"veth/sendfile/read/1MiB", low[:3], sg, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_UNDECIDED,
			notes:   map[string]string{"veth/sendfile/read/1MiB": "too few"},
		},
		{
			name: "costs more refutes",
			cells: []cell{
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/sendfile/read/1MiB", low, sg, nil},
				{"veth/uring_send/read/1MiB", high, nil, nil}, {"veth/uring_send_zc/read/1MiB", higher, zeroCopy, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD,
			explain: []string{"io_uring SEND_ZC 0.71 vs 0.51 ns/B of sender CPU (io_uring SEND) at 1MiB, costs more"},
		},
		{
			name: "no scatter-gather: sendfile copies",
			cells: []cell{
				{"veth/read_write/read/1MiB", high, nil, nil}, {"veth/sendfile/read/1MiB", low, noSG, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED,
			engaged: map[string]experimentv1.Engagement{"veth/sendfile/read/1MiB": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
			explain: []string{"sendfile: the egress device has no scatter-gather"},
		},
		{
			name: "unsupported path",
			cells: []cell{
				{"veth/uring_send/read/1MiB", high, nil, nil},
				{"veth/uring_send_zc/read/1MiB", []float64{0}, map[string]float64{"unsupported": 22}, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED,
			engaged: map[string]experimentv1.Engagement{"veth/uring_send_zc/read/1MiB": experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED},
			explain: []string{"io_uring SEND_ZC: cannot run here"},
		},
		{
			name: "no baseline ran",
			cells: []cell{
				{"lo/sendfile/read/1MiB", low, sg, nil}, {"lo/write/read/4KiB", high, nil, nil}, {"lo/write/read/1MiB", low, nil, nil},
			},
			outcome: experimentv1.Outcome_OUTCOME_MEASURED,
			explain: []string{"nothing to compare", "C10: write from memory costs the sender 0.51 ns/B at 4KiB and 0.3 ns/B at 1MiB on lo"},
		},
		{
			name: "receive zero copy mapped nothing",
			cells: []cell{
				{"veth/write/tcp_zerocopy/1MiB", high, nil, map[string]float64{"mapped_bytes": 0, "copied_bytes": 1e9}},
				{"veth/msg_zerocopy/tcp_zerocopy/1MiB", high, zeroCopy, map[string]float64{"mapped_bytes": 9e8, "copied_bytes": 1e8}},
			},
			outcome: experimentv1.Outcome_OUTCOME_UNDECIDED,
			engaged: map[string]experimentv1.Engagement{
				"veth/write/tcp_zerocopy/1MiB":        experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED,
				"veth/msg_zerocopy/tcp_zerocopy/1MiB": experimentv1.Engagement_ENGAGEMENT_ENGAGED,
			},
			notes: map[string]string{
				"veth/write/tcp_zerocopy/1MiB":        "TCP_ZEROCOPY_RECEIVE mapped nothing: all 5000000000 bytes were copied",
				"veth/msg_zerocopy/tcp_zerocopy/1MiB": "TCP_ZEROCOPY_RECEIVE mapped 90% of the bytes",
			},
		},
	}
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, v := e.Judge(p, results(tt.cells...))
			if v.GetClaim() != "C11" || v.GetOutcome() != tt.outcome {
				t.Errorf("verdict %v on %s, want %v: %s", v.GetOutcome(), v.GetClaim(), tt.outcome, v.GetExplanation())
			}
			for _, want := range tt.explain {
				if !strings.Contains(v.GetExplanation(), want) {
					t.Errorf("explanation lacks %q:\n%s", want, v.GetExplanation())
				}
			}
			for variant, want := range tt.engaged {
				if got := report.Row(rows, variant).GetEngagement(); got != want {
					t.Errorf("%s: engagement %v, want %v (note %q)", variant, got, want, report.Row(rows, variant).GetNote())
				}
			}
			for variant, want := range tt.notes {
				if got := report.Row(rows, variant).GetNote(); !strings.Contains(got, want) {
					t.Errorf("%s: note %q lacks %q", variant, got, want)
				}
			}
		})
	}
}

func TestJudgeWarnsOfASaturatedHost(t *testing.T) {
	steps := results(cell{"veth/write/read/64KiB", low, map[string]float64{"host_idle_ratio": 0.01}, nil},
		cell{"veth/write/read/1MiB", low, map[string]float64{"host_idle_ratio": 0.4}, nil})
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	_, v := e.Judge(p, steps)
	if want := "less than 5% idle CPU during 5 of 10 steps"; !strings.Contains(v.GetExplanation(), want) {
		t.Errorf("explanation lacks %q: %s", want, v.GetExplanation())
	}
}

func TestJudgeReportsSpuriousRetransmissions(t *testing.T) {
	steps := results(cell{"veth/write/read/64KiB", low, map[string]float64{"tcp_retrans_segs": 100, "tcp_dsack_segs": 90}, nil},
		cell{"veth/write/read/1MiB", low, map[string]float64{"tcp_retrans_segs": 0}, nil})
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	_, v := e.Judge(p, steps)
	if want := "TCP retransmitted in 5 of 10 steps, 90% of the segments spuriously"; !strings.Contains(v.GetExplanation(), want) {
		t.Errorf("explanation lacks %q: %s", want, v.GetExplanation())
	}
}

func TestJudgeNotesPacketSockets(t *testing.T) {
	steps := results(cell{"veth/msg_zerocopy/read/64KiB", low, copied, nil})
	steps[0].Reports[1].Environment.PacketSockets = 2
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	rows, _ := e.Judge(p, steps)
	if note := rows[0].GetNote(); !strings.Contains(note, "2 packet socket(s) open in the client's node") {
		t.Errorf("note %q does not mention the packet sockets", note)
	}
}
