package topologies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/golden"
	"github.com/labctl/labctl/internal/sysctl/sysctltest"
)

func TestExamplesPlanToGolden(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) < 5 {
		t.Fatalf("expected the five example topologies, found %v", files)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "testdata/plans/"+name+".json", append(got, '\n'))
			// Planning is deterministic: the same file, the same plan.
			again, _ := Load(f)
			if b, _ := json.Marshal(again); !bytes.Equal(b, mustJSON(t, p)) {
				t.Error("planning the same file twice gave different plans")
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var located = regexp.MustCompile(`^testdata/errors/[a-z0-9-]+\.(yaml|conflist):\d+:\d+: `)

func TestErrorCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/errors/*.yaml")
	if len(files) < 30 {
		t.Fatalf("the error corpus has %d files; keep at least 30", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			p, err := Load(f)
			if err == nil {
				t.Fatalf("a bad topology was accepted: %+v", p)
			}
			if !IsInvalid(err) {
				t.Errorf("error is not a topology error: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if name != "empty" && !located.MatchString(line) {
					t.Errorf("error has no file:line:column: %q", line)
				}
			}
			golden.Check(t, "testdata/errors/"+name+".err", []byte(err.Error()+"\n"))
		})
	}
}

func TestEndpointColumnPointsAtInterface(t *testing.T) {
	src := "name: lab\nnodes:\n  n1: {}\n  n2: {}\nlinks:\n  - endpoints: [n1:eth0, n2:abcdefghijklmnopq]\n"
	_, err := decodeAndPlan(t, src)
	want := "t.yaml:6:29: links[0].endpoints[1].interface: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want prefix %q", err, want)
	}
}

func decodeAndPlan(t *testing.T, src string) (*Plan, error) {
	t.Helper()
	top, err := Decode("t.yaml", []byte(src))
	if err != nil {
		return nil, err
	}
	return top.Plan()
}

func TestAutomaticAddresses(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]string // node:iface -> addresses
	}{{
		name: "veth pairs take consecutive /30 blocks",
		src: `name: lab
nodes: {a: {}, b: {}, c: {}}
links:
  - endpoints: [a:e0, b:e0]
  - endpoints: [b:e1, c:e0]
`,
		want: map[string]string{"a:e0": "198.18.0.1/30", "b:e0": "198.18.0.2/30", "b:e1": "198.18.0.5/30", "c:e0": "198.18.0.6/30"},
	}, {
		name: "an endpoint with a declared subnet sets its peer's",
		src: `name: lab
nodes: {a: {}, b: {}}
links:
  - endpoints: [{node: a, interface: e0, addresses: [10.1.2.1/24]}, b:e0]
`,
		want: map[string]string{"a:e0": "10.1.2.1/24", "b:e0": "10.1.2.2/24"},
	}, {
		name: "chained bridges are one segment",
		src: `name: lab
nodes: {a: {}, b: {}, c: {}}
links:
  - {type: bridge, name: s1, endpoints: [a:e0]}
  - {type: bridge, name: s2, endpoints: [b:e0], bridges: [s1]}
  - {type: bridge, name: s3, endpoints: [c:e0], bridges: [s2]}
`,
		want: map[string]string{"a:e0": "198.18.0.1/29", "b:e0": "198.18.0.2/29", "c:e0": "198.18.0.3/29"},
	}, {
		name: "pool blocks skip declared subnets",
		src: `name: lab
pool: 10.0.0.0/24
nodes: {a: {}, b: {}, c: {}}
links:
  - endpoints: [a:e0, b:e0]
  - endpoints: [{node: a, interface: e1, addresses: [10.0.0.1/30]}, {node: c, interface: e0, addresses: [10.0.0.2/30]}]
`,
		want: map[string]string{"a:e0": "10.0.0.5/30", "b:e0": "10.0.0.6/30", "a:e1": "10.0.0.1/30"},
	}, {
		name: "an empty list means no address",
		src: `name: lab
nodes: {a: {}, b: {}}
links:
  - endpoints: [{node: a, interface: e0, addresses: []}, b:e0]
`,
		want: map[string]string{"a:e0": "", "b:e0": "198.18.0.1/30"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := decodeAndPlan(t, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, l := range p.Links {
				for _, e := range l.Ends {
					if e.Node == "" {
						continue
					}
					var s []string
					for _, a := range e.Addresses {
						s = append(s, a.String())
					}
					got[e.Node+":"+e.Name] = strings.Join(s, ",")
				}
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: got %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestDefaultsMerge(t *testing.T) {
	p, err := decodeAndPlan(t, `name: lab
defaults:
  agent: false
  sysctls: {net.ipv4.ip_forward: 0, net.core.somaxconn: 1024}
  exec: [echo defaults]
nodes:
  a:
    agent: true
    sysctls: {net.ipv4.ip_forward: 1, net.ipv4.tcp_syncookies: 0}
    exec: [echo a]
  b: {}
`)
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.Nodes[0], p.Nodes[1]
	if !a.Agent || b.Agent {
		t.Errorf("agent: a=%v b=%v, want true false", a.Agent, b.Agent)
	}
	want := []Sysctl{{"net.ipv4.ip_forward", "1"}, {"net.core.somaxconn", "1024"}, {"net.ipv4.tcp_syncookies", "0"}}
	if string(mustJSON(t, a.Sysctls)) != string(mustJSON(t, want)) {
		t.Errorf("sysctls of a: got %v, want %v", a.Sysctls, want)
	}
	if strings.Join(a.Exec, ";") != "echo defaults;echo a" || strings.Join(b.Exec, ";") != "echo defaults" {
		t.Errorf("exec: a=%q b=%q", a.Exec, b.Exec)
	}
}

func TestFabricNamesAreStable(t *testing.T) {
	base := `name: lab
nodes: {a: {}, b: {}, c: {}}
links:
  - {type: bridge, name: s1, endpoints: [a:e0, b:e0]}
`
	extended := base + "  - {type: bridge, name: s0, endpoints: [c:e0], bridges: [s1]}\n"
	p1, err := decodeAndPlan(t, base)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := decodeAndPlan(t, extended)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range p1.Links {
		if l.Ends[1].Name != p2.Links[i].Ends[1].Name || len(l.Ends[1].Name) > MaxIfnameLen {
			t.Errorf("link %s: fabric end %q became %q", l.ID, l.Ends[1].Name, p2.Links[i].Ends[1].Name)
		}
	}
}

// TestSysctlKeys: keys are refused at load by the same rule netns writes
// them with.
func TestSysctlKeys(t *testing.T) {
	for _, c := range sysctltest.Corpus(t) {
		if !strings.HasPrefix(c.Key, "net.") {
			continue // refused as not namespaced before the rule applies
		}
		src := fmt.Sprintf("name: lab\nnodes:\n  n1:\n    sysctls:\n      %q: 1\n", c.Key)
		topo, err := Decode("k.yaml", []byte(src))
		if err == nil {
			_, err = topo.Plan()
		}
		if (err != nil) != (c.Error != "") || (err != nil && !strings.Contains(err.Error(), c.Error)) {
			t.Errorf("sysctl %q: %v; want error %q", c.Key, err, c.Error)
		}
	}
}

func TestParseUnits(t *testing.T) {
	rates := []struct {
		in   string
		want uint64
		ok   bool
	}{{"100mbit", 12_500_000, true}, {"1gbit", 125_000_000, true}, {"10kbps", 10_000, true}, {"1.5mbit", 187_500, true}, {"1000", 0, false}, {"fast", 0, false}, {"10furlongs", 0, false}}
	for _, r := range rates {
		got, err := ParseRate(r.in)
		if (err == nil) != r.ok || got != r.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d ok=%v", r.in, got, err, r.want, r.ok)
		}
	}
	sizes := []struct {
		in   string
		want uint32
		ok   bool
	}{{"32kb", 32768, true}, {"1mb", 1 << 20, true}, {"1500b", 1500, true}, {"10", 0, false}}
	for _, s := range sizes {
		got, err := ParseSize(s.in)
		if (err == nil) != s.ok || got != s.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", s.in, got, err, s.want, s.ok)
		}
	}
}

func TestCheckIfname(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "a-b.c_d": true, "fifteen-chars15": true, "sixteen-chars-16": false,
		"": false, ".": false, "a/b": false, "a:b": false, "a b": false, "lo": false, "eth%d": false,
	} {
		if err := CheckIfname(name); (err == nil) != ok {
			t.Errorf("CheckIfname(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.0/24": "10.0.0.255", "10.0.0.4/30": "10.0.0.7", "2001:db8::/126": "2001:db8::3"} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("examples/*.yaml")
	more, _ := filepath.Glob("testdata/errors/*.yaml")
	for _, name := range append(files, more...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := Decode("f.yaml", data)
		if err != nil {
			requireLocated(t, err)
			return
		}
		p, err := top.Plan()
		if err != nil {
			requireLocated(t, err)
			return
		}
		// A plan that builds must be internally consistent.
		for _, l := range p.Links {
			for _, e := range l.Ends {
				if CheckIfname(e.Name) != nil {
					t.Fatalf("plan has an invalid interface name %q", e.Name)
				}
			}
		}
	})
}

func requireLocated(t *testing.T, err error) {
	t.Helper()
	if !IsInvalid(err) {
		t.Fatalf("decode error is not a located topology error: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "f.yaml") {
		t.Fatalf("error does not name the file: %v", err)
	}
}

func TestGraphGolden(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		p, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "testdata/graphs/"+name+".mmd", []byte(p.Mermaid()))
		golden.Check(t, "testdata/graphs/"+name+".dot", []byte(p.Dot()))
	}
}
