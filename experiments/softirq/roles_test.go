package softirq

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/settings"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// pair makes two network namespaces joined by a veth (client end veth0
// 198.18.99.1/30, server end veth1 198.18.99.2/30).
func pair(t *testing.T) (client, server netns.NsHandle) {
	t.Helper()
	client, server = labtest.Netns(t), labtest.Netns(t)
	labtest.VethPair(t, labtest.End{NS: client, Name: "veth0", Addr: netip.MustParsePrefix("198.18.99.1/30")},
		labtest.End{NS: server, Name: "veth1", Addr: netip.MustParsePrefix("198.18.99.2/30")})
	return client, server
}

// hostScope runs a function on a thread of the test process's own network
// namespace, as the agent's Host scope runs it in the host's: threads
// that are not locked never leave it.
func hostScope(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// runStep runs the server and the client of one step of variant v, each
// in its namespace, as the agent does.
func runStep(t *testing.T, ctx context.Context, client, server netns.NsHandle, v variant, p experiments.Params) (srv, cli *experimentv1.RoleReport, serr, cerr error) {
	t.Helper()
	step := &experimentv1.Step{Variant: v.String(), Params: stepParams(p, v), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "server", Address: "198.18.99.2"}, {Role: "client", Node: "client"}}}
	nss := map[string]netns.NsHandle{"client": client, "server": server}
	reports, errs := labtest.Roles(t, ctx, Experiment{}, step, p, labtest.RoleOptions{
		NS: func(node string) netns.NsHandle { return nss[node] }, Settings: settings.Options{Host: hostScope}})
	return reports["server"], reports["client"], errs["server"], errs["client"]
}

func readBacklog(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRolesOnAVeth runs a paced step, a flood and a flood with a small
// backlog over a veth between two namespaces of the test's own, and checks
// that the counters saw the datagrams and the backlog limit is restored.
func TestRolesOnAVeth(t *testing.T) {
	client, server := pair(t)
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"duration": "200ms", "flood_duration": "200ms", "baseline": "50ms", "backlog": "7"})
	if err != nil {
		t.Fatal(err)
	}
	backlog := readBacklog(t)
	for _, v := range []variant{{Iface: "veth1", Rate: 5000}, {Iface: "veth1"}, {Iface: "veth1", Backlog: 7}} {
		t.Run(v.String(), func(t *testing.T) {
			srv, cli, serr, cerr := runStep(t, context.Background(), client, server, v, p)
			if serr != nil || cerr != nil {
				t.Fatalf("server: %v, client: %v", serr, cerr)
			}
			sm, cm := srv.GetMetrics(), cli.GetMetrics()
			t.Logf("client %v", cm)
			t.Logf("server %v", sm)
			t.Logf("notes %v", srv.GetNotes())
			if cm["sent_packets"] == 0 || sm["sent_packets"] != cm["sent_packets"] {
				t.Errorf("sent %v, server was told %v", cm["sent_packets"], sm["sent_packets"])
			}
			// The node's own counter is exact: every datagram crossed veth1
			// (plus a few packets of the control connection), or was
			// refused by the backlog, which the veth counts as the sender's
			// tx_dropped.
			if rx := sm["link_rx_packets"] + cm["link_tx_dropped"]; rx < cm["sent_packets"] || rx > cm["sent_packets"]+50 {
				t.Errorf("veth1 received %v packets (sender dropped %v) for %v sent", sm["link_rx_packets"], cm["link_tx_dropped"], cm["sent_packets"])
			}
			// Every datagram reached the socket, was dropped by it (receive
			// buffer full), or was dropped by a full backlog (softnet's
			// dropped, host-wide, so an upper bound on ours).
			if sm["delivered_packets"]+sm["udp_rcvbuf_errors"]+sm["softnet_dropped"] < cm["sent_packets"] {
				t.Errorf("delivered %v + socket drops %v + backlog drops %v < sent %v", sm["delivered_packets"], sm["udp_rcvbuf_errors"], sm["softnet_dropped"], cm["sent_packets"])
			}
			for _, m := range []string{"net_rx_softirqs", "napi_polls", "backlog_polls", "softnet_processed"} {
				if sm[m] < cm["sent_packets"]/64 {
					t.Errorf("%s = %v for %v datagrams", m, sm[m], cm["sent_packets"])
				}
			}
			if sm["iface_irqs"] != 0 {
				t.Errorf("a veth has no interrupt, yet %v were counted", sm["iface_irqs"])
			}
			if got, ok := report.EvidenceValue(srv, "netdev_max_backlog"); v.Backlog > 0 && (!ok || got != 7) {
				t.Errorf("netdev_max_backlog during the step: %v (recorded %v)", got, ok)
			}
			if got := readBacklog(t); got != backlog {
				t.Errorf("netdev_max_backlog is %s after the step, was %s", got, backlog)
			}
		})
	}
}

// TestCancelRestoresTheBacklog cancels a flood with a small backlog while
// it runs: the limit must be back to what it was.
func TestCancelRestoresTheBacklog(t *testing.T) {
	client, server := pair(t)
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), map[string]string{"flood_duration": "1s", "baseline": "0s", "backlog": "5"})
	before := readBacklog(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, serr, _ := runStep(t, ctx, client, server, variant{Iface: "veth1", Backlog: 5}, p)
		done <- serr
	}()
	deadline := time.Now().Add(5 * time.Second)
	for readBacklog(t) != "5" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if readBacklog(t) != "5" {
		t.Fatal("the step never set netdev_max_backlog")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the cancelled server returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancelled step did not end")
	}
	if got := readBacklog(t); got != before {
		t.Errorf("netdev_max_backlog is %s after the cancel, was %s", got, before)
	}
}
