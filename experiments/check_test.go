package experiments

import (
	"context"
	"strings"
	"testing"
	"time"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

type probeParams struct {
	Size  Size     `param:"size" min:"1" max:"1MiB" help:"bytes per message"`
	Modes []string `param:"modes" choices:"a,b" help:"modes compared"`
	Timing
	Repeats
}

var probeDefaults = probeParams{Size: 64, Modes: []string{"a", "b"}, Timing: Timing{Duration: time.Second}, Repeats: Repeats{Repeats: 2}}

// misspelt has a bad field in its param struct.
type misspelt struct {
	Size Size `param:"sise" min:"1" max:"1MiB" help:"bytes per message"`
}

// probe is a two-role experiment whose spec and steps can be made to
// disagree in the ways a typo would.
type probe struct {
	roles    []string // the spec's
	place    Role     // the role Steps places beside the client
	override string   // the parameter each step narrows
	decode   func(Params)
	figures  []Figure
}

func (e probe) Figures() []Figure { return e.figures }

func (e probe) Spec() *experimentv1.ExperimentSpec {
	return &experimentv1.ExperimentSpec{Name: "probe", Summary: "a test", Roles: e.roles, Params: Declare(probeDefaults)}
}

func (e probe) Steps(p Params, lab Lab) ([]*experimentv1.Step, error) {
	e.decode(p)
	c := As[probeParams](p)
	var steps []*experimentv1.Step
	for rep := range c.Repeats.Repeats {
		for _, m := range c.Modes {
			sp, err := p.With(map[string]string{e.override: m})
			if err != nil {
				return nil, err
			}
			steps = append(steps, &experimentv1.Step{Variant: m, Repeat: int32(rep), Params: sp.Map(), Roles: []*experimentv1.RoleAssignment{
				{Role: string(e.place), Node: lab.Node(Server)}, {Role: string(Client), Node: lab.Node(Client)}}})
		}
	}
	return steps, nil
}

func (probe) Run(context.Context, *Env) (*experimentv1.RoleReport, error) { return nil, nil }

func (probe) Judge(Params, []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict) {
	return nil, &experimentv1.Verdict{}
}

// TestRegistryRefusesTypos: a parameter or role misspelt anywhere an
// experiment names one fails when the registry is built.
func TestRegistryRefusesTypos(t *testing.T) {
	good := probe{roles: []string{"server", "client"}, place: Server, override: "modes", decode: func(p Params) { As[probeParams](p) }}
	if _, err := NewRegistry(good); err != nil {
		t.Fatalf("the correct experiment: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*probe)
		want string
	}{
		{"role misspelt in the spec", func(e *probe) { e.roles = []string{"sever", "client"} }, `places role "server", which the spec does not list`},
		{"role misspelt in the steps", func(e *probe) { e.place = "sever" }, `places role "sever", which the spec does not list`},
		{"parameter misspelt in a step", func(e *probe) { e.override = "mode" }, "parameter mode: probe has no such parameter"},
		{"parameter misspelt in the struct read", func(e *probe) { e.decode = func(p Params) { As[misspelt](p) } }, `has no parameter "sise"`},
		{"role misspelt in a figure", func(e *probe) { e.figures = []Figure{{Kind: Bars, Title: "t", Metrics: []string{"clinet.x"}}} }, `metric "clinet.x": no role "clinet"`},
		{"figure of variants the run has not", func(e *probe) {
			e.figures = []Figure{{Kind: Sweep, Title: "t", Metrics: []string{"client.x"}, Variants: `^(?P<x>[0-9]+)KiB$`}}
		}, "match none of the default run's"},
		{"sweep without x", func(e *probe) {
			e.figures = []Figure{{Kind: Sweep, Title: "t", Metrics: []string{"client.x"}, Variants: "a"}}
		}, "has no group (?P<x>...)"},
		{"figure pattern that does not compile", func(e *probe) {
			e.figures = []Figure{{Kind: Bars, Title: "t", Metrics: []string{"client.x"}, Variants: "("}}
		}, "variants: error parsing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := good
			tc.edit(&e)
			_, err := NewRegistry(e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewRegistry: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// TestDeclareAndAs: a struct's fields become the spec's parameters with
// its values as defaults, and read back as given.
func TestDeclareAndAs(t *testing.T) {
	specs := Declare(probeDefaults)
	var got []string
	for _, ps := range specs {
		got = append(got, ps.GetName()+"="+ps.GetDefault())
	}
	if strings.Join(got, " ") != "size=64 modes=a,b duration=1s warmup=0s repeats=2" {
		t.Errorf("declared %v", got)
	}
	spec := &experimentv1.ExperimentSpec{Name: "probe", Params: specs}
	p, err := Validate(spec, map[string]string{"size": "4KiB", "modes": "b", "warmup": "20ms"})
	if err != nil {
		t.Fatal(err)
	}
	c := As[probeParams](p)
	if c.Size != 4096 || len(c.Modes) != 1 || c.Modes[0] != "b" || c.Warmup != 20*time.Millisecond || c.Duration != time.Second || c.Repeats.Repeats != 2 {
		t.Errorf("read back %+v", c)
	}
	c.Modes = []string{"a", "b"}
	c.Size = 1 << 20
	q, err := Set(p, c)
	if err != nil {
		t.Fatal(err)
	}
	if m := q.Map(); m["size"] != "1MiB" || m["modes"] != "a,b" {
		t.Errorf("set: %v", m)
	}
	c.Size = 2 << 20
	if _, err := Set(p, c); err == nil {
		t.Error("Set accepted a size above the maximum")
	}
}

func TestDeclarePanicsOnAMalformedStruct(t *testing.T) {
	for name, v := range map[string]any{
		"no help": struct {
			N int `param:"n"`
		}{},
		"untagged": struct{ N int }{},
		"unknown kind": struct {
			F float64 `param:"f" help:"x"`
		}{},
		"bad name": struct {
			N int `param:"N-1" help:"x"`
		}{},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			Declare(v)
		}()
	}
}
