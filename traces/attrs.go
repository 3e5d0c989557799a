package traces

import (
	"math"
	"net/netip"
	"sort"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// labctl's own attribute keys. Lab and node are resource attributes (every
// span of an agent belongs to one node); the others go on spans.
const (
	KeyLab        = attribute.Key("labctl.lab")
	KeyNode       = attribute.Key("labctl.node")
	KeyRunID      = attribute.Key("labctl.run.id")
	KeyExperiment = attribute.Key("labctl.experiment")
)

// The semantic convention keys labctl uses, from semconv v1.43.0: the
// version the SDK v1.47 resource detectors use, so that every span and the
// resource carry one schema URL.
const (
	KeyNetworkTransport   = semconv.NetworkTransportKey   // "tcp", "udp", "unix"
	KeyNetworkPeerAddress = semconv.NetworkPeerAddressKey // the other side, as seen by a server
	KeyNetworkPeerPort    = semconv.NetworkPeerPortKey
	KeyServerAddress      = semconv.ServerAddressKey // the server, as a client names it
	KeyServerPort         = semconv.ServerPortKey
)

// Server returns the attributes of a client span talking to server over
// transport ("tcp", "udp", ...).
func Server(transport string, server netip.AddrPort) []attribute.KeyValue {
	return []attribute.KeyValue{
		KeyNetworkTransport.String(transport),
		KeyServerAddress.String(server.Addr().String()),
		KeyServerPort.Int(int(server.Port())),
	}
}

// Peer returns the attributes of a server span serving peer over transport.
func Peer(transport string, peer netip.AddrPort) []attribute.KeyValue {
	return []attribute.KeyValue{
		KeyNetworkTransport.String(transport),
		KeyNetworkPeerAddress.String(peer.Addr().String()),
		KeyNetworkPeerPort.Int(int(peer.Port())),
	}
}

// Summary sets one attribute labctl.<prefix>.<name> per metric on span, in
// name order. Experiments record the summary of a step this way rather than
// one event per sample: the SDK keeps only 128 events per span and drops the
// rest, and the full data belongs in the result, not in the trace.
func Summary(span trace.Span, prefix string, metrics map[string]float64) {
	names := make([]string, 0, len(metrics))
	for name := range metrics {
		names = append(names, name)
	}
	sort.Strings(names)
	kvs := make([]attribute.KeyValue, 0, len(names))
	for _, name := range names {
		kvs = append(kvs, Number("labctl."+prefix+"."+name, metrics[name]))
	}
	span.SetAttributes(kvs...)
}

// Fail records err on span as its error and status, for a span that ends
// in failure; nil changes nothing. The caller still ends the span.
func Fail(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// Number is a measured number as an attribute: a count as an integer,
// anything else with the 6 significant digits a measurement has, not
// float64's 17.
func Number(key string, v float64) attribute.KeyValue {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return attribute.Int64(key, int64(v))
	}
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return attribute.Float64(key, r)
}
