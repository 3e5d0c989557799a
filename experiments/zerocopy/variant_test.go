package zerocopy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/sock"
)

func TestVariantNames(t *testing.T) {
	tests := []struct {
		v    variant
		name string
	}{
		{variant{"veth", sendfile, read, 64 << 10}, "veth/sendfile/read/64KiB"},
		{variant{"lo", msgZerocopy, tcpzc, 1 << 20}, "lo/msg_zerocopy/tcp_zerocopy/1MiB"},
		{variant{"bridge", uringSendZCFixed, recvTrunc, 4 << 10}, "bridge/uring_send_zc_fixed/recv_trunc/4KiB"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.name {
			t.Errorf("%+v.String() = %q, want %q", tt.v, got, tt.name)
		}
		back, err := parseVariant(tt.name)
		if err != nil || back != tt.v {
			t.Errorf("ParseVariant(%q) = %+v, %v", tt.name, back, err)
		}
	}
	for _, bad := range []string{"veth/sendfile/read", "veth/sendfile/read/64Q", ""} {
		if _, err := parseVariant(bad); err == nil {
			t.Errorf("ParseVariant(%q) accepted", bad)
		}
	}
}

// Every path with a baseline is judged against a path of the same source
// that copies; copy paths have none.
func TestBaselines(t *testing.T) {
	for _, p := range sendPaths {
		b := baseline(p)
		switch {
		case b == "":
			if zerocopySend(p) || p == sendfile || p == splice || p == mmapWrite {
				t.Errorf("%s has no baseline", p)
			}
		case fileBased(b) != fileBased(p):
			t.Errorf("%s (file %v) is judged against %s (file %v)", p, fileBased(p), b, fileBased(b))
		case baseline(b) != "":
			t.Errorf("baseline %s of %s has a baseline itself", b, p)
		}
	}
}

func quickstart(t *testing.T) experiments.Lab {
	t.Helper()
	return labtest.Example(t, "quickstart", map[string]string{"client": "n1", "server": "n2"})
}

func TestSteps(t *testing.T) {
	var e Experiment
	lab := quickstart(t)
	p, err := experiments.Validate(e.Spec(), map[string]string{
		"send": "write,msg_zerocopy", "recv": "read", "sizes": "4KiB,1MiB", "link": "lab,loopback", "repeats": "2"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, lab)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2*2*2*2 {
		t.Fatalf("%d steps, want 16", len(steps))
	}
	// Interleaved: every variant once per repeat, repeats in order.
	half := len(steps) / 2
	for i, s := range steps {
		if want := int32(i / half); s.GetRepeat() != want {
			t.Errorf("step %d (%s) is repeat %d, want %d", i, s.GetVariant(), s.GetRepeat(), want)
		}
		if i >= half && s.GetVariant() != steps[i-half].GetVariant() {
			t.Errorf("repeat 1 step %d is %s, repeat 0 had %s", i, s.GetVariant(), steps[i-half].GetVariant())
		}
	}
	for _, s := range steps {
		v, err := parseVariant(s.GetVariant())
		if err != nil {
			t.Fatal(err)
		}
		sp, err := experiments.Validate(e.Spec(), s.GetParams())
		if err != nil {
			t.Fatalf("step %s: params do not validate: %v", s.GetVariant(), err)
		}
		link, send, recv, size := stepVariant(experiments.As[params](sp))
		if send != v.Send || recv != v.Recv || size != v.Size {
			t.Errorf("step %s carries send %s recv %s size %d", s.GetVariant(), send, recv, size)
		}
		server, client := s.GetRoles()[0], s.GetRoles()[1]
		if server.GetRole() != "server" || client.GetRole() != "client" || client.GetNode() != "n1" {
			t.Errorf("step %s roles %v", s.GetVariant(), s.GetRoles())
		}
		switch v.Link {
		case "lo":
			if link != linkLoopback || server.GetNode() != "n1" || server.GetAddress() != "127.0.0.1" {
				t.Errorf("loopback step %s: link %s, server on %s at %s", s.GetVariant(), link, server.GetNode(), server.GetAddress())
			}
		case "veth":
			addr, err := netip.ParseAddr(server.GetAddress())
			if link != linkLab || server.GetNode() != "n2" || err != nil || !netip.MustParsePrefix("198.18.0.0/15").Contains(addr) {
				t.Errorf("veth step %s: link %s, server on %s at %s", s.GetVariant(), link, server.GetNode(), server.GetAddress())
			}
		default:
			t.Errorf("step %s: link %q", s.GetVariant(), v.Link)
		}
	}
}

func TestStepsRefusesLabLinkOnOneNode(t *testing.T) {
	var e Experiment
	lab := quickstart(t)
	lab.Roles["server"] = "n1"
	p, _ := experiments.Validate(e.Spec(), nil)
	if _, err := e.Steps(p, lab); err == nil || !strings.Contains(err.Error(), "link=loopback") {
		t.Errorf("Steps with both roles on n1 and link=lab: %v", err)
	}
	p, _ = experiments.Validate(e.Spec(), map[string]string{"link": "loopback"})
	if _, err := e.Steps(p, lab); err != nil {
		t.Errorf("Steps with both roles on n1 and link=loopback: %v", err)
	}
}

// The defaults must finish in under a minute on a 2-core machine: bound
// the measured time (what the runner estimates) well below it.
func TestDefaultsFitAMinute(t *testing.T) {
	var e Experiment
	p, _ := experiments.Validate(e.Spec(), nil)
	steps, err := e.Steps(p, quickstart(t))
	if err != nil {
		t.Fatal(err)
	}
	c := experiments.As[params](p)
	total := time.Duration(len(steps)) * (c.Duration + c.Warmup)
	if total > 40*time.Second {
		t.Errorf("defaults: %d steps measure %v in all", len(steps), total)
	}
}

func TestTally(t *testing.T) {
	tests := []struct {
		name              string
		completions       []sock.Completion
		notifications     []bool
		completed, copied int64
		ratio             float64
	}{
		{name: "nothing"},
		{name: "veth: every range copied", completions: []sock.Completion{{Lo: 0, Hi: 31, Copied: true}, {Lo: 32, Hi: 32, Copied: true}}, completed: 33, copied: 33, ratio: 1},
		{name: "NIC: none copied", completions: []sock.Completion{{Lo: 0, Hi: 9}, {Lo: 10, Hi: 19}}, completed: 20, ratio: 0},
		{name: "range across the counter wrap", completions: []sock.Completion{{Lo: 0xfffffffe, Hi: 1, Copied: true}, {Lo: 2, Hi: 5}}, completed: 8, copied: 4, ratio: 0.5},
		{name: "SEND_ZC notifications", notifications: []bool{true, false, true, true}, completed: 4, copied: 3, ratio: 0.75},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var z zcTally
			z.add(tt.completions)
			for _, c := range tt.notifications {
				z.addNotification(c)
			}
			if z.Completed != tt.completed || z.Copied != tt.copied || z.ratio() != tt.ratio {
				t.Errorf("tally %+v ratio %v, want completed %d copied %d ratio %v", z, z.ratio(), tt.completed, tt.copied, tt.ratio)
			}
		})
	}
}
