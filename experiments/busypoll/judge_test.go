package busypoll

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// fake is one role's report in a hand-made step.
type fake struct {
	p50, cpu, vcsw float64 // client metrics
	napi, bp       float64 // evidence of both roles
	empty          float64 // client's empty recvs per message
	unsupported    string
}

func step(variant string, repeat int, f fake) *experimentv1.StepResult {
	mk := func(role string) *experimentv1.RoleReport {
		r := &experimentv1.RoleReport{Role: role, Metrics: map[string]float64{"cpu_ns_per_msg": f.cpu, "vcsw_per_msg": f.vcsw}}
		if f.unsupported != "" {
			r.Notes = []string{f.unsupported}
			report.AddEvidence(r, "unsupported", 1, "", "", f.unsupported)
			return r
		}
		if role == "client" {
			r.Metrics["rtt_p50_ns"] = f.p50
			r.Metrics["empty_recvs_per_msg"] = f.empty
		} else {
			r.Metrics["busy_poll_rx_packets_per_msg"] = f.bp / 1000
		}
		report.AddEvidence(r, "napi_id", f.napi, "", "", "")
		report.AddEvidence(r, "busy_poll_rx_packets", f.bp, "packets", "", "")
		return r
	}
	return &experimentv1.StepResult{Step: &experimentv1.Step{Variant: variant, Repeat: int32(repeat)},
		Reports: []*experimentv1.RoleReport{mk("server"), mk("client")}}
}

// repeats makes n interleaved repeats of each variant, the i-th with
// p50 base+i*jitter.
func repeats(n int, variants map[string]fake, jitter float64) []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	names := slices.Sorted(maps.Keys(variants))
	for i := range n {
		for _, v := range names {
			f := variants[v]
			f.p50 += float64(i) * jitter
			out = append(out, step(v, i, f))
		}
	}
	return out
}

func TestJudge(t *testing.T) {
	base := fake{p50: 60e3, cpu: 20e3, vcsw: 1}
	busy := fake{p50: 20e3, cpu: 20e3, vcsw: 0, napi: 8193, bp: 900}
	for _, tc := range []struct {
		name    string
		devices string
		steps   []*experimentv1.StepResult
		rows    map[string]experimentv1.Engagement
		notes   map[string]string
		outcome experimentv1.Outcome
		explain []string
	}{
		{
			name:    "engaged and faster where NAPI exists: conditional",
			devices: "loopback,veth-gro",
			steps: repeats(5, map[string]fake{
				"loopback/blocking": {p50: 30e3}, "loopback/busy_read-50us": {p50: 30e3},
				"veth-gro/blocking": base, "veth-gro/busy_read-50us": busy, "veth-gro/spin": {p50: 21e3, empty: 40},
			}, 100),
			rows: map[string]experimentv1.Engagement{
				"loopback/blocking": experimentv1.Engagement_ENGAGEMENT_BASELINE, "loopback/busy_read-50us": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED,
				"veth-gro/busy_read-50us": experimentv1.Engagement_ENGAGEMENT_ENGAGED, "veth-gro/spin": experimentv1.Engagement_ENGAGEMENT_ENGAGED,
			},
			notes:   map[string]string{"loopback/busy_read-50us": "busy polling not engaged: NAPI id 0", "veth-gro/busy_read-50us": "NAPI id 8193"},
			outcome: experimentv1.Outcome_OUTCOME_CONDITIONAL,
			explain: []string{"On veth-gro, busy_read took the median p50 RTT from 60.2 µs (blocking) to 20.2 µs (×0.34: 66.4% lower [", "NAPI id 8193",
				"a user-space spin on the same device: 21.2 µs", "not engaged on loopback"},
		},
		{
			name:    "engaged everywhere and faster: holds",
			devices: "veth-gro",
			steps:   repeats(5, map[string]fake{"veth-gro/blocking": base, "veth-gro/so_busy_poll-50us": busy}, 100),
			outcome: experimentv1.Outcome_OUTCOME_HOLDS,
			explain: []string{"1 of 1 engaged variants were faster"},
		},
		{
			name:    "nothing engaged: the run says nothing",
			devices: "loopback,veth",
			steps: repeats(5, map[string]fake{"loopback/blocking": {p50: 30e3}, "loopback/so_busy_poll-50us": {p50: 20e3},
				"veth/blocking": {p50: 40e3}, "veth/so_busy_poll-50us": {p50: 30e3}}, 100),
			rows:    map[string]experimentv1.Engagement{"veth/so_busy_poll-50us": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
			outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED,
			explain: []string{"says nothing", "not engaged on loopback, veth"},
		},
		{
			name:    "engaged but within the spread: undecided",
			devices: "veth-xdp",
			// The ranges overlap: jitter of 30 µs across repeats.
			steps:   repeats(5, map[string]fake{"veth-xdp/epoll": {p50: 40e3}, "veth-xdp/epoll_params-50us": {p50: 30e3, napi: 9000, bp: 500}}, 30e3),
			rows:    map[string]experimentv1.Engagement{"veth-xdp/epoll": experimentv1.Engagement_ENGAGEMENT_BASELINE, "veth-xdp/epoll_params-50us": experimentv1.Engagement_ENGAGEMENT_ENGAGED},
			outcome: experimentv1.Outcome_OUTCOME_UNDECIDED,
			explain: []string{"(×0.90: undecided: -10.0% [", "0 of 1 engaged variants were faster", "1 undecided"},
		},
		{
			name:    "engaged and slower: does not hold",
			devices: "veth-gro",
			steps:   repeats(5, map[string]fake{"veth-gro/blocking": base, "veth-gro/busy_read-50us": {p50: 90e3, napi: 8193, bp: 10}}, 100),
			outcome: experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD,
		},
		{
			name:    "NAPI id but nothing busy polled",
			devices: "veth-gro",
			steps:   repeats(3, map[string]fake{"veth-gro/blocking": base, "veth-gro/prefer_busy_poll-50us": {p50: 50e3, napi: 8193}}, 100),
			rows:    map[string]experimentv1.Engagement{"veth-gro/prefer_busy_poll-50us": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
			notes:   map[string]string{"veth-gro/prefer_busy_poll-50us": "BusyPollRxPackets did not grow: the softirq delivered"},
			outcome: experimentv1.Outcome_OUTCOME_NOT_ENGAGED,
		},
		{
			name:    "unsupported variant and a device the lab lacks",
			devices: "veth-gro,nic",
			steps: repeats(5, map[string]fake{"veth-gro/blocking": base, "veth-gro/busy_read-50us": busy,
				"veth-gro/epoll_params-50us": {unsupported: "EPIOCSPARAMS: not supported by this kernel"}}, 100),
			rows: map[string]experimentv1.Engagement{"veth-gro/epoll_params-50us": experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED, "nic": experimentv1.Engagement_ENGAGEMENT_UNSUPPORTED},
			notes: map[string]string{"veth-gro/epoll_params-50us": "EPIOCSPARAMS: not supported",
				"nic": "the lab has no nic path"},
			outcome: experimentv1.Outcome_OUTCOME_HOLDS,
			explain: []string{"could not measure veth-gro/epoll_params-50us, nic"},
		},
		{
			name:    "engaged in most repeats only",
			devices: "veth-xdp",
			steps: append(repeats(4, map[string]fake{"veth-xdp/blocking": base, "veth-xdp/busy_read-50us": busy}, 100),
				step("veth-xdp/blocking", 4, base), step("veth-xdp/busy_read-50us", 4, fake{p50: 70e3, napi: 8193})),
			rows:  map[string]experimentv1.Engagement{"veth-xdp/busy_read-50us": experimentv1.Engagement_ENGAGEMENT_ENGAGED},
			notes: map[string]string{"veth-xdp/busy_read-50us": "in 1 of 5 repeats the softirq delivered every packet"},
			// The repeat that did not engage is compared too: its 70 µs
			// overlaps the baseline.
			outcome: experimentv1.Outcome_OUTCOME_UNDECIDED,
		},
		{
			name:    "a timeout too short to engage, on a device where others did",
			devices: "veth-gro",
			steps: repeats(5, map[string]fake{"veth-gro/blocking": base, "veth-gro/busy_read-0us": {p50: 60e3, napi: 8193},
				"veth-gro/busy_read-50us": busy}, 100),
			rows:    map[string]experimentv1.Engagement{"veth-gro/busy_read-0us": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
			outcome: experimentv1.Outcome_OUTCOME_CONDITIONAL,
			explain: []string{"busy polling not engaged on veth-gro/busy_read-0us (see"},
		},
		{
			name:    "only baselines and spin: a measurement",
			devices: "loopback",
			steps:   repeats(2, map[string]fake{"loopback/blocking": {p50: 30e3}, "loopback/spin": {p50: 10e3, empty: 0}}, 100),
			rows:    map[string]experimentv1.Engagement{"loopback/spin": experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED},
			outcome: experimentv1.Outcome_OUTCOME_MEASURED,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, v := Experiment{}.Judge(validated(t, map[string]string{"devices": tc.devices}), tc.steps)
			for variant, want := range tc.rows {
				row := report.Row(rows, variant)
				if row == nil {
					t.Errorf("no row %s", variant)
					continue
				}
				if row.GetEngagement() != want {
					t.Errorf("%s: %v (%s), want %v", variant, row.GetEngagement(), row.GetNote(), want)
				}
			}
			for variant, want := range tc.notes {
				if row := report.Row(rows, variant); row == nil || !strings.Contains(row.GetNote(), want) {
					t.Errorf("%s: note %q, want it to contain %q", variant, row.GetNote(), want)
				}
			}
			if v.GetOutcome() != tc.outcome {
				t.Errorf("outcome %v, want %v: %s", v.GetOutcome(), tc.outcome, v.GetExplanation())
			}
			for _, want := range tc.explain {
				if !strings.Contains(v.GetExplanation(), want) {
					t.Errorf("explanation lacks %q:\n%s", want, v.GetExplanation())
				}
			}
		})
	}
}

func TestJudgeClaimsC2ForEpollOnly(t *testing.T) {
	steps := repeats(5, map[string]fake{"veth-gro/epoll": {p50: 60e3}, "veth-gro/epoll_params-50us": {p50: 20e3, napi: 1, bp: 1}}, 100)
	_, v := Experiment{}.Judge(validated(t, map[string]string{"devices": "veth-gro"}), steps)
	if v.GetClaim() != "C2" {
		t.Errorf("claim %q, want C2", v.GetClaim())
	}
}
