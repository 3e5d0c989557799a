// Package traces sets up OpenTelemetry for labctl's processes (the CLI and
// the agents): spans go over OTLP to a collector such as Jaeger and are also
// kept locally as OTLP JSON, so that `labctl trace` can show a run whether
// or not anything listened. It also holds the span attribute helpers the
// experiments share, the Jaeger query client and the terminal waterfall.
package traces

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Options configures Setup.
type Options struct {
	Service string // service.name: "labctl" or "labctl-agent"
	Version string // service.version: labctl's
	// Instance is service.instance.id: what tells apart the processes of
	// one service (an agent's lab/node), so that a trace viewer shows n1
	// and n2 as two instances of labctl-agent.
	Instance   string
	Attributes []attribute.KeyValue // more resource attributes: KeyLab, KeyNode
	// Endpoint is where OTLP goes, with the meaning of
	// OTEL_EXPORTER_OTLP_ENDPOINT: "host:port" (plain text) or a URL
	// "http://host:port" / "https://host:port", for HTTP optionally with a
	// base path that /v1/traces is appended to. A missing port is the
	// protocol's (4317 for gRPC, 4318 for HTTP). "" takes
	// OTEL_EXPORTER_OTLP_ENDPOINT, else localhost with that port; "none"
	// disables OTLP.
	Endpoint string
	// Protocol is "grpc" or "http/protobuf"; "" takes
	// OTEL_EXPORTER_OTLP_PROTOCOL, else "grpc".
	Protocol string
	// Dial, when set, makes the exporter's TCP connections (see
	// DialInNamespace); nil dials normally.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// LocalDir is the local store (see Read); "" keeps no local copy.
	LocalDir string
}

// Bounds on talking to the collector. An export (with its retries) gives up
// after ExportTimeout, and Shutdown returns after ShutdownTimeout at most,
// so a missing or stuck collector costs a command at most that much. The
// exporters' defaults (10 s per export, retries for a minute) are for
// long-running services that must not lose data; labctl keeps a local copy.
const (
	ExportTimeout   = 2 * time.Second
	ShutdownTimeout = 2 * time.Second
)

// localBatchDelay is how long the local store waits to batch spans: short,
// since the CLI reads the store right after a run.
const localBatchDelay = 200 * time.Millisecond

// otlpBatchDelay is how long finished spans wait before they go to the
// collector: short, because an agent's spans should be in Jaeger by the time
// the user asks for the trace of the run that just ended (the SDK's default
// is 5 s).
const otlpBatchDelay = 500 * time.Millisecond

// Provider is the tracing set up by Setup.
type Provider struct {
	tp     *sdktrace.TracerProvider
	local  sdktrace.SpanProcessor // nil without LocalDir
	otlp   sdktrace.SpanProcessor // nil with Endpoint "none"
	target string                 // the OTLP endpoint, for the log line

	failed   atomic.Bool
	failOnce sync.Once
	shutdown sync.Once
	err      error
}

// Setup builds the tracer provider, installs it as the global one together
// with the W3C trace context and baggage propagators, and returns it. It does
// not connect: the OTLP connection is made on the first export, and when
// nothing answers, exports fail quietly (see ExportFailed).
func Setup(ctx context.Context, o Options) (*Provider, error) {
	if o.Service == "" {
		return nil, errors.New("traces: Options.Service is empty")
	}
	ep, err := resolveEndpoint(o.Endpoint, o.Protocol, os.Getenv)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, o)
	if err != nil {
		return nil, err
	}
	p := &Provider{}
	if disabled() {
		// OTEL_SDK_DISABLED=true, the standard switch: no spans at all, the
		// global provider stays the no-op one (benchmarks compare with it).
		p.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res))
		return p, nil
	}
	var exp sdktrace.SpanExporter
	if ep != nil {
		if exp, err = newOTLPExporter(ctx, ep, o.Dial); err != nil {
			return nil, err
		}
		p.target = ep.String()
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if o.LocalDir != "" {
		node := ""
		for _, kv := range o.Attributes {
			if kv.Key == KeyNode {
				node = kv.Value.String()
			}
		}
		st := &storeExporter{dir: o.LocalDir, file: storeFileName(o.Service, node, os.Getpid())}
		p.local = newBatcher(st, localBatchDelay, ShutdownTimeout)
		opts = append(opts, sdktrace.WithSpanProcessor(p.local))
	}
	if exp != nil {
		p.otlp = newBatcher(&watchedExporter{SpanExporter: exp, p: p}, otlpBatchDelay, ExportTimeout)
		opts = append(opts, sdktrace.WithSpanProcessor(p.otlp))
	}
	p.tp = sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(p.tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return p, nil
}

// disabled reports OTEL_SDK_DISABLED=true (case-insensitive, as the
// specification says).
func disabled() bool { return strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") }

// Disabled reports whether tracing was switched off with OTEL_SDK_DISABLED.
func (p *Provider) Disabled() bool {
	return p.local == nil && p.otlp == nil && p.target == "" && disabled()
}

// TracerProvider returns the provider Setup installed globally, for code
// that takes one explicitly.
func (p *Provider) TracerProvider() trace.TracerProvider { return p.tp }

// FlushLocal writes the spans that have ended to the local store now,
// rather than when their batch is due; the OTLP export keeps its own pace
// (a collector that does not answer must not hold the caller).
func (p *Provider) FlushLocal(ctx context.Context) error {
	if p.local == nil {
		return nil
	}
	return p.local.ForceFlush(ctx)
}

// ExportFailed reports whether any OTLP export failed or was cut short by
// Shutdown, so some spans may be only in the local store.
func (p *Provider) ExportFailed() bool { return p.failed.Load() }

// Shutdown flushes and stops both exports within ShutdownTimeout (or ctx,
// if shorter). A failed OTLP export is not an error (see ExportFailed); a
// failed local write is. Calling it again returns the first result.
func (p *Provider) Shutdown(ctx context.Context) error {
	p.shutdown.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, ShutdownTimeout)
		defer cancel()
		var errs []error
		// The local copy first: a stuck collector must not eat its share
		// of the budget.
		if p.local != nil {
			if err := p.local.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("traces: flush local store: %w", err))
			}
		}
		if p.otlp != nil {
			// Timing out here leaves the last batch unsent.
			if err := p.otlp.Shutdown(ctx); err != nil {
				p.exportFailed(err)
			}
		}
		// The processors are stopped; this only retires the provider, and
		// must not fail because the budget above ran out.
		if err := p.tp.Shutdown(context.WithoutCancel(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("traces: shut down provider: %w", err))
		}
		p.err = errors.Join(errs...)
	})
	return p.err
}

// exportFailed records a failed OTLP export: one debug line per process
// lifetime, since a missing collector fails every batch the same way.
func (p *Provider) exportFailed(err error) {
	p.failed.Store(true)
	p.failOnce.Do(func() {
		slog.Debug("OTLP export failed; spans are kept in the local store only", "endpoint", p.target, "error", err)
	})
}

// watchedExporter reports OTLP failures to its Provider instead of to the
// batch processor, which would pass each one to otel.Handle and so print a
// line per failed batch.
type watchedExporter struct {
	sdktrace.SpanExporter
	p *Provider
}

func (e *watchedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.p.exportFailed(err)
	}
	return nil
}

func newResource(ctx context.Context, o Options) (*resource.Resource, error) {
	attrs := append([]attribute.KeyValue{semconv.ServiceName(o.Service)}, o.Attributes...)
	if o.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(o.Version))
	}
	if o.Instance != "" {
		attrs = append(attrs, semconv.ServiceInstanceID(o.Instance))
	}
	// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME come first so that
	// ours win: agents inherit the CLI's environment, and an
	// OTEL_SERVICE_NAME meant for the CLI must not rename them.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithProcessPID(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("traces: resource: %w", err)
	}
	return res, nil
}

// endpoint is a resolved OTLP destination.
type endpoint struct {
	protocol string // "grpc" or "http/protobuf"
	hostPort string
	insecure bool
	path     string // HTTP only: the traces path
}

func (e *endpoint) String() string {
	scheme := "https"
	if e.insecure {
		scheme = "http"
	}
	return fmt.Sprintf("%s %s://%s%s", e.protocol, scheme, e.hostPort, e.path)
}

// resolveEndpoint applies Options.Endpoint and Options.Protocol, and the
// standard variables in their place; nil means OTLP is disabled.
func resolveEndpoint(raw, protocol string, getenv func(string) string) (*endpoint, error) {
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	port := "4318"
	switch protocol {
	case "", "grpc":
		protocol, port = "grpc", "4317"
	case "http/protobuf":
	default:
		return nil, fmt.Errorf("traces: OTLP protocol %q: want grpc or http/protobuf", protocol)
	}
	if raw == "" {
		raw = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if raw == "none" {
		return nil, nil
	}
	if raw == "" {
		raw = "localhost"
	}
	ep := &endpoint{protocol: protocol, insecure: true}
	host := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("traces: OTLP endpoint %q: %w", raw, err)
		}
		switch u.Scheme {
		case "http":
		case "https":
			ep.insecure = false
		default:
			return nil, fmt.Errorf("traces: OTLP endpoint %q: scheme %q, want http or https", raw, u.Scheme)
		}
		host = u.Host
		ep.path = strings.TrimSuffix(u.Path, "/")
	}
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	if host == "" {
		return nil, fmt.Errorf("traces: OTLP endpoint %q: no host", raw)
	}
	ep.hostPort = net.JoinHostPort(host, port)
	if protocol == "grpc" {
		ep.path = "" // gRPC has no path: the service name is the route
	} else {
		ep.path += "/v1/traces"
	}
	return ep, nil
}

func newOTLPExporter(ctx context.Context, ep *endpoint, dial func(context.Context, string) (net.Conn, error)) (sdktrace.SpanExporter, error) {
	// No retries: with a closed port they would hold every export (and the
	// CLI's exit) for the whole ExportTimeout, and the local copy already
	// keeps what a failed export loses.
	var exp sdktrace.SpanExporter
	var err error
	if ep.protocol == "grpc" {
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(ep.hostPort),
			otlptracegrpc.WithTimeout(ExportTimeout),
			otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}),
		}
		if ep.insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if dial != nil {
			opts = append(opts, otlptracegrpc.WithDialOption(grpc.WithContextDialer(dial)))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	} else {
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(ep.hostPort),
			otlptracehttp.WithURLPath(ep.path),
			otlptracehttp.WithTimeout(ExportTimeout),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
		}
		if ep.insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if dial != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
			// A client of our own replaces WithTimeout, so it carries the bound.
			opts = append(opts, otlptracehttp.WithHTTPClient(&http.Client{Transport: tr, Timeout: ExportTimeout}))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("traces: OTLP exporter for %s: %w", ep, err)
	}
	return exp, nil
}
