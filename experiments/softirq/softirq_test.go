package softirq

import (
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/report"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func TestVariantNames(t *testing.T) {
	for _, tc := range []struct {
		v    variant
		name string
	}{
		{variant{Iface: "plain0", Rate: 10000}, "plain0/10000pps"},
		{variant{Iface: "plain0"}, "plain0/flood"},
		{variant{Iface: "napi0", RPS: true}, "napi0/flood+rps"},
		{variant{Iface: "eth0", Backlog: 8}, "eth0/flood+backlog=8"},
		{variant{Iface: "eth0", RPS: true, Backlog: 8}, "eth0/flood+rps+backlog=8"},
	} {
		if got := tc.v.String(); got != tc.name {
			t.Errorf("%+v: %s, want %s", tc.v, got, tc.name)
		}
		back, err := parseVariant(tc.name)
		if err != nil || back != tc.v {
			t.Errorf("ParseVariant(%s) = %+v, %v", tc.name, back, err)
		}
	}
	for _, bad := range []string{"", "eth0", "/flood", "eth0/fast", "eth0/0pps", "eth0/flood+rss", "eth0/flood+backlog=x"} {
		if v, err := parseVariant(bad); err == nil {
			t.Errorf("ParseVariant(%q) = %+v, want an error", bad, v)
		}
	}
}

func TestVariantsExpandGroups(t *testing.T) {
	var names []string
	for _, v := range variants("eth0", []string{groupRPSBacklog, groupLoad, groupRPS}, []int{1000, 0}, 16) {
		names = append(names, v.String())
	}
	want := "eth0/1000pps eth0/flood eth0/flood+rps eth0/flood+rps+backlog=16"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("variants %s, want %s", got, want)
	}
}

func TestRPSMask(t *testing.T) {
	for _, tc := range []struct {
		param string
		cpus  []int
		want  string
		err   bool
	}{
		{"all", []int{0, 1}, "3", false},
		{"all", []int{0, 2, 5}, "25", false},
		{"2", []int{0, 1}, "2", false},
		{"0xF", []int{0, 1}, "f", false},
		{"0", []int{0, 1}, "", true},
		{"cpu1", []int{0, 1}, "", true},
		{"all", []int{64}, "", true},
	} {
		got, err := rpsMask(tc.param, tc.cpus)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("RPSMask(%q, %v) = %q, %v", tc.param, tc.cpus, got, err)
		}
	}
}

func TestSteps(t *testing.T) {
	lab := labtest.Example(t, "busy-poll", map[string]string{"client": "client", "server": "server"})
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"repeats": "2", "rates": "1000,0", "variants": "load,rps", "flood_duration": "200ms"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, lab)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.GetVariant()+"@"+s.GetRoles()[0].GetAddress()+"/"+s.GetParams()["duration"])
		if _, err := p.With(s.GetParams()); err != nil {
			t.Errorf("step %s: its parameters do not validate: %v", s.GetVariant(), err)
		}
	}
	one := "napi0/1000pps@198.18.0.2/300ms napi0/flood@198.18.0.2/200ms napi0/flood+rps@198.18.0.2/200ms " +
		"plain0/1000pps@198.18.0.6/300ms plain0/flood@198.18.0.6/200ms plain0/flood+rps@198.18.0.6/200ms"
	if want := one + " " + one; strings.Join(got, " ") != want {
		t.Errorf("steps\n%s\nwant\n%s", strings.Join(got, " "), want)
	}

	lab.Roles["server"] = "client"
	if _, err := e.Steps(p, lab); err == nil {
		t.Error("Steps accepted both roles on one node")
	}
	p, _ = experiments.Validate(e.Spec(), map[string]string{"rps_cpus": "zz"})
	lab.Roles["server"] = "server"
	if _, err := e.Steps(p, lab); err == nil || !strings.Contains(err.Error(), "rps_cpus") {
		t.Errorf("bad rps_cpus: %v", err)
	}
}

func TestSnapshotSub(t *testing.T) {
	t0 := time.Unix(100, 0)
	prev := snapshot{At: t0, CPUs: []int{0, 1},
		Softnet:  kstat.Softnet{CPUs: []kstat.SoftnetCPU{{CPU: 0, Processed: 10}, {CPU: 1, Processed: 5, Dropped: 1}}},
		Softirqs: kstat.Softirqs{CPUs: []int{0, 1}, Counts: map[string][]uint64{"NET_RX": {100, 50}}},
		IRQs:     kstat.Interrupts{CPUs: []int{0, 1}, IRQs: map[string]kstat.IRQ{"CAL": {PerCPU: []uint64{1, 1}, Total: 2}, "38": {PerCPU: []uint64{0, 7}, Total: 7, Desc: "PCI-MSIX 1-edge virtio2-input.0"}, "50": {PerCPU: []uint64{3, 0}, Total: 3, Desc: "PCI-MSIX 2-edge eth1-TxRx-0"}}},
		CPU:      kstat.CPUStat{CPUs: []kstat.CPUTimes{{CPU: 0, SoftIRQ: time.Second}, {CPU: 1}}},
		Polls:    []uint64{1, 1}, BacklogPolls: []uint64{0, 0}, DevicePolls: []uint64{1, 0},
		Ksoftirqd: map[int]time.Duration{0: time.Second, 1: 0},
		Links:     kstat.LinkStats{"eth1": {RxPackets: 10}},
		Net:       kstat.NetStat{"Udp.RcvbufErrors": 2},
	}
	cur := snapshot{At: t0.Add(time.Second), CPUs: []int{0, 1},
		Softnet:  kstat.Softnet{CPUs: []kstat.SoftnetCPU{{CPU: 0, Processed: 1010}, {CPU: 1, Processed: 25, Dropped: 4, TimeSqueeze: 2, ReceivedRPS: 9}}},
		Softirqs: kstat.Softirqs{CPUs: []int{0, 1}, Counts: map[string][]uint64{"NET_RX": {600, 60}}},
		IRQs:     kstat.Interrupts{CPUs: []int{0, 1}, IRQs: map[string]kstat.IRQ{"CAL": {PerCPU: []uint64{1, 10}, Total: 11}, "38": {PerCPU: []uint64{0, 9}, Total: 9, Desc: "PCI-MSIX 1-edge virtio2-input.0"}, "50": {PerCPU: []uint64{8, 0}, Total: 8, Desc: "PCI-MSIX 2-edge eth1-TxRx-0"}}},
		CPU:      kstat.CPUStat{CPUs: []kstat.CPUTimes{{CPU: 0, SoftIRQ: 1300 * time.Millisecond}, {CPU: 1, SoftIRQ: 20 * time.Millisecond}}},
		Polls:    []uint64{401, 11}, BacklogPolls: []uint64{400, 10}, DevicePolls: []uint64{1, 0},
		Ksoftirqd: map[int]time.Duration{0: time.Second + 100*time.Millisecond, 1: 10 * time.Millisecond},
		Links:     kstat.LinkStats{"eth1": {RxPackets: 1030}},
		Net:       kstat.NetStat{"Udp.RcvbufErrors": 5},
	}
	d := cur.Sub(prev, "eth1")
	want0 := cpuDelta{CPU: 0, Processed: 1000, NetRx: 500, Polls: 400, BacklogPolls: 400, SoftirqTime: 300 * time.Millisecond, Ksoftirqd: 100 * time.Millisecond}
	want1 := cpuDelta{CPU: 1, Processed: 20, Dropped: 3, TimeSqueeze: 2, ReceivedRPS: 9, NetRx: 10, Polls: 10, BacklogPolls: 10, CallIPIs: 9, SoftirqTime: 20 * time.Millisecond, Ksoftirqd: 10 * time.Millisecond}
	if len(d.PerCPU) != 2 || d.PerCPU[0] != want0 || d.PerCPU[1] != want1 {
		t.Errorf("per CPU:\n%+v\nwant\n%+v\n%+v", d.PerCPU, want0, want1)
	}
	if d.Total.Processed != 1020 || d.Total.NetRx != 510 || d.Total.CPU != -1 || d.Total.Ksoftirqd != 110*time.Millisecond {
		t.Errorf("total %+v", d.Total)
	}
	if d.DeviceIRQs != 7 || d.IfaceIRQs != 5 {
		t.Errorf("device IRQs %d, of eth1 %d; want 7 and 5", d.DeviceIRQs, d.IfaceIRQs)
	}
	if d.Links["eth1"].RxPackets != 1020 || d.Net["Udp.RcvbufErrors"] != 3 || d.Elapsed != time.Second {
		t.Errorf("node counters %+v %v, elapsed %v", d.Links, d.Net, d.Elapsed)
	}
}

func TestNamesIface(t *testing.T) {
	for _, tc := range []struct {
		desc, iface string
		want        bool
	}{
		{"PCI-MSIX-0000:00:03.0 1-edge eth0-TxRx-0", "eth0", true},
		{"IO-APIC 11-fasteoi eth0", "eth0", true},
		{"IO-APIC 11-fasteoi uhci_hcd:usb1, eth0", "eth0", true},
		{"PCI-MSIX 1-edge eth10-rx-0", "eth1", false},
		{"PCI-MSIX 1-edge virtio2-input.0", "eth0", false},
	} {
		if got := namesIface(tc.desc, tc.iface); got != tc.want {
			t.Errorf("namesIface(%q, %q) = %v", tc.desc, tc.iface, got)
		}
	}
}

// steps builds hand-made steps: for each variant, repeats server reports
// whose metrics come from f.
func steps(repeats int, variants []variant, f func(v variant, rep int) map[string]float64) []*experimentv1.StepResult {
	var out []*experimentv1.StepResult
	for rep := range repeats {
		for _, v := range variants {
			srv := &experimentv1.RoleReport{Role: "server", Metrics: f(v, rep)}
			if v.Backlog > 0 {
				report.AddEvidence(srv, "netdev_max_backlog", float64(v.Backlog), "packets", "", "")
			}
			cli := map[string]float64{"sender_polls_per_packet": 0.98}
			if v.RPS {
				cli["sender_polls_per_packet"] = 0.01
			}
			out = append(out, &experimentv1.StepResult{Step: &experimentv1.Step{Variant: v.String(), Repeat: int32(rep)},
				Reports: []*experimentv1.RoleReport{srv, {Role: "client", Metrics: cli}}})
		}
	}
	return out
}

var (
	low      = variant{Iface: "veth1", Rate: 1000}
	floodV   = variant{Iface: "veth1"}
	rps      = variant{Iface: "veth1", RPS: true}
	backlog  = variant{Iface: "veth1", Backlog: 8}
	both     = variant{Iface: "veth1", RPS: true, Backlog: 8}
	everyone = []variant{low, floodV, rps, backlog, both}
)

// veth is what a veth without GRO shows on 2 vCPUs: one poll per packet
// unless RPS moves the work, drops only with RPS, ksoftirqd only with RPS.
func veth(v variant, rep int) map[string]float64 {
	m := map[string]float64{"packets_per_poll": 0.9, "iface_irqs": 0, "delivered_per_s": 50e3 + float64(rep)*1e3,
		"softnet_dropped": 0, "ksoftirqd_share": 0, "ksoftirqd_ns": 0, "received_rps": 0, "backlog_polls": 1e4}
	if v.RPS {
		m["packets_per_poll"], m["received_rps"], m["delivered_per_s"] = 4.5, 3000, 40e3+float64(rep)*1e3
		m["ksoftirqd_share"], m["ksoftirqd_ns"] = 0.3+float64(rep)*0.01, 3e7
		if v.Backlog > 0 {
			m["softnet_dropped"] = 500
		}
	}
	return m
}

func TestJudge(t *testing.T) {
	outcomeOf := func(v *experimentv1.Verdict, id string) string {
		for _, part := range strings.Split(v.GetExplanation(), " C") {
			if strings.HasPrefix("C"+part, id+" ") {
				return strings.SplitN(strings.TrimPrefix("C"+part, id+" "), ":", 2)[0]
			}
		}
		return ""
	}
	for _, tc := range []struct {
		name     string
		steps    []*experimentv1.StepResult
		outcome  experimentv1.Outcome
		claims   map[string]string
		rpsState experimentv1.Engagement
		explain  string
	}{
		{"veth on 2 vCPUs", steps(5, everyone, veth), experimentv1.Outcome_OUTCOME_CONDITIONAL,
			map[string]string{"C4": "conditional", "C5": "conditional", "C6": "does not hold", "C18": "conditional"}, experimentv1.Engagement_ENGAGEMENT_ENGAGED,
			"at least 0.98 polls per datagram ran inside the sender's own send calls"},
		{"batching everywhere, RPS helps", steps(5, everyone, func(v variant, rep int) map[string]float64 {
			m := veth(v, rep)
			if v.Flood() {
				m["packets_per_poll"] = 8
			}
			if v.Backlog > 0 {
				m["softnet_dropped"] = 100
			}
			if v.RPS {
				m["delivered_per_s"] = 90e3 + float64(rep)*1e3
			}
			if v.Flood() {
				m["ksoftirqd_share"], m["ksoftirqd_ns"] = 0.2+float64(rep)*0.01, 2e7
			}
			return m
		}), experimentv1.Outcome_OUTCOME_HOLDS, map[string]string{"C4": "holds", "C5": "holds", "C6": "holds", "C18": "holds"}, experimentv1.Engagement_ENGAGEMENT_ENGAGED, "several packets"},
		{"RPS steered nothing", steps(5, everyone, func(v variant, rep int) map[string]float64 {
			m := veth(v, rep)
			m["received_rps"] = 0
			return m
		}), experimentv1.Outcome_OUTCOME_CONDITIONAL, map[string]string{"C6": "not engaged"}, experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED, "RPS steered nothing"},
		{"two repeats cannot decide", steps(2, everyone, veth), experimentv1.Outcome_OUTCOME_CONDITIONAL,
			map[string]string{"C6": "undecided", "C18": "undecided"}, experimentv1.Engagement_ENGAGEMENT_ENGAGED, "too few"},
		{"no ksoftirqd time", steps(5, []variant{low, floodV}, func(v variant, rep int) map[string]float64 { return veth(v, rep) }),
			experimentv1.Outcome_OUTCOME_DOES_NOT_HOLD, map[string]string{"C4": "does not hold", "C18": "does not hold"}, experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, ""},
		{"only a paced load", steps(3, []variant{low}, veth), experimentv1.Outcome_OUTCOME_INCONCLUSIVE, nil, experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, ""},
		{"background swamped the polls", steps(5, []variant{low, floodV}, func(v variant, rep int) map[string]float64 {
			m := veth(v, rep)
			delete(m, "packets_per_poll")
			return m
		}), experimentv1.Outcome_OUTCOME_CONDITIONAL, map[string]string{"C4": "inconclusive", "C18": "does not hold"}, experimentv1.Engagement_ENGAGEMENT_UNSPECIFIED, "background too high"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Experiment
			p, _ := experiments.Validate(e.Spec(), nil)
			rows, v := e.Judge(p, tc.steps)
			if v.GetOutcome() != tc.outcome {
				t.Errorf("outcome %v, want %v: %s", v.GetOutcome(), tc.outcome, v.GetExplanation())
			}
			if !strings.Contains(v.GetExplanation(), tc.explain) {
				t.Errorf("explanation lacks %q: %s", tc.explain, v.GetExplanation())
			}
			for id, want := range tc.claims {
				if got := outcomeOf(v, id); got != want {
					t.Errorf("%s: %q, want %q in %s", id, got, want, v.GetExplanation())
				}
			}
			if row := report.Row(rows, rps.String()); row != nil && row.GetEngagement() != tc.rpsState {
				t.Errorf("rps row: %v, want %v (%s)", row.GetEngagement(), tc.rpsState, row.GetNote())
			}
			if row := report.Row(rows, low.String()); row.GetEngagement() != experimentv1.Engagement_ENGAGEMENT_BASELINE {
				t.Errorf("load row: %v", row.GetEngagement())
			}
		})
	}
}

func TestJudgeBacklogNotHeld(t *testing.T) {
	s := steps(3, []variant{backlog}, veth)
	for _, st := range s {
		st.Reports[0].Evidence = nil
		report.AddEvidence(st.Reports[0], "netdev_max_backlog", 1000, "packets", "", "")
	}
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	rows, _ := e.Judge(p, s)
	if rows[0].GetEngagement() != experimentv1.Engagement_ENGAGEMENT_NOT_ENGAGED || !strings.Contains(rows[0].GetNote(), "read back 1000") {
		t.Errorf("row %v %q", rows[0].GetEngagement(), rows[0].GetNote())
	}
}

func TestParseFeatures(t *testing.T) {
	out := "Features for napi0:\nrx-checksumming: on\ngeneric-receive-offload: on\nrx-gro-hw: off [fixed]\nrx-udp-gro-forwarding: off\n"
	f := parseFeatures(out)
	if f["generic-receive-offload"] != "on" || f["rx-udp-gro-forwarding"] != "off" || f["rx-gro-hw"] != "off [fixed]" {
		t.Errorf("features %v", f)
	}
}

func TestOwnShare(t *testing.T) {
	for _, tc := range []struct {
		n, bg uint64
		b, d  time.Duration
		want  float64
		ok    bool
	}{
		{1000, 100, 100 * time.Millisecond, 300 * time.Millisecond, 700, true},
		{1000, 0, 100 * time.Millisecond, 300 * time.Millisecond, 1000, true},
		{1000, 100, 0, 300 * time.Millisecond, 1000, true},
		{1000, 200, 100 * time.Millisecond, 300 * time.Millisecond, 0, false}, // background 600 of 1000
		{0, 0, 100 * time.Millisecond, 300 * time.Millisecond, 0, false},
	} {
		got, ok := ownShare(tc.n, tc.bg, tc.b, tc.d)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ownShare(%d, %d, %v, %v) = %v, %v; want %v, %v", tc.n, tc.bg, tc.b, tc.d, got, ok, tc.want, tc.ok)
		}
	}
}
