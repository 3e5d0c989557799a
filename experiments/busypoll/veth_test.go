package busypoll

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/netns"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// vethPair makes two namespaces of the test's own joined by a veth pair
// (bpa in the first, 198.18.200.1/30; bpb in the second, .2), optionally
// with GRO on at both ends, and removes them at cleanup.
func vethPair(t *testing.T, gro bool) (client, server string) {
	t.Helper()
	privtest.Root(t)
	if _, err := exec.LookPath("ethtool"); err != nil {
		privtest.Unavailable(t, "ethtool is not installed")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	client, server = "bpt-"+hex.EncodeToString(b)+"-c", "bpt-"+hex.EncodeToString(b)+"-s"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{client, server} {
		ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		ip("-n", ns, "link", "set", "lo", "up")
		if err := labtest.Mark(ns); err != nil { // swept if the test dies
			t.Fatal(err)
		}
	}
	ip("-n", client, "link", "add", "bpa", "type", "veth", "peer", "name", "bpb", "netns", server)
	ip("-n", client, "addr", "add", "198.18.200.1/30", "dev", "bpa")
	ip("-n", server, "addr", "add", "198.18.200.2/30", "dev", "bpb")
	ip("-n", client, "link", "set", "bpa", "up")
	ip("-n", server, "link", "set", "bpb", "up")
	if gro {
		for ns, dev := range map[string]string{client: "bpa", server: "bpb"} {
			if out, err := exec.Command("ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on").CombinedOutput(); err != nil {
				t.Fatalf("ethtool -K %s gro on: %v\n%s", dev, err, out)
			}
		}
	}
	return client, server
}

func offloadIn(t *testing.T, ns, dev, name string) string {
	t.Helper()
	var state string
	err := netns.Do(ns, func() (err error) {
		state, err = offloadState(context.Background(), dev, name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return state
}

func xdpAttached(t *testing.T, ns, dev string) bool {
	t.Helper()
	var on bool
	err := netns.Do(ns, func() error {
		l, err := netlink.LinkByName(dev)
		if err == nil {
			on = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return on
}

func TestXDPPassCountsAndDetaches(t *testing.T) {
	client, server := vethPair(t, false)
	var x *xdpPass
	err := netns.Do(server, func() error {
		l, err := netlink.LinkByName("bpb")
		if err != nil {
			return err
		}
		x, err = attachXDP("bpb", l.Attrs().Index)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if !xdpAttached(t, server, "bpb") {
		t.Fatal("no XDP program on bpb after attachXDP")
	}
	if out, err := exec.Command("ip", "netns", "exec", client, "ping", "-c3", "-i0.01", "-W1", "198.18.200.2").CombinedOutput(); err != nil {
		t.Fatalf("ping through the XDP program: %v\n%s", err, out)
	}
	n, err := x.Packets()
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Errorf("the program counted %d packets, want at least the 3 echo requests", n)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if xdpAttached(t, server, "bpb") {
		t.Error("XDP program still attached after Close")
	}
}

// TestVethConditions runs steps between two namespaces over a veth pair
// and checks the NAPI evidence of each condition, and that the offloads
// and the XDP program the roles changed are back as they were.
func TestVethConditions(t *testing.T) {
	short := map[string]string{"duration": "100ms", "warmup": "10ms", "napi_devices": "bpa,bpb"}
	for _, tc := range []struct {
		variant string
		gro     bool
		napi    bool
		// tso_on evidence during the step; -1: not checked (an XDP
		// program on one end of a veth takes TSO off its peer while it is
		// attached, so what a role sees depends on when the other detaches).
		tso float64
	}{
		{"veth/so_busy_poll-50us", false, false, 1},
		{"veth-gro-tso/so_busy_poll-50us", true, false, 1},
		{"veth-gro/so_busy_poll-50us", true, true, 0},
		{"veth-xdp/blocking", false, true, -1},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			client, server := vethPair(t, tc.gro)
			r := runPairIn(t, context.Background(), tc.variant, short, placement{serverNS: server, clientNS: client, serverAddr: netip.MustParseAddr("198.18.200.2")})
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("server: %v, client: %v", r.serverErr, r.clientErr)
			}
			for _, rep := range []*experimentv1.RoleReport{r.server, r.client} {
				if id := evidence(t, rep, "napi_id"); (id != 0) != tc.napi {
					t.Errorf("%s: napi_id %v; want a NAPI id: %v", rep.GetRole(), id, tc.napi)
				}
				if got := evidence(t, rep, "tso_on"); tc.tso >= 0 && got != tc.tso {
					t.Errorf("%s: tso_on %v during the step, want %v", rep.GetRole(), got, tc.tso)
				}
			}
			if polls := evidence(t, r.client, "napi_polls"); (polls > 0) != tc.napi {
				t.Errorf("%v NAPI polls of bpa and bpb; want polls: %v", polls, tc.napi)
			}
			if tc.variant == "veth-xdp/blocking" {
				for _, rep := range []*experimentv1.RoleReport{r.server, r.client} {
					if n := evidence(t, rep, "xdp_packets"); n < rep.GetMetrics()["messages"] {
						t.Errorf("%s: the XDP program saw %v packets for %v messages", rep.GetRole(), n, rep.GetMetrics()["messages"])
					}
				}
			}
			for ns, dev := range map[string]string{client: "bpa", server: "bpb"} {
				if got := offloadIn(t, ns, dev, "tso"); got != "on" {
					t.Errorf("%s: tso %s after the step, was on", dev, got)
				}
				if xdpAttached(t, ns, dev) {
					t.Errorf("%s: XDP program left attached", dev)
				}
			}
		})
	}
}
