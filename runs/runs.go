// Package runs orchestrates experiment runs: it validates a request, places
// roles on nodes, runs each step by calling the agents of those nodes (server
// roles first, then the roles that connect to them), and stores the result
// with its environment, evidence and verdict.
package runs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/fault"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/internal/report"
	agentv1 "github.com/labctl/labctl/proto/labctl/agent/v1"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/traces"
)

var tracer = otel.Tracer("github.com/labctl/labctl/runs")

// Agents reaches the agent of a node.
type Agents interface {
	Agent(node string) (agentv1.AgentServiceClient, error)
}

// Runner runs experiments and stores their results.
type Runner struct {
	Registry *experiments.Registry
	Store    *Store
	Version  string
	// MaxRun refuses runs whose steps would take longer in total
	// (warm-up plus duration of each); 0 allows any.
	MaxRun time.Duration

	mu     sync.Mutex
	active map[string]*activeRun // run id -> run in progress
}

// activeRun is a run in progress, for Cancel.
type activeRun struct {
	owner string
	once  sync.Once
	stop  chan struct{} // closed by Cancel
	// packets traces the kernel's path of the lab's packets, when asked.
	packets *packetTrace

	mu      sync.Mutex
	running map[string]bool // "node role" of the roles running now
}

func (a *activeRun) setRunning(role string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if on {
		a.running[role] = true
	} else {
		delete(a.running, role)
	}
}

// ErrNoRun says no run in progress has the id.
var ErrNoRun = errors.New("no run in progress has that id")

// ErrNotOwner says a caller may not cancel another caller's run.
var ErrNotOwner = errors.New("the run was started by another caller")

// Cancel stops a run in progress: its roles are asked to stop and restore
// what they changed, and its Run reports each as it is done, then returns
// with the result stored as cancelled. owner is the caller asking ("" for
// an operator, who may cancel any run); a caller may cancel only its own.
// It returns the roles running ("node role"), which are now stopping.
func (r *Runner) Cancel(id, owner string) ([]string, error) {
	r.mu.Lock()
	a, ok := r.active[id]
	r.mu.Unlock()
	switch {
	case !ok:
		return nil, fmt.Errorf("run %s: %w", id, ErrNoRun)
	case owner != "" && a.owner != owner:
		return nil, fmt.Errorf("run %s: %w (%s)", id, ErrNotOwner, a.owner)
	}
	a.once.Do(func() { close(a.stop) })
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.running)), nil
}

// track registers a run in progress until the returned function is called.
func (r *Runner) track(id, owner string) (*activeRun, func()) {
	a := &activeRun{owner: owner, stop: make(chan struct{}), running: map[string]bool{}}
	r.mu.Lock()
	if r.active == nil {
		r.active = map[string]*activeRun{}
	}
	r.active[id] = a
	r.mu.Unlock()
	return a, func() {
		r.mu.Lock()
		delete(r.active, id)
		r.mu.Unlock()
	}
}

// Request is one run to make.
type Request struct {
	Plan       *topologies.Plan
	Agents     Agents
	Experiment string
	Params     map[string]string
	Nodes      map[string]string // role -> node; missing roles get defaults
	// Started is called once the run has an id, before the first step (the
	// caller names its trace after it).
	Started func(id string)
	// Owner is the caller that starts the run, who may cancel it ("" when
	// callers are not told apart).
	Owner string
	// TracePackets is the fraction of the lab's packets whose path through
	// the kernel is traced (internal/pktpath); 0 traces none.
	TracePackets float64
	// TraceAllStages attaches every stage of the path when sampling too
	// (pktpath.Every); tracing every packet always does.
	TraceAllStages bool
}

// Event is one thing a run reports while it runs: a progress line, a
// finished step, or the result; exactly one is set.
type Event struct {
	Progress *Progress
	Step     *experimentv1.StepResult
	Result   *experimentv1.Result
}

// Progress is a line about a running experiment.
type Progress struct {
	// Step being run, from 1, of Total.
	Step, Total int
	Variant     string
	Message     string
	RunID       string
	// While a cancelled run stops (Stopping): the roles, as "node role",
	// that have not yet stopped and restored what they changed.
	Restoring []string
	Stopping  bool
}

// Run runs req, sending progress, each step's reports and the final result
// to emit (which is never called concurrently). The result is stored even
// when the run fails or is cancelled; the error's kind (internal/fault) says
// why.
func (r *Runner) Run(ctx context.Context, req Request, emit func(Event)) (*experimentv1.Result, error) {
	exp, ok := r.Registry.Get(req.Experiment)
	if !ok {
		return nil, fault.New(fault.NotFound, "no experiment %q (labctl run --list shows them)", req.Experiment)
	}
	params, err := experiments.Validate(exp.Spec(), req.Params)
	if err != nil {
		return nil, err
	}
	lab, err := experiments.Place(req.Plan, exp.Spec().GetRoles(), req.Nodes)
	if err != nil {
		return nil, err
	}
	roles := lab.Roles
	steps, err := exp.Steps(params, lab)
	if err != nil {
		return nil, fault.New(fault.Precondition, "%s in lab %s: %w", req.Experiment, req.Plan.Lab, err)
	}
	rounds := experiments.RoundsOf(params)
	budget := rounds.Budget
	if est := max(estimate(steps), budget); r.MaxRun > 0 && est > r.MaxRun {
		return nil, experiments.ParamErrors{{Param: "duration", Msg: fmt.Sprintf(
			"the run would take about %v (%d steps of warm-up plus duration); this server allows %v", est.Round(time.Second), len(steps), r.MaxRun)}}
	}
	ctx, span := tracer.Start(ctx, "run "+req.Experiment)
	defer span.End()
	res := &experimentv1.Result{
		Id: NewID(req.Experiment, time.Now()), Lab: req.Plan.Lab, Experiment: req.Experiment, Params: params.Map(),
		Started: timestamppb.Now(), State: experimentv1.RunState_RUN_STATE_RUNNING, Host: report.Host(r.Version), Nodes: roles,
	}
	res.Host.CniPlugins = cniPlugins(req.Plan)
	if sc := span.SpanContext(); sc.IsValid() && span.IsRecording() {
		res.TraceId = sc.TraceID().String()
	}
	span.SetAttributes(traces.KeyRunID.String(res.Id), traces.KeyExperiment.String(req.Experiment), traces.KeyLab.String(req.Plan.Lab),
		attribute.Int("labctl.steps", len(steps)))
	for _, k := range slices.Sorted(maps.Keys(res.Params)) {
		span.SetAttributes(attribute.String("labctl.param."+k, res.Params[k]))
	}
	for _, role := range slices.Sorted(maps.Keys(roles)) {
		span.SetAttributes(attribute.String("labctl.node."+role, roles[role]))
	}
	if req.Started != nil {
		req.Started(res.Id)
	}
	run, untrack := r.track(res.Id, req.Owner)
	defer untrack()
	var mu sync.Mutex
	send := func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		emit(ev)
	}
	if req.TracePackets > 0 {
		run.packets = startPacketTrace(req.Plan, exp, min(req.TracePackets, 1), req.TraceAllStages, func(msg string) {
			send(Event{Progress: &Progress{RunID: res.Id, Message: msg}})
		})
		defer run.packets.close()
	}
	// runSteps runs steps; on a failure it stores the result as failed or
	// cancelled and returns the error.
	total := len(steps)
	runSteps := func(steps []*experimentv1.Step) error {
		for _, step := range steps {
			i := len(res.Steps)
			progress := func(p *Progress) {
				p.RunID, p.Step, p.Total, p.Variant = res.Id, i+1, total, step.GetVariant()
				send(Event{Progress: p})
			}
			progress(&Progress{Message: fmt.Sprintf("step %d/%d: %s (repeat %d)", i+1, total, step.GetVariant(), step.GetRepeat()+1)})
			sr, err := r.tracedStep(ctx, req, run, res.Id, i, step, progress)
			if err != nil {
				traces.Fail(span, err)
				res.State = experimentv1.RunState_RUN_STATE_FAILED
				if ctx.Err() != nil || isCancel(err) {
					res.State = experimentv1.RunState_RUN_STATE_CANCELLED
				}
				res.Error = err.Error()
				res.Finished = timestamppb.Now()
				if serr := r.Store.Save(res); serr != nil {
					err = errors.Join(err, serr)
				}
				return err
			}
			res.Steps = append(res.Steps, sr)
			send(Event{Step: sr})
		}
		return nil
	}
	if err := runSteps(steps); err != nil {
		return res, err
	}
	res.Summary, res.Verdict = exp.Judge(params, res.Steps)
	// While comparisons are undecided, rounds of more repeats of their
	// variants, up to the looks the parameters allow and within the budget.
	looks := rounds.Looks()
	spent := estimate(steps)
	for look := 2; look <= looks && len(res.GetVerdict().GetNeedMore()) > 0; look++ {
		more := judge.MoreSteps(res.Steps, res.GetVerdict().GetNeedMore(), experiments.RoundRepeats)
		if budget > 0 && spent+estimate(more) > budget {
			send(Event{Progress: &Progress{RunID: res.Id, Step: len(res.Steps), Total: total,
				Message: fmt.Sprintf("undecided (%s), but a round of %d more steps (%v) would pass the budget of %v; stopping", strings.Join(res.GetVerdict().GetNeedMore(), ", "), len(more), estimate(more).Round(time.Second), budget)}})
			break
		}
		spent += estimate(more)
		total += len(more)
		send(Event{Progress: &Progress{RunID: res.Id, Step: len(res.Steps), Total: total,
			Message: fmt.Sprintf("undecided: %s; look %d of %d adds %d repeats of each", strings.Join(res.GetVerdict().GetNeedMore(), ", "), look, looks, experiments.RoundRepeats)}})
		if err := runSteps(more); err != nil {
			return res, err
		}
		res.Summary, res.Verdict = exp.Judge(params, res.Steps)
	}
	run.packets.finish(res)
	if pj, ok := exp.(experiments.PacketJudged); ok && res.GetPacketTracing().GetTraced() > 0 && res.GetVerdict() != nil {
		pj.JudgePackets(res.Summary, res.Verdict)
	}
	// The verdict as the CLI says it; the numbers are in the step spans
	// (labctl.<role>.<metric>) and in the result.
	span.SetAttributes(attribute.String("labctl.verdict.outcome", strings.ToUpper(judge.OutcomeWord(res.GetVerdict().GetOutcome()))),
		attribute.String("labctl.verdict.explanation", res.GetVerdict().GetExplanation()))
	if c := res.GetVerdict().GetClaim(); c != "" {
		span.SetAttributes(attribute.String("labctl.verdict.claim", c))
	}
	res.State = experimentv1.RunState_RUN_STATE_COMPLETED
	res.Finished = timestamppb.Now()
	if err := r.Store.Save(res); err != nil {
		return res, fmt.Errorf("store result: %w", err)
	}
	send(Event{Result: res})
	return res, nil
}

// estimate adds up the warm-up and duration of every step.
func estimate(steps []*experimentv1.Step) time.Duration {
	var total time.Duration
	for _, s := range steps {
		for _, k := range []string{"warmup", "duration"} {
			if d, err := time.ParseDuration(s.GetParams()[k]); err == nil {
				total += d
			}
		}
	}
	return total
}

type roleOutcome struct {
	role   string
	report *experimentv1.RoleReport
	err    error
}

// tracedStep runs one step under a span of its own, which carries every
// role's metrics as attributes.
func (r *Runner) tracedStep(ctx context.Context, req Request, run *activeRun, runID string, i int, step *experimentv1.Step, progress func(*Progress)) (*experimentv1.StepResult, error) {
	// One name for every step, so that a trace viewer's operations are
	// the kinds of work, not one per step; the step is in the attributes.
	ctx, span := tracer.Start(ctx, "step", trace.WithAttributes(attribute.Int("labctl.step", i+1),
		attribute.String("labctl.variant", step.GetVariant()), attribute.Int("labctl.repeat", int(step.GetRepeat()))))
	defer span.End()
	start := time.Now()
	sr, err := r.runStep(ctx, req, run, runID, step, progress)
	run.packets.step(ctx, step.GetVariant(), start, time.Now())
	if err != nil {
		traces.Fail(span, err)
		return nil, err
	}
	for _, rep := range sr.GetReports() {
		traces.Summary(span, rep.GetRole(), rep.GetMetrics())
	}
	return sr, nil
}

// restoreTimeout bounds how long a cancelled step waits for its roles to
// stop and restore what they changed, before it cuts their calls (the
// agents then still restore, but nobody waits to hear it).
const restoreTimeout = 30 * time.Second

// runStep starts the step's roles in order, each once the previous one is
// ready, and waits for every report. The first failure cancels the others.
// When the run is cancelled (run.stop), the agents are asked to stop the
// roles, and runStep waits until each has stopped and restored what it
// changed, telling progress which are left.
func (r *Runner) runStep(ctx context.Context, req Request, run *activeRun, runID string, step *experimentv1.Step, progress func(*Progress)) (*experimentv1.StepResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	roles := step.GetRoles()
	type indexed struct {
		i int
		roleOutcome
	}
	outcomes := make(chan indexed, len(roles))
	collected := make([]*roleOutcome, len(roles))
	started := 0
	peers := map[string]string{}
	say := func(msg string) { progress(&Progress{Message: msg}) }
	// start launches one role and waits until it is ready (or ends).
	start := func(i int, ra *experimentv1.RoleAssignment) error {
		client, err := req.Agents.Agent(ra.GetNode())
		if err != nil {
			return nodeError(ra.GetNode(), err)
		}
		stream, err := client.RunRole(ctx, &agentv1.RunRoleRequest{
			RunId: runID, Experiment: req.Experiment, Role: ra.GetRole(), Step: step, Peers: clonePeers(peers)})
		if err != nil {
			return nodeError(ra.GetNode(), err)
		}
		started++
		ready := make(chan int32, 1)
		name := ra.GetNode() + " " + ra.GetRole()
		run.setRunning(name, true)
		go func() {
			o := follow(stream, ra, ready, say)
			run.setRunning(name, false)
			outcomes <- indexed{i, o}
		}()
		for {
			select {
			case port := <-ready:
				if ra.GetAddress() != "" {
					peers[ra.GetRole()] = net.JoinHostPort(ra.GetAddress(), strconv.Itoa(int(port)))
				}
				return nil
			case o := <-outcomes:
				collected[o.i] = &o.roleOutcome
				if o.i == i || o.err != nil {
					return o.err
				}
			case <-run.stop:
				return errCancelled
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	var errs []error
	for i, ra := range roles {
		if err := start(i, ra); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if len(errs) > 0 {
		select {
		case <-run.stop:
		default:
			cancel() // a role failed: the others end at once
		}
	}
	// Wait for every started role; on a cancel of the run, ask the agents
	// to stop the roles and say which are still restoring.
	stopping := false
	var hardStop <-chan time.Time
	stopCh := run.stop
	left := func() []string {
		var out []string
		for i := range started {
			if collected[i] == nil {
				out = append(out, roles[i].GetNode()+" "+roles[i].GetRole())
			}
		}
		return out
	}
	for pending := started - countDone(collected); pending > 0; {
		select {
		case o := <-outcomes:
			collected[o.i] = &o.roleOutcome
			pending--
			if o.err != nil && !isCancel(o.err) {
				cancel()
			}
			if stopping {
				ra := roles[o.i]
				progress(&Progress{Message: fmt.Sprintf("%s %s stopped and restored what it changed", ra.GetNode(), ra.GetRole()), Restoring: left(), Stopping: true})
			}
		case <-stopCh:
			stopCh = nil
			stopping = true
			progress(&Progress{Message: "cancelling: waiting for " + strings.Join(left(), ", ") + " to stop and restore what they changed", Restoring: left(), Stopping: true})
			r.stopRoles(ctx, req.Agents, runID, roles[:started])
			hardStop = time.After(restoreTimeout)
		case <-hardStop:
			progress(&Progress{Message: fmt.Sprintf("%s did not stop within %v; cutting their calls (their agents still restore; labctl down restores what a dead agent left)", strings.Join(left(), ", "), restoreTimeout), Restoring: left(), Stopping: true})
			hardStop = nil
			cancel()
		}
	}
	sr := &experimentv1.StepResult{Step: step}
	for i := range started {
		if o := collected[i]; o.err != nil {
			errs = append(errs, o.err)
		} else {
			sr.Reports = append(sr.Reports, o.report)
		}
	}
	if stopping {
		return nil, errCancelled
	}
	// A role that failed takes the others down with it; those report the
	// cancel, so the cause is the first error that is not one.
	for _, err := range errs {
		if !isCancel(err) {
			return nil, err
		}
	}
	if len(errs) > 0 {
		return nil, errCancelled
	}
	return sr, nil
}

func countDone(c []*roleOutcome) int {
	n := 0
	for _, o := range c {
		if o != nil {
			n++
		}
	}
	return n
}

// stopTimeout bounds each agent's answer to StopRun.
const stopTimeout = 5 * time.Second

// stopRoles asks the agent of every node of roles to stop the run's roles.
func (r *Runner) stopRoles(ctx context.Context, agents Agents, runID string, roles []*experimentv1.RoleAssignment) {
	nodes := map[string]bool{}
	var wg sync.WaitGroup
	for _, ra := range roles {
		if nodes[ra.GetNode()] {
			continue
		}
		nodes[ra.GetNode()] = true
		client, err := agents.Agent(ra.GetNode())
		if err != nil {
			continue // its stream has ended or will end with the error
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			_, _ = client.StopRun(ctx, &agentv1.StopRunRequest{RunId: runID})
		}()
	}
	wg.Wait()
}

// errCancelled is the error of a run that was cancelled.
var errCancelled = fault.New(fault.Cancelled, "run cancelled")

func isCancel(err error) bool { return fault.Is(err, fault.Cancelled) }

func clonePeers(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// follow reads one role's stream to its end.
func follow(stream agentv1.AgentService_RunRoleClient, ra *experimentv1.RoleAssignment, ready chan<- int32, progress func(string)) roleOutcome {
	o := roleOutcome{role: ra.GetRole()}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if o.report == nil {
				o.err = fmt.Errorf("node %s: role %s ended without a report", ra.GetNode(), ra.GetRole())
			}
			return o
		}
		if err != nil {
			o.err = nodeError(ra.GetNode(), err)
			return o
		}
		switch e := ev.GetEvent().(type) {
		case *agentv1.RunRoleResponse_Ready:
			select {
			case ready <- e.Ready.GetPort():
			default:
			}
		case *agentv1.RunRoleResponse_Progress:
			progress(ra.GetNode() + " " + ra.GetRole() + ": " + e.Progress.GetMessage())
		case *agentv1.RunRoleResponse_Report:
			o.report = e.Report
		}
	}
}

// nodeError names the node in an agent's error (its kind, from the
// agent's client: services/agent.ClientOptions); an agent that could not
// be reached gets the hint to run up again.
func nodeError(node string, err error) error {
	switch fault.KindOf(err) {
	case fault.Unavailable:
		return fault.New(fault.Unavailable, "node %s: agent unreachable: %v (labctl up restarts dead agents)", node, err)
	case fault.Internal:
		if !errors.As(err, new(*fault.Error)) {
			// Not from the agent: the connection itself failed.
			return fault.New(fault.Unavailable, "node %s: agent unreachable: %v (labctl up restarts dead agents)", node, err)
		}
	}
	return err
}

// cniPlugins lists the plugin binaries that built the lab's cni links, once
// each, in the order they ran.
func cniPlugins(p *topologies.Plan) []*experimentv1.CNIPlugin {
	var out []*experimentv1.CNIPlugin
	seen := map[string]bool{}
	for _, c := range p.CNI {
		if c.Result == nil {
			continue
		}
		for _, pl := range c.Result.Plugins {
			if !seen[pl.Path+pl.SHA256] {
				seen[pl.Path+pl.SHA256] = true
				out = append(out, &experimentv1.CNIPlugin{Type: pl.Type, Path: pl.Path, Module: pl.Module, Version: pl.Version, Sha256: pl.SHA256})
			}
		}
	}
	return out
}
