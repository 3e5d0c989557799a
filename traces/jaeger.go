package traces

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// maxJaegerResponse bounds what FetchJaeger reads: a labctl run is a few
// hundred spans, far below this.
const maxJaegerResponse = 64 << 20

// FetchJaeger gets a trace from Jaeger's query API v3 at queryURL (e.g.
// http://127.0.0.1:16686): GET /api/v3/traces/{id}, which answers
// {"result": <OTLP JSON TracesData>}, or 404 with {"error": {...}} when it
// does not know the trace (then the error wraps ErrNotFound). ctx bounds the
// whole request.
func FetchJaeger(ctx context.Context, queryURL, traceID string) ([]*tracepb.ResourceSpans, error) {
	id, err := ParseTraceID(traceID)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(queryURL, "/") + "/api/v3/traces/" + id
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jaeger query %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jaeger query: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJaegerResponse))
	if err != nil {
		return nil, fmt.Errorf("jaeger query %s: read response: %w", u, err)
	}
	var envelope struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	jsonErr := json.Unmarshal(body, &envelope)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		msg := "no such trace"
		if jsonErr == nil && envelope.Error != nil {
			msg = envelope.Error.Message
		}
		return nil, fmt.Errorf("jaeger query %s: %s: %w", u, msg, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		msg := strings.TrimSpace(string(body))
		if jsonErr == nil && envelope.Error != nil {
			msg = envelope.Error.Message
		}
		return nil, fmt.Errorf("jaeger query %s: %s: %s", u, resp.Status, msg)
	case jsonErr != nil:
		return nil, fmt.Errorf("jaeger query %s: response: %w", u, jsonErr)
	case len(envelope.Result) == 0:
		return nil, fmt.Errorf("jaeger query %s: response has no result", u)
	}
	var td tracepb.TracesData
	if err := unmarshalOTLPJSON(envelope.Result, &td); err != nil {
		return nil, fmt.Errorf("jaeger query %s: result: %w", u, err)
	}
	if len(td.ResourceSpans) == 0 {
		return nil, fmt.Errorf("jaeger query %s: empty result: %w", u, ErrNotFound)
	}
	return td.ResourceSpans, nil
}

// UILink is the Jaeger UI page of a trace.
func UILink(queryURL, traceID string) string {
	return strings.TrimSuffix(queryURL, "/") + "/trace/" + strings.ToLower(traceID)
}
