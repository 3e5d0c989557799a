package traces

import (
	"context"
	"net/netip"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSpanAttributes(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	_, span := tp.Tracer("test").Start(context.Background(), "step")
	Summary(span, "rr", map[string]float64{"client.rtt_p50_ns": 23456.5, "client.msgs_per_s": 40000})
	span.SetAttributes(Server("tcp", netip.MustParseAddrPort("198.18.0.2:5201"))...)
	span.SetAttributes(Peer("udp", netip.MustParseAddrPort("[2001:db8::1]:40000"))...)
	span.End()

	got := map[string]string{}
	for _, kv := range exp.GetSpans()[0].Attributes {
		got[string(kv.Key)] = kv.Value.String()
	}
	want := map[string]string{
		"labctl.rr.client.rtt_p50_ns": "23456.5",
		"labctl.rr.client.msgs_per_s": "40000",
		"network.transport":           "udp", // Peer came last
		"server.address":              "198.18.0.2",
		"server.port":                 "5201",
		"network.peer.address":        "2001:db8::1",
		"network.peer.port":           "40000",
	}
	if len(got) != len(want) {
		t.Errorf("got %d attributes %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
