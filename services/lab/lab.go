// Package lab is the gRPC LabService: the one API through which labs are
// built, inspected and experimented on. The CLI uses it in-process by
// default and over TCP with --server; `labctl serve` exposes it with a
// bearer token (and TLS off loopback).
package lab

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/judge"
	"github.com/labctl/labctl/labs"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/reports"
	"github.com/labctl/labctl/runs"
	"github.com/labctl/labctl/services/agent"
	"github.com/labctl/labctl/services/rpcerr"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/traces"
)

// Server implements LabService on one host.
type Server struct {
	labv1.UnimplementedLabServiceServer
	Host   *labs.Host
	Runner *runs.Runner
	// AgentOptions are added to every connection to an agent (tracing).
	AgentOptions []grpc.DialOption
	// Policy bounds what callers may do; nil (the CLI's in-process
	// service) allows everything.
	Policy *Policy

	mu         sync.Mutex
	pendingUps map[string]int // labs being brought up, for Policy.MaxLabs
	runs       int            // runs in progress, for Policy.MaxRuns
}

// GetTrace returns the local copy of a trace, by trace id or run id.
func (s *Server) GetTrace(_ context.Context, req *labv1.GetTraceRequest) (*labv1.GetTraceResponse, error) {
	id, err := traces.ParseTraceID(req.GetId())
	if err != nil {
		r, gerr := s.Runner.Store.Get(req.GetId())
		if gerr != nil {
			return nil, status.Errorf(codes.NotFound, "%q is neither a trace id (32 hex digits) nor a stored run: %v", req.GetId(), gerr)
		}
		if r.GetTraceId() == "" {
			return nil, status.Errorf(codes.NotFound, "run %s has no trace (it ran without tracing)", r.GetId())
		}
		id = r.GetTraceId()
	}
	spans, err := traces.Read(s.Host.TraceDir, id)
	if errors.Is(err, traces.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "trace %s: no local copy on this host", id)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "trace %s: %v", id, err)
	}
	b, err := traces.MarshalTrace(spans)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "trace %s: %v", id, err)
	}
	return &labv1.GetTraceResponse{TraceId: id, OtlpJson: b}, nil
}

// maxTopology bounds the topology a request may carry, with its files.
const maxTopology = 4 << 20

// Up builds or reconciles a lab from the topology in the request.
func (s *Server) Up(req *labv1.UpRequest, stream labv1.LabService_UpServer) error {
	size := len(req.GetTopology())
	for _, data := range req.GetFiles() {
		size += len(data)
	}
	if size > maxTopology {
		return status.Errorf(codes.InvalidArgument, "topology and its files are %d bytes; the limit is %d", size, maxTopology)
	}
	source := req.GetSource()
	if source == "" {
		source = "topology.yaml"
	}
	t, err := topologies.Decode(source, req.GetTopology())
	if err != nil {
		return rpcerr.Status(err, codes.InvalidArgument)
	}
	for name, data := range req.GetFiles() {
		t.SetFile(name, data)
	}
	plan, err := t.Plan()
	if err != nil {
		return rpcerr.Status(err, codes.InvalidArgument)
	}
	noteLab(stream.Context(), plan.Lab)
	if err := s.Policy.checkReach(t); err != nil {
		return err
	}
	if err := s.Policy.checkNodes(plan); err != nil {
		return err
	}
	release, err := s.admitLab(plan.Lab)
	if err != nil {
		return err
	}
	defer release()
	progress := func(p labs.Progress) {
		_ = stream.Send(&labv1.UpResponse{Event: &labv1.UpResponse_Progress{Progress: progressProto(p)}})
	}
	ch, err := s.Host.Up(stream.Context(), plan, source, progress)
	if ch != nil {
		if serr := stream.Send(&labv1.UpResponse{Event: &labv1.UpResponse_Change{Change: changeProto(ch)}}); serr != nil && err == nil {
			err = serr
		}
	}
	return statusOf(err)
}

// Down removes a lab.
func (s *Server) Down(req *labv1.DownRequest, stream labv1.LabService_DownServer) error {
	if err := topologies.CheckName(req.GetLab()); err != nil {
		return status.Errorf(codes.InvalidArgument, "lab %v", err)
	}
	progress := func(p labs.Progress) {
		_ = stream.Send(&labv1.DownResponse{Event: &labv1.DownResponse_Progress{Progress: progressProto(p)}})
	}
	ch, err := s.Host.Down(stream.Context(), req.GetLab(), progress)
	if err != nil {
		return statusOf(err)
	}
	return stream.Send(&labv1.DownResponse{Event: &labv1.DownResponse_Change{Change: changeProto(ch)}})
}

// GetStatus reports a lab.
func (s *Server) GetStatus(ctx context.Context, req *labv1.GetStatusRequest) (*labv1.GetStatusResponse, error) {
	if err := topologies.CheckName(req.GetLab()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "lab %v", err)
	}
	st, err := s.Host.Status(ctx, req.GetLab())
	if err != nil {
		return nil, statusOf(err)
	}
	return &labv1.GetStatusResponse{Status: statusProto(st)}, nil
}

// ListLabs lists the labs that are up.
func (s *Server) ListLabs(context.Context, *labv1.ListLabsRequest) (*labv1.ListLabsResponse, error) {
	names, err := s.Host.Labs()
	if err != nil {
		return nil, statusOf(err)
	}
	out := &labv1.ListLabsResponse{}
	for _, n := range names {
		p, err := s.Host.Plan(n)
		if err != nil {
			continue // removed meanwhile
		}
		out.Labs = append(out.Labs, &labv1.LabSummary{Lab: n, Source: s.Host.Source(n), Nodes: int32(len(p.Nodes)), Links: int32(len(p.Links))})
	}
	return out, nil
}

// ListExperiments describes the experiments.
func (s *Server) ListExperiments(context.Context, *labv1.ListExperimentsRequest) (*labv1.ListExperimentsResponse, error) {
	return &labv1.ListExperimentsResponse{Experiments: s.Runner.Registry.Specs()}, nil
}

// Run runs an experiment in a lab and streams it.
func (s *Server) Run(req *labv1.RunRequest, stream labv1.LabService_RunServer) error {
	if err := topologies.CheckName(req.GetLab()); err != nil {
		return status.Errorf(codes.InvalidArgument, "lab %v", err)
	}
	plan, err := s.Host.Plan(req.GetLab())
	if err != nil {
		return statusOf(err)
	}
	release, err := s.admitRun()
	if err != nil {
		return err
	}
	defer release()
	agents := s.Host.Agents(req.GetLab(), append(agent.ClientOptions(), s.AgentOptions...)...)
	defer agents.Close()
	caller, _ := CallerOf(stream.Context())
	_, err = s.Runner.Run(stream.Context(), runs.Request{
		Plan: plan, Agents: agents, Experiment: req.GetExperiment(), Params: req.GetParams(), Nodes: req.GetNodes(), Owner: caller.Name,
		TracePackets: req.GetTracePackets(), TraceAllStages: req.GetTraceAllStages(),
	}, func(ev runs.Event) { _ = stream.Send(eventProto(ev)) })
	return statusOf(err)
}

// CancelRun stops a run in progress; its Run stream tells when every role
// has restored what it changed. A runner may cancel only its own runs, an
// admin any.
func (s *Server) CancelRun(ctx context.Context, req *labv1.CancelRunRequest) (*labv1.CancelRunResponse, error) {
	owner := ""
	if c, ok := CallerOf(ctx); ok && c.Role < Admin {
		owner = c.Name
	}
	stopping, err := s.Runner.Cancel(req.GetRunId(), owner)
	if err != nil {
		return nil, statusOf(err)
	}
	return &labv1.CancelRunResponse{Stopping: stopping}, nil
}

// admitLab reserves a place for lab under Policy.MaxLabs until release; a
// lab that is up already needs none.
func (s *Server) admitLab(lab string) (release func(), err error) {
	if s.Policy == nil || s.Policy.MaxLabs <= 0 {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	up, err := s.Host.Labs()
	if err != nil {
		return nil, statusOf(err)
	}
	if slices.Contains(up, lab) {
		return func() {}, nil
	}
	taken := len(up)
	for l := range s.pendingUps {
		if l != lab && !slices.Contains(up, l) {
			taken++
		}
	}
	if taken >= s.Policy.MaxLabs {
		return nil, status.Errorf(codes.ResourceExhausted, "this server keeps at most %d labs (--max-labs); %d are up or coming up (%s): take one down first",
			s.Policy.MaxLabs, taken, strings.Join(up, ", "))
	}
	if s.pendingUps == nil {
		s.pendingUps = map[string]int{}
	}
	s.pendingUps[lab]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pendingUps[lab]--; s.pendingUps[lab] == 0 {
			delete(s.pendingUps, lab)
		}
	}, nil
}

// admitRun counts a run under Policy.MaxRuns until release.
func (s *Server) admitRun() (release func(), err error) {
	if s.Policy == nil || s.Policy.MaxRuns <= 0 {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs >= s.Policy.MaxRuns {
		return nil, status.Errorf(codes.ResourceExhausted, "this server runs at most %d experiments at once (--max-concurrent-runs); %d are running: try again when one ends",
			s.Policy.MaxRuns, s.runs)
	}
	s.runs++
	return func() {
		s.mu.Lock()
		s.runs--
		s.mu.Unlock()
	}, nil
}

// ListResults lists stored results.
func (s *Server) ListResults(_ context.Context, req *labv1.ListResultsRequest) (*labv1.ListResultsResponse, error) {
	list, err := s.Runner.Store.List(req.GetLab(), req.GetExperiment(), int(req.GetLimit()))
	if err != nil {
		return nil, statusOf(err)
	}
	out := &labv1.ListResultsResponse{}
	for _, r := range list {
		out.Results = append(out.Results, &labv1.ResultSummary{Id: r.ID, Lab: r.Lab, Experiment: r.Experiment, State: r.State,
			Started: r.Started.Local().Format(time.DateTime), Outcome: r.Outcome, Headline: r.Headline})
	}
	return out, nil
}

// GetResult returns a stored result.
func (s *Server) GetResult(_ context.Context, req *labv1.GetResultRequest) (*labv1.GetResultResponse, error) {
	r, err := s.Runner.Store.Get(req.GetId())
	if err != nil {
		return nil, statusOf(err)
	}
	return &labv1.GetResultResponse{Result: r}, nil
}

// CompareResults sets one stored result against another.
func (s *Server) CompareResults(_ context.Context, req *labv1.CompareResultsRequest) (*labv1.CompareResultsResponse, error) {
	a, b, err := s.resultPair(req.GetA(), req.GetB())
	if err != nil {
		return nil, err
	}
	var metrics []string
	if e, ok := s.Runner.Registry.Get(a.GetExperiment()); ok && !req.GetAll() {
		metrics = e.Spec().GetSummaryMetrics()
	}
	return &labv1.CompareResultsResponse{Comparison: judge.Results(a, b, metrics)}, nil
}

func (s *Server) resultPair(idA, idB string) (*experimentv1.Result, *experimentv1.Result, error) {
	if idA == "" || idB == "" {
		return nil, nil, status.Error(codes.InvalidArgument, "two run ids are needed")
	}
	a, err := s.Runner.Store.Get(idA)
	if err != nil {
		return nil, nil, statusOf(err)
	}
	b, err := s.Runner.Store.Get(idB)
	if err != nil {
		return nil, nil, statusOf(err)
	}
	return a, b, nil
}

// GetReport renders one result, or two side by side, as an HTML page.
func (s *Server) GetReport(_ context.Context, req *labv1.GetReportRequest) (*labv1.GetReportResponse, error) {
	ids := req.GetIds()
	var in reports.Input
	switch len(ids) {
	case 1:
		r, err := s.Runner.Store.Get(ids[0])
		if err != nil {
			return nil, statusOf(err)
		}
		in.Results = []*experimentv1.Result{r}
	case 2:
		a, b, err := s.resultPair(ids[0], ids[1])
		if err != nil {
			return nil, err
		}
		in.Results = []*experimentv1.Result{a, b}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "a report shows one run or two, not %d", len(ids))
	}
	if e, ok := s.Runner.Registry.Get(in.Results[0].GetExperiment()); ok {
		in.Spec = e.Spec()
		if f, ok := e.(experiments.Figured); ok {
			in.Figures = f.Figures()
		}
	}
	if len(in.Results) == 2 {
		in.Comparison = judge.Results(in.Results[0], in.Results[1], in.Spec.GetSummaryMetrics())
	}
	var buf bytes.Buffer
	if err := reports.Render(&buf, in); err != nil {
		return nil, statusOf(err)
	}
	return &labv1.GetReportResponse{Html: buf.Bytes()}, nil
}

// ImportResult stores a result made elsewhere.
func (s *Server) ImportResult(_ context.Context, req *labv1.ImportResultRequest) (*labv1.ImportResultResponse, error) {
	r, err := s.Runner.Store.Import(req.GetSource(), req.GetResult())
	if err != nil {
		return nil, statusOf(err)
	}
	return &labv1.ImportResultResponse{Id: r.GetId()}, nil
}

// statusOf is the one place the lab service turns the errors of packages
// labs and runs into gRPC statuses: their sentinels here, the kinds of
// internal/fault and the topology and parameter errors in rpcerr.
func statusOf(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, labs.ErrNoLab), errors.Is(err, runs.ErrNoRun), errors.Is(err, runs.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, labs.ErrLocked):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, runs.ErrNotOwner):
		return status.Error(codes.PermissionDenied, err.Error())
	}
	return rpcerr.Status(err, codes.Internal)
}

func statusProto(st *labs.LabStatus) *labv1.LabStatus {
	out := &labv1.LabStatus{Lab: st.Lab, Source: st.Source, Drift: st.Drift}
	for _, n := range st.Nodes {
		a := n.Agent
		ns := &labv1.NodeStatus{Name: n.Name, Namespace: n.Namespace, Present: n.Present, Agent: &labv1.AgentStatus{
			Wanted: a.Wanted, Health: a.Health, Version: a.Version, Pid: int32(a.Pid), Socket: a.Socket, Error: a.Err}}
		for _, i := range n.Interfaces {
			ns.Interfaces = append(ns.Interfaces, &labv1.InterfaceStatus{Name: i.Name, Up: i.Up, Mtu: int32(i.MTU), Addresses: i.Addresses})
		}
		out.Nodes = append(out.Nodes, ns)
	}
	for _, l := range st.Links {
		out.Links = append(out.Links, &labv1.LinkStatus{Id: l.ID, Kind: l.Kind, Present: l.Present, Made: l.Made})
	}
	return out
}

func eventProto(ev runs.Event) *labv1.RunResponse {
	switch {
	case ev.Step != nil:
		return &labv1.RunResponse{Event: &labv1.RunResponse_Step{Step: ev.Step}}
	case ev.Result != nil:
		return &labv1.RunResponse{Event: &labv1.RunResponse_Result{Result: ev.Result}}
	}
	p := ev.Progress
	return &labv1.RunResponse{Event: &labv1.RunResponse_Progress{Progress: &labv1.RunProgress{Step: int32(p.Step), Total: int32(p.Total),
		Variant: p.Variant, Message: p.Message, RunId: p.RunID, Restoring: p.Restoring, Stopping: p.Stopping}}}
}

func progressProto(p labs.Progress) *labv1.Progress {
	return &labv1.Progress{Phase: p.Phase, Done: int32(p.Done), Total: int32(p.Total), Object: p.Object}
}

func changeProto(c *labs.Change) *labv1.Change {
	return &labv1.Change{Lab: c.Lab, Created: c.Created, Removed: c.Removed, Recreated: append(c.Recreated, c.Reconfigured...),
		Unchanged: int32(len(c.Unchanged)), Agents: c.Agents}
}
