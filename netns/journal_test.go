package netns

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/golden"
	"github.com/labctl/labctl/topologies"
)

func TestJournalRoundTrip(t *testing.T) {
	p := routedPlan("lab")
	path := filepath.Join(t.TempDir(), "journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	objs := objects(p)
	var want []Record
	for _, o := range objs {
		for _, op := range []string{OpBegin, OpDone} {
			r := Record{Op: op, Object: o}
			if err := j.Append(r); err != nil {
				t.Fatal(err)
			}
			want = append(want, r)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err = OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if got := j.Records(); !reflect.DeepEqual(got, want) {
		t.Fatalf("records differ after reopening:\n got %+v\nwant %+v", got, want)
	}
	// Link.Pos is not journaled; the rest of the plan comes back whole.
	live := j.livePlan(p.Lab)
	live.Pool = p.Pool
	if !reflect.DeepEqual(live, p) {
		t.Fatalf("livePlan:\n got %+v\nwant %+v", live, p)
	}
}

func TestJournalGolden(t *testing.T) {
	// testdata/journal.jsonl pins the on-disk form: a journal written by
	// one version of labctl must be read by the next.
	p := newPlan("lab", "n1", "n2")
	p.Links = []topologies.Link{veth(end(p, "n1", "eth0", "198.18.0.1/24"), end(p, "n2", "eth0", "198.18.0.2/24"))}
	p.Nodes[0].Sysctls = []topologies.Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}}
	var b strings.Builder
	path := filepath.Join(t.TempDir(), "journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects(p) {
		j.Append(Record{Op: OpBegin, Object: o})
		j.Append(Record{Op: OpDone, Object: o})
	}
	j.Append(Record{Op: OpBegin, Object: objects(p)[2]})
	j.Append(Record{Op: OpGone, Object: objects(p)[2]})
	j.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(data)
	golden.Check(t, filepath.Join("testdata", "journal.jsonl"), []byte(b.String()))

	// And the golden file reads back as the plan without its gone link.
	gold, err := os.ReadFile(filepath.Join("testdata", "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "journal")
	if err := os.WriteFile(path, gold, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err = OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	want := newPlan("lab", "n1", "n2")
	want.Pool = ""
	want.Nodes[0].Sysctls = p.Nodes[0].Sysctls
	if got := j.livePlan("lab"); !reflect.DeepEqual(got, want) {
		t.Fatalf("livePlan of the golden journal:\n got %+v\nwant %+v", got, want)
	}
}

func TestJournalState(t *testing.T) {
	n1 := Object{Kind: KindNode, Name: "n1", Namespace: "labctl-x-n1", Node: &topologies.Node{Name: "n1", Namespace: "labctl-x-n1"}}
	n2 := Object{Kind: KindNode, Name: "n2", Namespace: "labctl-x-n2", Node: &topologies.Node{Name: "n2", Namespace: "labctl-x-n2"}}
	l := Object{Kind: KindLink, Name: "l", Link: &topologies.Link{ID: "l", Kind: topologies.KindVeth}}
	cases := []struct {
		name        string
		recs        []Record
		done, dirty []string
	}{
		{"empty", nil, nil, nil},
		{"begun only", []Record{{OpBegin, n1}}, nil, []string{"node n1"}},
		{"done", []Record{{OpBegin, n1}, {OpDone, n1}}, []string{"node n1"}, nil},
		{"gone", []Record{{OpBegin, n1}, {OpDone, n1}, {OpBegin, n1}, {OpGone, n1}}, nil, nil},
		{"being deleted is dirty", []Record{{OpBegin, n1}, {OpDone, n1}, {OpBegin, n1}}, nil, []string{"node n1"}},
		{"made again after gone", []Record{{OpBegin, n1}, {OpGone, n1}, {OpBegin, n2}, {OpBegin, n1}, {OpDone, n1}, {OpDone, n2}},
			[]string{"node n2", "node n1"}, nil},
		{"mixed, in order of creation", []Record{{OpBegin, n1}, {OpBegin, n2}, {OpBegin, l}, {OpDone, l}, {OpDone, n2}},
			[]string{"node n2", "link l"}, []string{"node n1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j, err := OpenJournal(filepath.Join(t.TempDir(), "journal"))
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			for _, r := range c.recs {
				if err := j.Append(r); err != nil {
					t.Fatal(err)
				}
			}
			if got := names(j.objects(OpDone)); !reflect.DeepEqual(got, c.done) {
				t.Errorf("done = %q, want %q", got, c.done)
			}
			if got := names(j.objects(OpBegin)); !reflect.DeepEqual(got, c.dirty) {
				t.Errorf("dirty = %q, want %q", got, c.dirty)
			}
			if j.empty() != (len(c.done)+len(c.dirty) == 0) {
				t.Errorf("empty() = %v", j.empty())
			}
		})
	}
}

func TestJournalTornAndBad(t *testing.T) {
	good := `{"op":"begin","kind":"fabric","name":"labctl-x","namespace":"labctl-x"}` + "\n"
	cases := []struct {
		name    string
		data    string
		records int
		err     string
	}{
		{"torn last record is dropped", good + `{"op":"done","kind":"fab`, 1, ""},
		{"complete", good + good, 2, ""},
		{"bad json in the middle", good + "{oops}\n" + good, 0, "line 2:"},
		{"unknown op", `{"op":"made","kind":"fabric","name":"x","namespace":"x"}` + "\n", 0, `line 1: unknown op "made"`},
		{"unknown kind", `{"op":"begin","kind":"vlan","name":"x"}` + "\n", 0, `line 1: unknown kind "vlan"`},
		{"node without node", `{"op":"begin","kind":"node","name":"n1","namespace":"labctl-x-n1"}` + "\n", 0, "node n1: record lacks the object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			if err := os.WriteFile(path, []byte(c.data), 0o600); err != nil {
				t.Fatal(err)
			}
			j, err := OpenJournal(path)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if n := len(j.Records()); n != c.records {
				t.Fatalf("%d records, want %d", n, c.records)
			}
			// Appending after a torn record must give a readable file.
			if err := j.Append(Record{Op: OpDone, Object: Object{Kind: KindFabric, Name: "labctl-x", Namespace: "labctl-x"}}); err != nil {
				t.Fatal(err)
			}
			j.Close()
			j2, err := OpenJournal(path)
			if err != nil {
				t.Fatal(err)
			}
			defer j2.Close()
			if n := len(j2.Records()); n != c.records+1 {
				t.Fatalf("after append and reopen: %d records, want %d", n, c.records+1)
			}
		})
	}
}

func TestJournalRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("journal still there: %v", err)
	}
	if err := j.Append(Record{Op: OpGone, Object: Object{Kind: KindFabric, Name: "x", Namespace: "x"}}); err == nil {
		t.Fatal("Append after Remove succeeded")
	}
}

func names(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.String())
	}
	return out
}
