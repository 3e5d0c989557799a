package traces

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// OTLP JSON is protojson with three differences from the proto3 JSON
// mapping: trace and span ids are hex, not base64; enums are numbers; field
// names are lowerCamelCase (protojson's default). protojson only knows the
// standard mapping, so ids are recoded in the generic JSON tree between it
// and the bytes. Only these object keys hold ids; attribute keys are values
// ({"key": ..., "value": ...}), so a user attribute named "traceId" is never
// touched.
var idFields = map[string]bool{"traceId": true, "spanId": true, "parentSpanId": true}

// marshalOTLPJSON encodes m as one line of OTLP JSON, ending in a newline.
// Going through encoding/json also makes the output stable (protojson
// deliberately varies its whitespace).
func marshalOTLPJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseEnumNumbers: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %T as JSON: %w", m, err)
	}
	tree, err := decodeTree(b)
	if err != nil {
		return nil, err
	}
	if err := recodeIDs(tree, base64ToHex); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, fmt.Errorf("encode %T as JSON: %w", m, err)
	}
	return buf.Bytes(), nil
}

// unmarshalOTLPJSON decodes OTLP JSON (hex ids) into m. Unknown fields are
// ignored, so what a newer OTLP (or Jaeger) adds still reads.
func unmarshalOTLPJSON(b []byte, m proto.Message) error {
	tree, err := decodeTree(b)
	if err != nil {
		return err
	}
	if err := recodeIDs(tree, hexToBase64); err != nil {
		return err
	}
	std, err := json.Marshal(tree)
	if err != nil {
		return fmt.Errorf("decode OTLP JSON: %w", err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(std, m); err != nil {
		return fmt.Errorf("decode OTLP JSON as %T: %w", m, err)
	}
	return nil
}

func decodeTree(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep int64 and double literals exactly as written
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	return tree, nil
}

// recodeIDs rewrites, in place, every string under an id key with conv.
func recodeIDs(v any, conv func(string) (string, error)) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && idFields[k] {
				c, err := conv(s)
				if err != nil {
					return fmt.Errorf("field %s: %w", k, err)
				}
				v[k] = c
				continue
			}
			if err := recodeIDs(x, conv); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range v {
			if err := recodeIDs(x, conv); err != nil {
				return err
			}
		}
	}
	return nil
}

func base64ToHex(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("id %q is not base64: %w", s, err)
	}
	return hex.EncodeToString(b), nil
}

func hexToBase64(s string) (string, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("id %q is not hex: %w", s, err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// MarshalTrace writes spans as OTLP JSON ({"resourceSpans": [...]}, ids in
// hex), the form the lab service sends a local trace in.
func MarshalTrace(rss []*tracepb.ResourceSpans) ([]byte, error) {
	return marshalOTLPJSON(&tracepb.TracesData{ResourceSpans: rss})
}

// UnmarshalTrace reads what MarshalTrace wrote.
func UnmarshalTrace(b []byte) ([]*tracepb.ResourceSpans, error) {
	var td tracepb.TracesData
	if err := unmarshalOTLPJSON(b, &td); err != nil {
		return nil, err
	}
	return td.GetResourceSpans(), nil
}
