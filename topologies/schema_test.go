package topologies

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// The schema is written by hand for readability; this test keeps it in step
// with the structs the decoder uses.
func TestSchemaMatchesStructs(t *testing.T) {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			OneOf      []struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"oneOf"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(Schema, &s); err != nil {
		t.Fatal(err)
	}
	check := func(name string, props map[string]json.RawMessage, typ any) {
		var got, want []string
		for k := range props {
			got = append(got, k)
		}
		for k := range yamlFields(reflect.TypeOf(typ)) {
			want = append(want, k)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("schema %s has %v, the decoder knows %v", name, got, want)
		}
	}
	check("topology", s.Properties, Topology{})
	check("node", s.Defs["node"].Properties, NodeSpec{})
	check("route", s.Defs["route"].Properties, RouteSpec{})
	check("rule", s.Defs["rule"].Properties, RuleSpec{})
	check("link", s.Defs["link"].Properties, LinkSpec{})
	check("endpoint", s.Defs["endpoint"].OneOf[1].Properties, EndpointSpec{})
	var qdisc, queues struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(s.Defs["link"].Properties["qdisc"], &qdisc)
	_ = json.Unmarshal(s.Defs["link"].Properties["queues"], &queues)
	check("qdisc", qdisc.Properties, QdiscSpec{})
	check("queues", queues.Properties, QueuesSpec{})
}

func TestExamplesValidateAgainstSchema(t *testing.T) {
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("examples/*.yaml")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		// Round-trip through JSON so the validator sees JSON types.
		b, _ := json.Marshal(v)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
