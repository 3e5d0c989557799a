package runs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/labctl/labctl/internal/fault"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func storedResult(t *testing.T, s *Store) *experimentv1.Result {
	t.Helper()
	r := &experimentv1.Result{Id: "20261205-120000-rr-0a1b", Lab: "quickstart", Experiment: "rr", Params: map[string]string{"size": "64"},
		Started: timestamppb.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)), State: experimentv1.RunState_RUN_STATE_COMPLETED,
		Host: &experimentv1.HostEnvironment{Kernel: "6.18.0", Cpus: 2},
		Steps: []*experimentv1.StepResult{{Step: &experimentv1.Step{Variant: "tcp"}, Reports: []*experimentv1.RoleReport{
			{Role: "client", Node: "n1", Metrics: map[string]float64{"rtt_p50_ns": 35000}}}}},
		Verdict: &experimentv1.Verdict{Outcome: experimentv1.Outcome_OUTCOME_MEASURED, Explanation: "p50 35 µs"}}
	if err := s.Save(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestImportRoundTrip: a result exported from one store and imported into
// another is the same result.
func TestImportRoundTrip(t *testing.T) {
	from, to := &Store{Dir: t.TempDir()}, &Store{Dir: t.TempDir()}
	r := storedResult(t, from)
	exported, err := protojson.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := to.Import("rr.json", exported); err != nil {
		t.Fatal(err)
	}
	got, err := to.Get(r.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, r) {
		t.Errorf("imported\n%v\nwant\n%v", got, r)
	}
	if got.GetSchema() != Schema {
		t.Errorf("schema %d, want %d", got.GetSchema(), Schema)
	}
}

// TestImportRefuses: what is not a whole result of this labctl's schema,
// or has an id the store holds, is refused with the reason, and the store
// is as it was.
func TestImportRefuses(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	r := storedResult(t, s)
	good, err := protojson.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	newer := proto.Clone(r).(*experimentv1.Result)
	newer.Id, newer.Schema = "20261205-120001-rr-0a1c", Schema+1
	newerJSON, _ := protojson.Marshal(newer)
	other := proto.Clone(r).(*experimentv1.Result)
	other.Id = "20261205-120002-rr-0a1d"
	otherJSON, _ := protojson.Marshal(other)
	withField := strings.Replace(string(otherJSON), `{`, `{"colour":"blue",`, 1)
	stored := filepath.Join(s.RunDir(r.GetId()), "result.json")
	before, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data string
		kind       fault.Kind
		want       string
	}{
		{"truncated", string(good[:len(good)/2]), fault.Invalid, "cut short"},
		{"empty", "", fault.Invalid, "empty"},
		{"newer schema", string(newerJSON), fault.Invalid, "newer than this labctl's"},
		{"unknown field", withField, fault.Invalid, `newer labctl, or not a result`},
		{"foreign", `{"name": "quickstart", "nodes": {}}`, fault.Invalid, "or not a result"},
		{"not json", "name: quickstart\n", fault.Invalid, "not a labctl result"},
		{"no id", `{"experiment": "rr"}`, fault.Invalid, "not a run id"},
		{"existing id", string(good), fault.Exists, "already stored; nothing was overwritten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Import("in.json", []byte(tc.data))
			if err == nil || !fault.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "in.json: ") {
				t.Fatalf("import: %v, want a %s error naming the file and saying %q", err, tc.kind, tc.want)
			}
		})
	}
	after, err := os.ReadFile(stored)
	if err != nil || string(after) != string(before) {
		t.Errorf("the stored result changed (%v)", err)
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 1 {
		t.Errorf("the store holds %d entries, want only the result it had", len(entries))
	}
}

// TestNewID: ids of runs started in the same second differ, and have the
// shape Import accepts, as ids from before 32 random bits do.
func TestNewID(t *testing.T) {
	now := time.Date(2026, 12, 5, 22, 12, 8, 0, time.UTC)
	seen := map[string]bool{}
	for range 20 { // 20 runs at once, as TestRemoteAPI starts them
		id := NewID("rr", now)
		if seen[id] || !idPattern.MatchString(id) {
			t.Fatalf("id %s: seen before %v, shape %v", id, seen[id], idPattern.MatchString(id))
		}
		seen[id] = true
	}
	if !idPattern.MatchString("20261205-120000-rr-0a1b") {
		t.Error("an id with 16 random bits is refused")
	}
}
