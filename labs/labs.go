// Package labs manages the labs of one host: their state directories and
// locks, building and removing them (through netns), their agents, and
// their status. The lab service calls it; nothing else touches a lab's
// state.
//
// Layout, for a lab L:
//
//	<state>/labs/L/plan.json      the plan that is live (written after a successful up)
//	<state>/labs/L/source         the topology file it came from
//	<state>/labs/L/journal.jsonl  every kernel object up made (netns.Journal)
//	<state>/labs/L/lock           flock held by up and down
//	<state>/labs/L/cni/           cni links' state: libcni's cache, host-local's reservations
//	<run>/L/<node>.sock           the node's agent (gRPC, mode 0600)
//	<run>/L/<node>.pid, .log      its pid file and log
//	<state>/results/<run id>/     stored results (package runs)
package labs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/settings"
	"github.com/labctl/labctl/netns"
	"github.com/labctl/labctl/netns/cni"
	"github.com/labctl/labctl/topologies"
)

// Host is the labs of this machine.
type Host struct {
	StateDir string // default /var/lib/labctl
	RunDir   string // default /run/labctl
	// Binary is the labctl executable that agents are started from.
	Binary  string
	Version string
	// OTLPEndpoint and TraceDir are where agents send their spans (the
	// collector, reached from the host's namespace) and keep a local copy.
	OTLPEndpoint string
	TraceDir     string
	// CNIPath is where the plugins of cni links are looked up
	// (cni.DefaultPath when empty).
	CNIPath []string
}

// DefaultHost uses LABCTL_STATE_DIR and LABCTL_RUN_DIR when set (tests use
// them to keep to their own directories), else /var/lib/labctl and
// /run/labctl.
func DefaultHost(version string) *Host {
	h := &Host{StateDir: "/var/lib/labctl", RunDir: "/run/labctl", Version: version}
	if d := os.Getenv("LABCTL_STATE_DIR"); d != "" {
		h.StateDir = d
	}
	if d := os.Getenv("LABCTL_RUN_DIR"); d != "" {
		h.RunDir = d
	}
	if exe, err := os.Executable(); err == nil {
		h.Binary = exe
	}
	return h
}

// ErrNoLab says a lab has no state on this host.
var ErrNoLab = errors.New("no such lab")

// ErrLocked says another labctl is changing the lab.
var ErrLocked = errors.New("lab is locked")

func (h *Host) labDir(lab string) string { return filepath.Join(h.StateDir, "labs", lab) }

func (h *Host) cniDir(lab string) string { return filepath.Join(h.labDir(lab), "cni") }

// cniRunner runs the plugins of a lab's cni links.
func (h *Host) cniRunner(lab string) *cni.Runner {
	path := h.CNIPath
	if len(path) == 0 {
		path = cni.DefaultPath()
	}
	return &cni.Runner{Path: path, Dir: h.cniDir(lab), NSDir: netns.RunDir}
}

// LabRunDir is where a lab's agents keep their sockets, pid files and logs.
func (h *Host) LabRunDir(lab string) string { return filepath.Join(h.RunDir, lab) }

// ResultsDir is where results are stored.
func (h *Host) ResultsDir() string { return filepath.Join(h.StateDir, "results") }

// lock takes the lab's lock without waiting: a second up or down of the
// same lab fails at once instead of queueing behind the first. flock is
// released by the kernel when the process dies, so a killed labctl never
// leaves a stale lock behind.
func (h *Host) lock(lab string) (unlock func(), err error) {
	dir := h.labDir(lab)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: %w", lab, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", lab, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lab %s: %w by another labctl (pid %s); wait for it or stop it", lab, ErrLocked, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lab %s: lock: %w", lab, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

// stored is what state keeps about a live lab.
type stored struct {
	plan   *topologies.Plan
	source string
}

func (h *Host) load(lab string) (*stored, error) {
	b, err := os.ReadFile(filepath.Join(h.labDir(lab), "plan.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %s: %w (labctl status lists the labs that are up)", lab, ErrNoLab)
	}
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", lab, err)
	}
	var p topologies.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("lab %s: plan.json: %w", lab, err)
	}
	src, _ := os.ReadFile(filepath.Join(h.labDir(lab), "source"))
	return &stored{plan: &p, source: strings.TrimSpace(string(src))}, nil
}

// Source returns the topology file a lab was built from.
func (h *Host) Source(lab string) string {
	b, _ := os.ReadFile(filepath.Join(h.labDir(lab), "source"))
	return strings.TrimSpace(string(b))
}

// Plan returns the live plan of a lab.
func (h *Host) Plan(lab string) (*topologies.Plan, error) {
	s, err := h.load(lab)
	if err != nil {
		return nil, err
	}
	return s.plan, nil
}

func (h *Host) save(p *topologies.Plan, source string) error {
	dir := h.labDir(p.Lab)
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "plan.json"), b); err != nil {
		return fmt.Errorf("lab %s: %w", p.Lab, err)
	}
	return writeAtomic(filepath.Join(dir, "source"), []byte(source+"\n"))
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Labs lists the labs that have state on this host, by name.
func (h *Host) Labs() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(h.StateDir, "labs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(h.StateDir, "labs", e.Name(), "plan.json")); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Progress reports a step of up or down.
type Progress = netns.Progress

// Up builds plan, or reconciles the live lab with it, then makes sure every
// node that asks for an agent has a healthy one. A second Up of the same
// plan changes nothing and says so.
func (h *Host) Up(ctx context.Context, plan *topologies.Plan, source string, progress func(Progress)) (*Change, error) {
	unlock, err := h.lock(plan.Lab)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var prev *topologies.Plan
	if s, err := h.load(plan.Lab); err == nil {
		prev = s.plan
	}
	j, err := netns.OpenJournal(filepath.Join(h.labDir(plan.Lab), "journal.jsonl"))
	if err != nil {
		return nil, err
	}
	defer j.Close()
	ch, err := netns.Apply(ctx, prev, plan, netns.Options{Journal: j, Progress: progress, CNI: h.cniRunner(plan.Lab)})
	if err != nil {
		if prev == nil {
			// Nothing of this lab is live; keep no state that would make it
			// look otherwise.
			_ = j.Remove()
			os.RemoveAll(h.labDir(plan.Lab))
		}
		return nil, err
	}
	if err := h.save(plan, source); err != nil {
		return nil, err
	}
	agents, err := h.ensureAgents(ctx, plan, progress)
	out := &Change{Lab: plan.Lab, Change: ch, Agents: agents}
	if err != nil {
		return out, err
	}
	return out, nil
}

// Change is what Up or Down did.
type Change struct {
	Lab string
	netns.Change
	Agents []string // agents started (up) or stopped (down)
}

// Down stops a lab's agents and removes it. It works without the lab's
// state (a lost state directory): it then removes whatever carries the
// lab's marker.
func (h *Host) Down(ctx context.Context, lab string, progress func(Progress)) (*Change, error) {
	if err := topologies.CheckName(lab); err != nil {
		return nil, fmt.Errorf("lab %w", err)
	}
	unlock, err := h.lock(lab)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var plan *topologies.Plan
	if s, err := h.load(lab); err == nil {
		plan = s.plan
	}
	_, span := tracer.Start(ctx, "agents.stop")
	stopped := h.stopAgents(lab, plan)
	span.End()
	// A setting that cannot be put back must not keep the lab up; it is
	// reported once the lab is gone.
	serr := h.restoreSettings(lab, plan)
	// Host settings whose changer died without putting them back (its
	// journal lost, or of another lab): their leases still hold the
	// original.
	if _, err := settings.SweepLeases(settings.DefaultLeaseDir, nil); err != nil {
		serr = errors.Join(serr, err)
	}
	j, err := netns.OpenJournal(filepath.Join(h.labDir(lab), "journal.jsonl"))
	if err != nil {
		return nil, err
	}
	defer j.Close()
	ch, err := netns.Destroy(ctx, lab, plan, netns.Options{Journal: j, Progress: progress, CNI: h.cniRunner(lab)})
	if err != nil {
		return nil, err
	}
	// The plugins' DEL released what is in it; what a DEL that could not
	// run (its namespace gone) leaves goes here.
	if err := os.RemoveAll(h.cniDir(lab)); err != nil {
		return nil, fmt.Errorf("lab %s: %w", lab, err)
	}
	if err := j.Remove(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(h.LabRunDir(lab)); err != nil {
		return nil, fmt.Errorf("lab %s: %w", lab, err)
	}
	for _, f := range []string{"plan.json", "source", "lock"} {
		os.Remove(filepath.Join(h.labDir(lab), f))
	}
	os.Remove(h.labDir(lab))
	return &Change{Lab: lab, Change: ch, Agents: stopped}, serr
}
