package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"

	"github.com/labctl/labctl/labs"
	agentv1 "github.com/labctl/labctl/proto/labctl/agent/v1"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/traces"
)

// tracer names the CLI's own spans.
var tracer = otel.Tracer("github.com/labctl/labctl/labctl")

// defaultJaegerURL is where `labctl trace` and the trace links look.
const defaultJaegerURL = "http://localhost:16686"

// traceDir is where this machine keeps its local copies of traces.
func traceDir() string { return filepath.Join(labs.DefaultHost(version).StateDir, "traces") }

// tracing starts the OpenTelemetry SDK for a command that makes a trace
// (up, down, run, serve). Spans go to the OTLP endpoint and to the local
// store; nothing waits on a collector that is not there.
func (g *globals) tracing(ctx context.Context, service string) (*traces.Provider, error) {
	return traces.Setup(ctx, traces.Options{Service: service, Version: version, Endpoint: g.otlpEndpoint, LocalDir: traceDir()})
}

// traced runs fn under a root span named name and reports where the trace
// is once the spans are flushed.
func (g *globals) traced(ctx context.Context, name string, attrs []attribute.KeyValue, fn func(ctx context.Context) error) error {
	p, err := g.tracing(ctx, "labctl")
	if err != nil {
		return err
	}
	ctx, span := tracer.Start(ctx, name, trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindClient))
	err = fn(ctx)
	traces.Fail(span, err)
	span.End()
	sctx, cancel := context.WithTimeout(context.Background(), traces.ShutdownTimeout+time.Second)
	defer cancel()
	serr := p.Shutdown(sctx)
	if !g.quiet && !p.Disabled() {
		id := span.SpanContext().TraceID().String()
		if p.ExportFailed() {
			fmt.Fprintf(os.Stderr, "trace %s (no collector reached; kept locally: labctl trace %s)\n", id, id)
		} else {
			fmt.Fprintf(os.Stderr, "trace %s (%s)\n", id, traces.UILink(g.jaegerURL, id))
		}
	}
	if err == nil && serr != nil {
		fmt.Fprintln(os.Stderr, "labctl: keeping the trace locally:", serr)
	}
	return err
}

// traceID is the id of the trace ctx belongs to, for results and changes.
func traceID(ctx context.Context) string {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return "" // tracing is off
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// grpc options that carry trace context across the API.
// serverTracing traces the calls a server serves, except the read-only
// ones (status, lists, health checks, an agent's GetInfo): a trace is for
// something the user did to a lab, and status every second would bury the
// runs under one-span traces.
func serverTracing() grpc.ServerOption {
	return grpc.StatsHandler(untracedReadOnly{otelgrpc.NewServerHandler(otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
		return !readOnly[info.FullMethodName]
	}))})
}

// untracedReadOnly runs a read-only call's handler under a parent that is
// valid and not sampled, so that what the handler traces on its way (status
// observes the kernel: netns.observe) records nothing. Without a parent,
// those spans would be the roots of one-span traces of their own in labctl
// serve; the SDK's default sampler follows the parent's decision. The ids
// are random, so that a sampler that ignores the parent (OTEL_TRACES_SAMPLER)
// does not gather every read-only call into one trace.
type untracedReadOnly struct{ stats.Handler }

func (h untracedReadOnly) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	ctx = h.Handler.TagRPC(ctx, info)
	if !readOnly[info.FullMethodName] {
		return ctx
	}
	var c trace.SpanContextConfig
	_, _ = rand.Read(c.TraceID[:])
	_, _ = rand.Read(c.SpanID[:])
	return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(c))
}

var readOnly = map[string]bool{
	labv1.LabService_GetStatus_FullMethodName:       true,
	labv1.LabService_ListLabs_FullMethodName:        true,
	labv1.LabService_ListExperiments_FullMethodName: true,
	labv1.LabService_ListResults_FullMethodName:     true,
	labv1.LabService_GetResult_FullMethodName:       true,
	labv1.LabService_GetTrace_FullMethodName:        true,
	labv1.LabService_CompareResults_FullMethodName:  true,
	labv1.LabService_GetReport_FullMethodName:       true,
	agentv1.AgentService_GetInfo_FullMethodName:     true,
	healthpb.Health_Check_FullMethodName:            true,
}

// propagation carries the trace context to the in-process lab service
// without a client span of its own: the server's span of the same call
// would only repeat it, one level deeper.
func propagation() []grpc.DialOption {
	inject := func(ctx context.Context) context.Context {
		md, _ := metadata.FromOutgoingContext(ctx)
		md = md.Copy()
		otel.GetTextMapPropagator().Inject(ctx, metadataCarrier(md))
		return metadata.NewOutgoingContext(ctx, md)
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(inject(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(inject(ctx), desc, cc, method, opts...)
		}),
	}
}

// metadataCarrier lets a propagator write gRPC metadata.
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (m metadataCarrier) Set(key, value string) { metadata.MD(m).Set(key, value) }
func (m metadataCarrier) Keys() []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
func clientTracing() grpc.DialOption { return grpc.WithStatsHandler(otelgrpc.NewClientHandler()) }
