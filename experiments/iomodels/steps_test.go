package iomodels

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		models []model
		protos []string
		idle   []int
		want   []string
		err    string
	}{
		{"plain comparison", []model{blocking, uringModel}, []string{protoTCP, protoUDP}, []int{0},
			[]string{"blocking/tcp", "uring/tcp", "blocking/udp", "uring/udp"}, ""},
		{"idle only for tcp multiplexers", []model{blocking, poll, epollLT}, []string{protoTCP, protoUDP}, []int{100, 0},
			[]string{"blocking/tcp", "poll/tcp", "epoll-lt/tcp", "blocking/udp", "poll/udp", "epoll-lt/udp", "poll/tcp/idle=100", "epoll-lt/tcp/idle=100"}, ""},
		{"scaling alone, repeats dropped", []model{selectModel, selectModel, spin}, []string{protoTCP}, []int{10, 1000, 10},
			[]string{"select/tcp/idle=10", "select/tcp/idle=1000"}, ""},
		{"nothing to run", []model{blocking, netConn}, []string{protoTCP}, []int{100}, nil, "idle connections"},
		{"udp has no idle mode", []model{poll}, []string{protoUDP}, []int{100}, nil, "only to tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := plan(tt.models, tt.protos, tt.idle)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, v := range vs {
				names = append(names, v.Name())
				back, err := variantOf(v.Params())
				if err != nil || back != v {
					t.Errorf("%s does not survive its step parameters: %v, %v", v.Name(), back, err)
				}
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("variants %v, want %v", names, tt.want)
			}
		})
	}
}

func quickstart(t *testing.T) experiments.Lab {
	t.Helper()
	return labtest.Example(t, "quickstart", map[string]string{"client": "n1", "server": "n2"})
}

func TestStepsInterleaveVariants(t *testing.T) {
	var e Experiment
	p, err := experiments.Validate(e.Spec(), map[string]string{"models": "blocking,epoll-et", "protocols": "tcp", "idle": "0,10", "repeats": "2"})
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, quickstart(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Variant)
		// The agent validates a step's parameters against the spec; each
		// names exactly its variant.
		sp, err := experiments.Validate(e.Spec(), s.Params)
		if err != nil {
			t.Fatalf("step %s: %v", s.Variant, err)
		}
		if v, err := variantOf(sp.Map()); err != nil || v.Name() != s.Variant {
			t.Errorf("step %s carries variant %v (%v)", s.Variant, v, err)
		}
		if s.Roles[0].Role != "server" || s.Roles[0].Node != "n2" || !netip.MustParseAddr(s.Roles[0].Address).Is4() {
			t.Errorf("step %s: server placed at %v", s.Variant, s.Roles[0])
		}
	}
	want := []string{"blocking/tcp", "epoll-et/tcp", "epoll-et/tcp/idle=10", "blocking/tcp", "epoll-et/tcp", "epoll-et/tcp/idle=10"}
	if !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
}

// The defaults must fit in a minute: the estimate counts warm-up and
// duration of every step, plus a measured per-step overhead of the agents
// (about 0.1 s on a loaded 2-CPU machine) and the idle connections.
func TestDefaultsFitInAMinute(t *testing.T) {
	var e Experiment
	p, err := experiments.Validate(e.Spec(), nil)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := e.Steps(p, quickstart(t))
	if err != nil {
		t.Fatal(err)
	}
	c := experiments.As[params](p)
	per := c.Duration + c.Warmup + 100e6
	if total := per * time.Duration(len(steps)); total > 55e9 {
		t.Errorf("%d steps of about %v take %v", len(steps), per, total)
	}
}
