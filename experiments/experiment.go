// Package experiments is the framework every labctl experiment is written
// in: a spec with validated parameters, roles that run inside agents, steps
// that the orchestrator runs one after another, and a judge that turns the
// roles' reports into a summary and a verdict on a claim.
//
// An experiment's code runs in two places. Steps and Judge are pure and run
// where the run is orchestrated (the lab service); Run runs inside the agent
// of the node a role is placed on, in that node's network namespace. Data
// paths are raw syscalls on locked OS threads (packages sock and uring);
// measurements use packages measure and kstat.
package experiments

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/labctl/labctl/internal/settings"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Experiment is one family of measurements answering one or more claims.
type Experiment interface {
	// Spec describes the experiment: parameters with defaults and bounds,
	// roles in start order, the claims it answers.
	Spec() *experimentv1.ExperimentSpec
	// Steps expands validated parameters into the steps of a run, placing
	// each role on a node. Variants should be interleaved across repeats
	// (A B A B, not A A B B) so that drift on the machine hits them alike.
	Steps(p Params, lab Lab) ([]*experimentv1.Step, error)
	// Run runs one role of one step in the current node and reports what it
	// measured. It must call env.Ready once it can be reached, must stop
	// promptly when ctx ends, and must restore anything it changed.
	Run(ctx context.Context, env *Env) (*experimentv1.RoleReport, error)
	// Judge aggregates the steps of a run into a summary per variant and a
	// verdict on the claim.
	Judge(p Params, steps []*experimentv1.StepResult) ([]*experimentv1.SummaryRow, *experimentv1.Verdict)
}

// PacketJudged is an experiment whose verdict also reads what packet
// tracing saw (labctl run --trace-packets; docs/packet-path.md). After
// Judge, and only when packets were traced, the runner gives it the
// summary rows, each with its variant's packet path where packets of it
// were traced, and the verdict to add that evidence to.
type PacketJudged interface {
	JudgePackets(rows []*experimentv1.SummaryRow, v *experimentv1.Verdict)
	// PacketStages names the stages JudgePackets reads (as the tables
	// name them: "netif_receive_skb", "reader wakeup"). A sampled run
	// attaches the path's landmarks only, unless a verdict reads more.
	PacketStages() []string
}

// Env is what a role sees while it runs inside an agent.
type Env struct {
	RunID  string
	Node   string
	Role   Role
	Step   *experimentv1.Step
	Params Params
	// Peers are the addresses of the roles started before this one.
	Peers map[string]netip.AddrPort
	// Settings records every kernel setting the role changes (sysctls,
	// device attributes, offloads, rules) so that it is restored when the
	// role ends, however it ends; the agent restores it after Run.
	Settings *settings.Journal

	ready    func(port int)
	progress func(msg string)
	readied  bool
}

// NewEnv makes the environment of one role; ready and progress deliver the
// role's events to whoever runs it (the agent's stream, or a test).
func NewEnv(runID, node string, role Role, step *experimentv1.Step, p Params, peers map[string]netip.AddrPort, ready func(port int), progress func(string)) *Env {
	return &Env{RunID: runID, Node: node, Role: role, Step: step, Params: p, Peers: peers, ready: ready, progress: progress}
}

// Ready tells the orchestrator the role can be reached, on port (0 for a
// role that does not listen). Only the first call counts.
func (e *Env) Ready(port int) {
	if e.readied {
		return
	}
	e.readied = true
	if e.ready != nil {
		e.ready(port)
	}
}

// Readied reports whether Ready was called.
func (e *Env) Readied() bool { return e.readied }

// Progressf sends a progress line to the user.
func (e *Env) Progressf(format string, args ...any) {
	if e.progress != nil {
		e.progress(fmt.Sprintf(format, args...))
	}
}

// Peer returns the address of an earlier role.
func (e *Env) Peer(role Role) (netip.AddrPort, error) {
	a, ok := e.Peers[string(role)]
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("role %s of step %s: no address for role %s", e.Role, e.Step.GetVariant(), role)
	}
	return a, nil
}

// Address is the address this role was placed at (to bind to), or the
// unspecified IPv4 address when the step gives none.
func (e *Env) Address() netip.Addr {
	for _, r := range e.Step.GetRoles() {
		if r.GetRole() == string(e.Role) {
			if a, err := netip.ParseAddr(r.GetAddress()); err == nil {
				return a
			}
		}
	}
	return netip.IPv4Unspecified()
}

// Report starts the report of this role.
func (e *Env) Report() *experimentv1.RoleReport {
	return &experimentv1.RoleReport{Role: string(e.Role), Node: e.Node, Metrics: map[string]float64{}}
}

// Registry holds the experiments an agent can run, by name.
type Registry struct {
	byName map[string]Experiment
	names  []string
}

// NewRegistry registers exps and checks each against itself, so that a
// misspelt parameter or role fails here, at start-up and in every test
// that builds the registry, and never in a run: names unique; every
// parameter with a help, a default within its bounds and choices; the
// steps of a run with the defaults, planned on each example lab that can
// host it, placing only the spec's roles (each of them somewhere) with
// parameters that validate; a parameter struct that matches the spec (As,
// in Steps and Judge, panics on one that does not).
func NewRegistry(exps ...Experiment) (*Registry, error) {
	labs, err := exampleLabs()
	if err != nil {
		return nil, fmt.Errorf("the example labs the registry plans on: %w", err)
	}
	r, err := Unchecked(exps...)
	errs := []error{err}
	for _, e := range exps {
		if err := check(e, labs); err != nil {
			errs = append(errs, fmt.Errorf("experiment %s: %w", e.Spec().GetName(), err))
		}
	}
	return r, errors.Join(errs...)
}

// Unchecked registers exps by name only, without NewRegistry's planning
// (about 7 ms for labctl's experiments). Agents use it: the lab service
// that sends them roles is the same binary and checked the same
// experiments when it started, and an agent's start is paid once per node.
func Unchecked(exps ...Experiment) (*Registry, error) {
	r := &Registry{byName: map[string]Experiment{}}
	for _, e := range exps {
		name := e.Spec().GetName()
		if _, dup := r.byName[name]; dup {
			return nil, fmt.Errorf("two experiments named %s", name)
		}
		r.byName[name] = e
		r.names = append(r.names, name)
	}
	sort.Strings(r.names)
	return r, nil
}

// Get returns the experiment called name.
func (r *Registry) Get(name string) (Experiment, bool) {
	e, ok := r.byName[name]
	return e, ok
}

// Specs lists every experiment's spec, by name.
func (r *Registry) Specs() []*experimentv1.ExperimentSpec {
	out := make([]*experimentv1.ExperimentSpec, len(r.names))
	for i, n := range r.names {
		out[i] = r.byName[n].Spec()
	}
	return out
}
