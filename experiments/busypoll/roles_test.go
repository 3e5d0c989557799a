package busypoll

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/sysctl"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

type pair struct {
	server, client       *experimentv1.RoleReport
	serverErr, clientErr error
}

// runPair runs both roles of one step over 127.0.0.1 in this process.
func runPair(t *testing.T, ctx context.Context, variant string, given map[string]string) pair {
	t.Helper()
	return runPairIn(t, ctx, variant, given, placement{serverAddr: netip.MustParseAddr("127.0.0.1")})
}

// placement puts the roles in namespaces ("": the test's own).
type placement struct {
	serverNS, clientNS string
	serverAddr         netip.Addr
}

// runPairIn runs both roles of one step in this process, each in its
// namespace and with a settings journal that is restored when the role
// returns, as the agent does.
func runPairIn(t *testing.T, ctx context.Context, variant string, given map[string]string, at placement) pair {
	t.Helper()
	p := validated(t, given)
	step := &experimentv1.Step{Variant: variant, Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "s", Address: at.serverAddr.String()}, {Role: "client", Node: "c"}}}
	nss := map[string]vnetns.NsHandle{"s": labtest.Named(t, at.serverNS), "c": labtest.Named(t, at.clientNS)}
	reports, errs := labtest.Roles(t, ctx, Experiment{}, step, p, labtest.RoleOptions{NS: func(node string) vnetns.NsHandle { return nss[node] }})
	return pair{server: reports["server"], client: reports["client"], serverErr: errs["server"], clientErr: errs["client"]}
}

func evidence(t *testing.T, r *experimentv1.RoleReport, name string) float64 {
	t.Helper()
	v, ok := report.EvidenceValue(r, name)
	if !ok {
		t.Errorf("%s report lacks evidence %s", r.GetRole(), name)
	}
	return v
}

func hostSysctl(t *testing.T, key string) string {
	t.Helper()
	v, err := sysctl.Read(key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRolesOnLoopback runs every data path over loopback, where no
// busy-poll knob can engage: the evidence must say so (NAPI id 0, no NAPI
// polls of lo, nothing busy polled) while the knobs themselves are set.
func TestRolesOnLoopback(t *testing.T) {
	privtest.Root(t)
	short := map[string]string{"duration": "100ms", "warmup": "10ms", "connections": "3", "napi_devices": "lo"}
	for _, tc := range []struct {
		variant  string
		sockPoll float64 // SO_BUSY_POLL the sockets report, µs
	}{
		{"loopback/blocking", 0},
		{"loopback/so_busy_poll-50us", 50},
		{"loopback/so_busy_poll_budget-30us-64pkts", 30},
		{"loopback/busy_read-40us", 40},
		{"loopback/epoll", 0},
		{"loopback/epoll_params-50us", 0},
		{"loopback/spin", 0},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			before := hostSysctl(t, "net.core.busy_read")
			r := runPair(t, context.Background(), tc.variant, short)
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("server: %v, client: %v", r.serverErr, r.clientErr)
			}
			if got := hostSysctl(t, "net.core.busy_read"); got != before {
				t.Errorf("net.core.busy_read is %s after the step, was %s", got, before)
			}
			if n := r.client.GetMetrics()["messages"]; n < 1 || r.server.GetMetrics()["messages"] != n {
				t.Errorf("client measured %v messages, server %v", n, r.server.GetMetrics()["messages"])
			}
			for _, m := range []string{"rtt_p50_ns", "rtt_p999_ns", "cpu_ns_per_msg", "vcsw_per_msg", "napi_polls_per_msg", "net_rx_softirqs_per_msg", "host_softirq_ns_per_msg", "busy_poll_rx_packets_per_msg"} {
				if _, ok := r.client.GetMetrics()[m]; !ok {
					t.Errorf("client report lacks %s", m)
				}
			}
			for _, rep := range []*experimentv1.RoleReport{r.server, r.client} {
				if id := evidence(t, rep, "napi_id"); id != 0 {
					t.Errorf("%s: loopback has no NAPI, yet napi_id is %v", rep.GetRole(), id)
				}
				if got := evidence(t, rep, "socket_busy_poll_us"); got != tc.sockPoll {
					t.Errorf("%s: socket SO_BUSY_POLL %v µs, want %v", rep.GetRole(), got, tc.sockPoll)
				}
				if evidence(t, rep, "socket_segs_in") < rep.GetMetrics()["messages"] {
					t.Errorf("%s: the sockets received fewer segments than messages", rep.GetRole())
				}
			}
			if polls := evidence(t, r.client, "napi_polls"); polls != 0 {
				t.Errorf("%v NAPI polls of lo: loopback receives through the per-CPU backlog, which is no device's NAPI", polls)
			}
			if strings.HasPrefix(tc.variant, "loopback/busy_read") {
				if got := evidence(t, r.server, "host_busy_read_us"); got != 40 {
					t.Errorf("host busy_read during the step: %v, want 40", got)
				}
				if !strings.Contains(strings.Join(r.server.GetNotes(), " "), "host-wide") {
					t.Errorf("server notes do not say busy_read is host-wide: %q", r.server.GetNotes())
				}
			}
			if tc.variant == "loopback/epoll_params-50us" {
				for _, rep := range []*experimentv1.RoleReport{r.server, r.client} {
					if got := evidence(t, rep, "epoll_busy_poll_us"); got != 50 {
						t.Errorf("%s: EPIOCGPARAMS says busy_poll_usecs %v, want 50", rep.GetRole(), got)
					}
				}
			}
			if tc.variant == "loopback/spin" && r.client.GetMetrics()["empty_recvs_per_msg"] <= 0 {
				t.Errorf("spin: recv never found the socket empty (%v per message)", r.client.GetMetrics()["empty_recvs_per_msg"])
			}
		})
	}
}

// TestCancelRestoresHostSysctl cancels a busy_read step while it runs:
// both roles return the context's error and the journal puts the host's
// busy_read back.
func TestCancelRestoresHostSysctl(t *testing.T) {
	privtest.Root(t)
	before := hostSysctl(t, "net.core.busy_read")
	want := "37"
	if before == want {
		want = "38"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan bool, 1)
	go func() {
		// Cancel once the server has set the sysctl.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if v, _ := sysctl.Read("net.core.busy_read"); v == want {
				time.Sleep(50 * time.Millisecond)
				cancel()
				seen <- true
				return
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		seen <- false
	}()
	r := runPair(t, ctx, "loopback/busy_read-"+want+"us", map[string]string{"duration": "1m", "warmup": "0s"})
	if !<-seen {
		t.Fatal("net.core.busy_read never took the step's value")
	}
	if r.clientErr == nil || r.serverErr == nil {
		t.Errorf("cancelled step: server %v, client %v; want both to fail", r.serverErr, r.clientErr)
	}
	if got := hostSysctl(t, "net.core.busy_read"); got != before {
		t.Errorf("net.core.busy_read is %s after the cancelled step, was %s", got, before)
	}
}

// TestCancelStopsEveryDataPath: a long step cancelled early must end both
// roles of each data path with an error, not leave one blocked in
// epoll_wait or spinning on recv.
func TestCancelStopsEveryDataPath(t *testing.T) {
	privtest.Root(t)
	for _, variant := range []string{"loopback/blocking", "loopback/epoll_params-50us", "loopback/spin"} {
		t.Run(variant, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			r := runPair(t, ctx, variant, map[string]string{"duration": "1m", "warmup": "0s", "napi_devices": "lo"})
			if r.serverErr == nil || r.clientErr == nil {
				t.Errorf("cancelled step: server %v, client %v; want both to fail", r.serverErr, r.clientErr)
			}
		})
	}
}
