package runs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/labctl/labctl/internal/fault"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// Store keeps results as JSON files, one directory per run:
// <dir>/<run id>/result.json, beside whatever else belongs to the run (its
// spans when no collector was reachable).
type Store struct {
	Dir string
}

// ErrNotFound says no stored result has the id.
var ErrNotFound = errors.New("no such result")

// NewID returns a run id that sorts by start time:
// 20261124-113501-rr-7f3a09c2. Runs that start in the same second are
// told apart by 32 random bits: with 16, two of 20 rr runs started at
// once by labctl serve's clients shared an id (about 1 in 350 such
// starts), and the second's result and settings journal collided with
// the first's.
func NewID(experiment string, now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + experiment + "-" + hex.EncodeToString(b[:])
}

// RunDir is the directory of one run.
func (s *Store) RunDir(id string) string { return filepath.Join(s.Dir, id) }

var marshal = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitDefaultValues: true}

// Schema is the version of the Result layout this labctl writes. Fields
// added to the message keep it (an older labctl ignores what it does not
// know only when it reads its own store; Import refuses them); it grows
// when a field changes meaning or is removed.
const Schema = 1

// Save writes r atomically (a reader never sees half a result).
func (s *Store) Save(r *experimentv1.Result) error {
	if r.GetSchema() == 0 {
		r.Schema = Schema
	}
	dir := s.RunDir(r.GetId())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("result %s: %w", r.GetId(), err)
	}
	b, err := marshal.Marshal(r)
	if err != nil {
		return fmt.Errorf("result %s: encode: %w", r.GetId(), err)
	}
	tmp := filepath.Join(dir, ".result.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("result %s: %w", r.GetId(), err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "result.json")); err != nil {
		return fmt.Errorf("result %s: %w", r.GetId(), err)
	}
	return nil
}

// idPattern is the shape of the ids NewID makes (with 16 random bits
// before 2026-12-05).
var idPattern = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[a-z0-9][a-z0-9-]*-[0-9a-f]{4}(?:[0-9a-f]{4})?$`)

// Import stores a result made by another labctl, read from its JSON (as
// `results show -o json` and `results export` write it; source names it in
// errors). It refuses, changing nothing: what is not a complete result,
// a result with fields or a schema newer than this labctl's, and an id the
// store already holds.
func (s *Store) Import(source string, data []byte) (*experimentv1.Result, error) {
	var r experimentv1.Result
	if err := protojson.Unmarshal(data, &r); err != nil {
		what := "not a labctl result"
		switch msg := err.Error(); {
		case len(bytes.TrimSpace(data)) == 0:
			what = "empty"
		case strings.Contains(msg, "unexpected EOF") || strings.Contains(msg, "unexpected end"):
			what = "cut short: not a complete result"
		case strings.Contains(msg, "unknown field"):
			what = "made by a newer labctl, or not a result"
		}
		return nil, fault.New(fault.Invalid, "%s: %s (%v)", source, what, err)
	}
	if r.GetSchema() > Schema {
		return nil, fault.New(fault.Invalid, "%s: result %s has schema %d, newer than this labctl's %d: import it with a newer labctl",
			source, r.GetId(), r.GetSchema(), Schema)
	}
	switch {
	case !idPattern.MatchString(r.GetId()):
		return nil, fault.New(fault.Invalid, "%s: not a labctl result: id %q is not a run id (such as 20261124-113501-rr-7f3a)", source, r.GetId())
	case r.GetExperiment() == "" || r.GetStarted() == nil:
		return nil, fault.New(fault.Invalid, "%s: not a labctl result: result %s has no experiment or start time", source, r.GetId())
	case len(r.GetSteps()) == 0 && r.GetError() == "":
		return nil, fault.New(fault.Invalid, "%s: result %s has no steps and no error: nothing to import", source, r.GetId())
	}
	// Claim the directory first: two imports of one id cannot both win.
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	if err := os.Mkdir(s.RunDir(r.GetId()), 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fault.New(fault.Exists, "%s: result %s is already stored; nothing was overwritten", source, r.GetId())
		}
		return nil, fmt.Errorf("result %s: %w", r.GetId(), err)
	}
	if err := s.Save(&r); err != nil {
		_ = os.RemoveAll(s.RunDir(r.GetId()))
		return nil, err
	}
	return &r, nil
}

// Get reads a result by id or by a unique prefix of one.
func (s *Store) Get(id string) (*experimentv1.Result, error) {
	full, err := s.resolve(id)
	if err != nil {
		return nil, err
	}
	return s.read(full)
}

func (s *Store) read(id string) (*experimentv1.Result, error) {
	b, err := os.ReadFile(filepath.Join(s.RunDir(id), "result.json"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("result %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("result %s: %w", id, err)
	}
	var r experimentv1.Result
	if err := protojson.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("result %s: decode: %w", id, err)
	}
	return &r, nil
}

func (s *Store) resolve(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\\") || id == "." || id == ".." {
		return "", fmt.Errorf("result %q: %w", id, ErrNotFound)
	}
	if _, err := os.Stat(filepath.Join(s.RunDir(id), "result.json")); err == nil {
		return id, nil
	}
	ids, err := s.ids()
	if err != nil {
		return "", err
	}
	var match []string
	for _, c := range ids {
		if strings.HasPrefix(c, id) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("result %s: %w", id, ErrNotFound)
	case 1:
		return match[0], nil
	}
	return "", fault.New(fault.Invalid, "result prefix %s matches %d results (%s, ...); give more of the id", id, len(match), match[0])
}

// ids lists run ids, newest first.
func (s *Store) ids() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("results: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	return ids, nil
}

// Summary is one stored result in a list.
type Summary struct {
	ID, Lab, Experiment string
	State               experimentv1.RunState
	Started             time.Time
	Outcome             experimentv1.Outcome
	// Headline is the error of a failed run, or the verdict's explanation.
	Headline string
}

// List summarises stored results, newest first, filtered by lab and
// experiment when given; limit 0 means all.
func (s *Store) List(lab, experiment string, limit int) ([]Summary, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, id := range ids {
		r, err := s.read(id)
		if err != nil {
			continue // a run still being written, or a foreign directory
		}
		if (lab != "" && r.GetLab() != lab) || (experiment != "" && r.GetExperiment() != experiment) {
			continue
		}
		out = append(out, Summary{
			ID: r.GetId(), Lab: r.GetLab(), Experiment: r.GetExperiment(), State: r.GetState(),
			Started: r.GetStarted().AsTime(), Outcome: r.GetVerdict().GetOutcome(), Headline: headline(r),
		})
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func headline(r *experimentv1.Result) string {
	if r.GetError() != "" {
		return r.GetError()
	}
	return r.GetVerdict().GetExplanation()
}
