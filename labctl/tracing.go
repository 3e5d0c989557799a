package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/labctl/labctl/labs"
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
	return traces.Setup(ctx, traces.Options{Service: service, Endpoint: g.otlpEndpoint, LocalDir: traceDir()})
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
func serverTracing() grpc.ServerOption { return grpc.StatsHandler(otelgrpc.NewServerHandler()) }
func clientTracing() grpc.DialOption   { return grpc.WithStatsHandler(otelgrpc.NewClientHandler()) }
