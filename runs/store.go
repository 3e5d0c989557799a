package runs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// NewID returns a run id that sorts by start time: 20261124-113501-rr-7f3a.
func NewID(experiment string, now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + experiment + "-" + hex.EncodeToString(b[:])
}

// RunDir is the directory of one run.
func (s *Store) RunDir(id string) string { return filepath.Join(s.Dir, id) }

var marshal = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitDefaultValues: true}

// Save writes r atomically (a reader never sees half a result).
func (s *Store) Save(r *experimentv1.Result) error {
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
