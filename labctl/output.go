package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

// emit writes v to w in the chosen format; table draws the human view.
// API messages are written with protojson (the field names of the stored
// results); YAML is made from the JSON so both use the same names.
func emit(w io.Writer, format string, v any, table func(*tabwriter.Writer)) error {
	switch format {
	case "json", "yaml":
		b, err := toJSON(v)
		if err != nil {
			return err
		}
		if format == "json" {
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			return err
		}
		out, err := yaml.Marshal(generic)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func toJSON(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(m)
		if err != nil {
			return nil, err
		}
		// protojson varies its whitespace on purpose from build to build;
		// indenting it again gives every build the same bytes.
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	return json.MarshalIndent(v, "", "  ")
}

func row(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	fmt.Fprintln(w)
}
