package traces

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// everyKind has one attribute of each kind the API can hold.
var everyKind = []attribute.KeyValue{
	attribute.Bool("b", true),
	attribute.Int64("i", -42),
	attribute.Float64("f", 0.25),
	attribute.String("s", "hello \"world\""),
	attribute.BoolSlice("bs", []bool{true, false}),
	attribute.Int64Slice("is", []int64{1, 1 << 40}),
	attribute.Float64Slice("fs", []float64{1.5, -2}),
	attribute.StringSlice("ss", []string{"a", "b"}),
	attribute.ByteSlice("by", []byte{0, 1, 0xff}),
	attribute.Slice("sl", attribute.StringValue("x"), attribute.IntValue(7)),
	attribute.Map("m", attribute.String("k", "v"), attribute.Bool("ok", false)),
	{Key: "e"},                               // an empty value
	attribute.String("traceId", "not an id"), // an attribute named like an id field
}

// recordSpans runs fn with a tracer whose finished spans it returns.
func recordSpans(t *testing.T, fn func(tr trace.Tracer)) []sdktrace.ReadOnlySpan {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	res := resource.NewSchemaless(attribute.String("service.name", "labctl"), KeyNode.String("n1"))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	fn(tp.Tracer("github.com/labctl/labctl/traces/test", trace.WithInstrumentationVersion("v1.2.3"),
		trace.WithInstrumentationAttributes(attribute.String("scope.attr", "yes"))))
	return exp.GetSpans().Snapshots()
}

func TestOTLPJSONRoundTrip(t *testing.T) {
	linked := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xaa, 1}, SpanID: trace.SpanID{0xbb, 2},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	spans := recordSpans(t, func(tr trace.Tracer) {
		ctx, root := tr.Start(context.Background(), "root", trace.WithAttributes(everyKind...))
		_, child := tr.Start(ctx, "child", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{attribute.Int("n", 3)}}))
		child.AddEvent("sample", trace.WithAttributes(attribute.Float64("rtt_ns", 1234.5)),
			trace.WithTimestamp(time.Unix(1767225600, 5)))
		child.SetStatus(codes.Error, "refused")
		child.End()
		root.SetStatus(codes.Ok, "")
		root.End()
	})
	rss := toOTLP(spans)
	if len(rss) != 1 || len(rss[0].ScopeSpans) != 1 || len(rss[0].ScopeSpans[0].Spans) != 2 {
		t.Fatalf("want 1 resource, 1 scope, 2 spans; got %v", rss)
	}
	line, err := marshalOTLPJSON(rss[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
		t.Errorf("not one line: %q", line)
	}
	// OTLP JSON: hex ids, enums as numbers.
	child, root := spans[0], spans[1]
	for _, want := range []string{
		`"traceId":"` + root.SpanContext().TraceID().String() + `"`,
		`"spanId":"` + child.SpanContext().SpanID().String() + `"`,
		`"parentSpanId":"` + root.SpanContext().SpanID().String() + `"`,
		`"traceId":"aa01000000000000000000000000000`,
		`"kind":2`,
		`"code":2`,
		`"key":"traceId","value":{"stringValue":"not an id"}`,
	} {
		if !strings.Contains(string(line), want) {
			t.Errorf("JSON lacks %s:\n%s", want, line)
		}
	}
	var back tracepb.ResourceSpans
	if err := unmarshalOTLPJSON(line, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmpProto(rss[0], &back); diff != "" {
		t.Errorf("round trip changed the spans: %s", diff)
	}

	// And what came back is what the SDK recorded.
	got := back.ScopeSpans[0]
	if got.Scope.Name != "github.com/labctl/labctl/traces/test" || got.Scope.Version != "v1.2.3" || len(got.Scope.Attributes) != 1 {
		t.Errorf("scope = %v", got.Scope)
	}
	c, r := got.Spans[0], got.Spans[1]
	if c.Name != "child" || r.Name != "root" {
		t.Fatalf("names %q, %q", c.Name, r.Name)
	}
	if hex.EncodeToString(c.ParentSpanId) != root.SpanContext().SpanID().String() || len(r.ParentSpanId) != 0 {
		t.Errorf("parents: child %x, root %x", c.ParentSpanId, r.ParentSpanId)
	}
	if c.Kind != tracepb.Span_SPAN_KIND_SERVER || r.Kind != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Errorf("kinds %v, %v", c.Kind, r.Kind)
	}
	if c.Status.Code != tracepb.Status_STATUS_CODE_ERROR || c.Status.Message != "refused" || r.Status.Code != tracepb.Status_STATUS_CODE_OK {
		t.Errorf("status %v, %v", c.Status, r.Status)
	}
	if len(c.Events) != 1 || c.Events[0].Name != "sample" || c.Events[0].TimeUnixNano != 1767225600_000000005 {
		t.Errorf("events %v", c.Events)
	}
	if len(c.Links) != 1 || hex.EncodeToString(c.Links[0].SpanId) != linked.SpanID().String() ||
		c.Links[0].Flags != 0x301 || len(c.Links[0].Attributes) != 1 {
		t.Errorf("links %v", c.Links)
	}
	if c.Flags != 0x101 {
		t.Errorf("child flags %#x, want sampled with a local parent (0x101)", c.Flags)
	}
	if uint64(root.StartTime().UnixNano()) != r.StartTimeUnixNano || uint64(root.EndTime().UnixNano()) != r.EndTimeUnixNano {
		t.Errorf("root times %d..%d", r.StartTimeUnixNano, r.EndTimeUnixNano)
	}
	wantAttrs := map[string]string{
		"b": "true", "i": "-42", "f": "0.25", "s": `"hello \"world\""`, "bs": "[true,false]",
		"is": "[1,1099511627776]", "fs": "[1.5,-2]", "ss": "[a,b]", "by": "0001ff", "sl": "[x,7]",
		"m": "{k=v,ok=false}", "e": "", "traceId": `"not an id"`,
	}
	if len(r.Attributes) != len(wantAttrs) {
		t.Errorf("root has %d attributes, want %d", len(r.Attributes), len(wantAttrs))
	}
	for _, kv := range r.Attributes {
		if got := formatValue(kv.Value); got != wantAttrs[kv.Key] {
			t.Errorf("attribute %s = %s, want %s", kv.Key, got, wantAttrs[kv.Key])
		}
	}
	if svc := serviceLabel(back.Resource); svc != "labctl/n1" {
		t.Errorf("resource service %q", svc)
	}
}

func cmpProto(want, got proto.Message) string {
	if proto.Equal(want, got) {
		return ""
	}
	return "want " + protoText(want) + "\ngot  " + protoText(got)
}

func protoText(m proto.Message) string {
	b, _ := marshalOTLPJSON(m)
	return string(b)
}

func TestUnmarshalOTLPJSONErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not json", `{`, "decode JSON"},
		{"id not hex", `{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}`, "field traceId"},
		{"wrong type", `{"scopeSpans":"x"}`, "decode OTLP JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := unmarshalOTLPJSON([]byte(tt.in), &tracepb.ResourceSpans{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if err := unmarshalOTLPJSON([]byte(`{"futureField":1}`), &tracepb.ResourceSpans{}); err != nil {
		t.Errorf("unknown field: %v", err)
	}
}
