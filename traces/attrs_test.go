package traces

import (
	"context"
	"net/netip"
	"testing"

	"go.opentelemetry.io/otel/attribute"
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

// TestNumber: a count is an integer attribute; a measurement keeps 6
// significant digits.
func TestNumber(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want attribute.Value
	}{
		{40000, attribute.Int64Value(40000)},
		{0, attribute.Int64Value(0)},
		{-3, attribute.Int64Value(-3)},
		{23456.54321, attribute.Float64Value(23456.5)},
		{1.0 / 3, attribute.Float64Value(0.333333)},
		{1e300, attribute.Float64Value(1e300)}, // whole, but beyond an int64's exact range
	} {
		if got := Number("k", tt.v).Value; got != tt.want {
			t.Errorf("Number(%v) = %v (%v), want %v (%v)", tt.v, got.String(), got.Type(), tt.want.String(), tt.want.Type())
		}
	}
}
