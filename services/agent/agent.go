// Package agent is the gRPC AgentService that runs inside each node of a
// lab. The process serving it was started inside the node's network
// namespace, so every thread of it, and every socket an experiment role
// opens, belongs to the node.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/settings"
	agentv1 "github.com/labctl/labctl/proto/labctl/agent/v1"
	"github.com/labctl/labctl/services/rpcerr"
	"github.com/labctl/labctl/traces"
)

var tracer = otel.Tracer("github.com/labctl/labctl/services/agent")

// Server implements AgentService for one node.
type Server struct {
	agentv1.UnimplementedAgentServiceServer
	Lab, Node, Version string
	Registry           *experiments.Registry
	// SettingsDir holds the journals of the settings this node's roles
	// change (<run>-<role>.settings.jsonl), a directory of the node's own
	// so that looking through it costs the same however many nodes the
	// lab has; a journal left there by a
	// process that died is restored by RestoreSettings.
	SettingsDir string
	// Host runs a function in the host's network namespace (for global
	// settings); nil runs it where the agent is.
	Host settings.Scope
	// LeaseDir holds the leases of host settings ("": the default, one
	// for the machine).
	LeaseDir string
	// FlushSpans, when set, writes the spans that ended to the local trace
	// store; a role calls it before it reports, so that the run's trace is
	// whole when its result arrives (spans otherwise wait for their batch).
	FlushSpans func(context.Context) error

	mu      sync.Mutex
	running map[string]map[*roleRun]bool // run id -> its roles running here
}

// roleRun is one role running in this agent, for StopRun.
type roleRun struct {
	role string
	stop context.CancelCauseFunc
}

// errStopped is the cause of a role's end when StopRun stopped it.
var errStopped = errors.New("stopped by StopRun")

// register records a running role until the returned function is called.
func (s *Server) register(runID string, rr *roleRun) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		s.running = map[string]map[*roleRun]bool{}
	}
	if s.running[runID] == nil {
		s.running[runID] = map[*roleRun]bool{}
	}
	s.running[runID][rr] = true
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.running[runID], rr)
		if len(s.running[runID]) == 0 {
			delete(s.running, runID)
		}
	}
}

// StopRun stops the roles of a run running here; each one's RunRole ends
// once it has restored what it changed.
func (s *Server) StopRun(_ context.Context, req *agentv1.StopRunRequest) (*agentv1.StopRunResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &agentv1.StopRunResponse{}
	for rr := range s.running[req.GetRunId()] {
		rr.stop(errStopped)
		out.Roles = append(out.Roles, rr.role)
	}
	slices.Sort(out.Roles)
	return out, nil
}

// RestoreSettings undoes the settings changes that a previous agent of this
// node left behind when it died.
func (s *Server) RestoreSettings() ([]string, error) {
	return settings.RestoreAll(filepath.Join(s.SettingsDir, "*.settings.jsonl"), settings.Options{Host: s.Host, LeaseDir: s.LeaseDir}, nil)
}

// NewGRPCServer returns a gRPC server with the agent, the standard health
// service (SERVING once built) and reflection (grpcurl works on the
// socket). opts come first so callers can add stats handlers.
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(opts...)
	agentv1.RegisterAgentServiceServer(g, s)
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(agentv1.AgentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return g
}

// safe keeps a run id usable in a file name.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '*' {
			return '_'
		}
		return r
	}, s)
}

// GetInfo describes the agent and its node.
func (s *Server) GetInfo(ctx context.Context, _ *agentv1.GetInfoRequest) (*agentv1.GetInfoResponse, error) {
	return &agentv1.GetInfoResponse{
		Lab: s.Lab, Node: s.Node, Version: s.Version, Pid: int32(os.Getpid()),
		Environment: report.Node(ctx, s.Node, nil),
	}, nil
}

// ListExperiments describes the registry.
func (s *Server) ListExperiments(context.Context, *agentv1.ListExperimentsRequest) (*agentv1.ListExperimentsResponse, error) {
	return &agentv1.ListExperimentsResponse{Experiments: s.Registry.Specs()}, nil
}

// RunRole runs one role of one step and streams its events.
func (s *Server) RunRole(req *agentv1.RunRoleRequest, stream agentv1.AgentService_RunRoleServer) error {
	exp, ok := s.Registry.Get(req.GetExperiment())
	if !ok {
		return status.Errorf(codes.NotFound, "node %s: no experiment %q", s.Node, req.GetExperiment())
	}
	if !slices.Contains(exp.Spec().GetRoles(), req.GetRole()) {
		return status.Errorf(codes.InvalidArgument, "node %s: experiment %s has no role %q (roles: %v)", s.Node, req.GetExperiment(), experiments.Role(req.GetRole()), exp.Spec().GetRoles())
	}
	params, err := experiments.Validate(exp.Spec(), req.GetStep().GetParams())
	if err != nil {
		return rpcerr.Status(err, codes.InvalidArgument)
	}
	peers := map[string]netip.AddrPort{}
	for role, addr := range req.GetPeers() {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "node %s: peer %s address %q: %v", s.Node, role, addr, err)
		}
		peers[role] = ap
	}
	// Events go out from the role's goroutine only; the mutex keeps that
	// true should a role ever report progress from a helper goroutine
	// (grpc-go forbids concurrent Send on one stream).
	var mu sync.Mutex
	send := func(r *agentv1.RunRoleResponse) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(r) // a failed send means the caller went away; ctx ends the role
	}
	env := experiments.NewEnv(req.GetRunId(), s.Node, experiments.Role(req.GetRole()), req.GetStep(), params, peers,
		func(port int) {
			send(&agentv1.RunRoleResponse{Event: &agentv1.RunRoleResponse_Ready{Ready: &agentv1.Ready{Port: int32(port)}}})
		},
		func(msg string) {
			send(&agentv1.RunRoleResponse{Event: &agentv1.RunRoleResponse_Progress{Progress: &agentv1.Progress{Message: msg}}})
		})
	journal, err := settings.Open(filepath.Join(s.SettingsDir, fmt.Sprintf("%s-%s.settings.jsonl", safe(req.GetRunId()), req.GetRole())), settings.Options{
		Host: s.Host, LeaseDir: s.LeaseDir, Waiting: func(msg string) { env.Progressf("%s", msg) },
		Holder: fmt.Sprintf("run %s, lab %s, node %s, role %s", req.GetRunId(), s.Lab, s.Node, req.GetRole())})
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "node %s: %v", s.Node, err)
	}
	env.Settings = journal
	ctx, stop := context.WithCancelCause(stream.Context())
	defer stop(nil)
	defer s.register(req.GetRunId(), &roleRun{role: req.GetRole(), stop: stop})()
	ctx, span := tracer.Start(ctx, "role "+req.GetExperiment()+" "+req.GetRole(), trace.WithAttributes(
		traces.KeyRunID.String(req.GetRunId()), traces.KeyExperiment.String(req.GetExperiment()),
		attribute.String("labctl.role", req.GetRole()), attribute.String("labctl.variant", req.GetStep().GetVariant()),
		attribute.Int("labctl.repeat", int(req.GetStep().GetRepeat()))))
	report, err := exp.Run(ctx, env)
	if rerr := journal.Restore(); rerr != nil {
		err = errors.Join(err, fmt.Errorf("restore settings: %w", rerr))
	}
	if errors.Is(context.Cause(ctx), errStopped) {
		span.AddEvent("stopped")
		span.End()
		if err != nil && !errors.Is(err, context.Canceled) {
			return status.Errorf(codes.Canceled, "node %s: %s %s stopped: %v", s.Node, req.GetExperiment(), req.GetRole(), err)
		}
		return status.Errorf(codes.Canceled, "node %s: %s %s stopped; what it changed is restored", s.Node, req.GetExperiment(), req.GetRole())
	}
	if err != nil {
		traces.Fail(span, err)
		span.End()
		return rpcerr.Status(fmt.Errorf("node %s: %s %s: %w", s.Node, req.GetExperiment(), req.GetRole(), err), codes.Aborted)
	}
	traces.Summary(span, req.GetRole(), report.GetMetrics())
	for _, e := range report.GetEvidence() {
		span.SetAttributes(traces.Number("labctl.evidence."+e.GetName(), e.GetValue()))
	}
	for _, n := range report.GetNotes() {
		span.AddEvent("note", trace.WithAttributes(attribute.String("labctl.note", n)))
	}
	span.End()
	if s.FlushSpans != nil {
		_ = s.FlushSpans(ctx) // a failed write is the store's to report at shutdown
	}
	env.Ready(0)
	send(&agentv1.RunRoleResponse{Event: &agentv1.RunRoleResponse_Report{Report: report}})
	return nil
}

// ClientOptions are the dial options of a client of agents: the statuses
// an agent answers with become failures of the kind their codes mean
// (internal/fault), so that package runs, which calls agents, sees the
// domain's errors and never a gRPC status.
func ClientOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return rpcerr.FromStatus(invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, rpcerr.FromStatus(err)
			}
			return domainStream{s}, nil
		}),
	}
}

type domainStream struct{ grpc.ClientStream }

func (s domainStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if errors.Is(err, io.EOF) {
		return err
	}
	return rpcerr.FromStatus(err)
}

func (s domainStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if errors.Is(err, io.EOF) {
		return err
	}
	return rpcerr.FromStatus(err)
}
