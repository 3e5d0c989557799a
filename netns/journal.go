package netns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/labctl/labctl/topologies"
)

// Kinds of objects in the journal.
const (
	KindNode   = "node"   // a node's namespace and everything set in it
	KindFabric = "fabric" // the namespace that holds the lab's bridges
	KindBridge = "bridge" // a bridge in the fabric
	KindLink   = "link"   // a veth pair, a macvlan or a moved host interface
	KindCNI    = "cni"    // an endpoint attached by a cni link's plugins
)

// Object is one thing that Apply creates and Destroy takes away, as the
// plan described it when it was made.
type Object struct {
	Kind string `json:"kind"`
	// Name is the node name, the fabric's namespace, the bridge name or
	// the link ID: unique within a kind.
	Name      string                 `json:"name"`
	Namespace string                 `json:"namespace,omitempty"` // node, fabric and bridge
	Node      *topologies.Node       `json:"node,omitempty"`
	Bridge    *topologies.Bridge     `json:"bridge,omitempty"`
	Link      *topologies.Link       `json:"link,omitempty"`
	CNI       *topologies.Attachment `json:"cni,omitempty"`
}

// String names the object as the CLI prints it: "node n1", "link veth:...".
func (o Object) String() string {
	if o.Kind == KindFabric {
		return KindFabric
	}
	return o.Kind + " " + o.Name
}

type objKey struct{ kind, name string }

func (o Object) key() objKey { return objKey{o.Kind, o.Name} }

// Journal operations.
const (
	// OpBegin is written before the kernel is asked to create, change or
	// delete the object: from then on the object may exist in any state,
	// and until OpDone or OpGone follows it is dirty.
	OpBegin = "begin"
	// OpDone is written once the object exists exactly as Object says.
	OpDone = "done"
	// OpGone is written once the object no longer exists in the kernel.
	OpGone = "gone"
)

// Record is one line of the journal.
type Record struct {
	Op string `json:"op"`
	Object
}

// check refuses a record that the journal could not act on.
func (r Record) check() error {
	switch r.Op {
	case OpBegin, OpDone, OpGone:
	default:
		return fmt.Errorf("unknown op %q", r.Op)
	}
	if r.Name == "" {
		return fmt.Errorf("%s record without a name", r.Kind)
	}
	var ok bool
	switch r.Kind {
	case KindNode:
		ok = r.Node != nil && r.Namespace != ""
	case KindFabric:
		ok = r.Namespace != ""
	case KindBridge:
		ok = r.Bridge != nil && r.Namespace != ""
	case KindLink:
		ok = r.Link != nil
	case KindCNI:
		ok = r.CNI != nil
	default:
		return fmt.Errorf("unknown kind %q", r.Kind)
	}
	if !ok {
		return fmt.Errorf("%s %s: record lacks the object", r.Kind, r.Name)
	}
	return nil
}

// Journal is the append-only record, one JSON object a line, of what labctl
// has done to the kernel for one lab. Reading it back tells which objects
// exist (done), which certainly do not (gone) and which may exist in any
// state because labctl was stopped while changing them (begin without an
// end): those are deleted before anything else happens.
//
// Why a record is written before the kernel call and another after: with
// only the record after, a SIGKILL between the kernel call and the write
// would leave an object that nothing remembers; with only the record
// before, a half-configured object would look finished. With both, the
// worst a SIGKILL leaves is a begin without its end, and the object it
// names is deleted (which tolerates the object not existing at all) and
// made again. Deletions follow the same rule: begin before, gone after.
//
// Records are not fsynced: each one is a single write(2) to a file opened
// with O_APPEND, so once write returns the record is in the page cache and a
// killed process loses nothing; only a crash of the whole machine could, and
// then every namespace is gone with it. Thousands of fsyncs per lab would
// cost more than building the lab.
type Journal struct {
	path string

	mu    sync.Mutex
	f     *os.File
	recs  []Record
	state map[objKey]*entry
	seq   int
}

// entry is the current state of one object.
type entry struct {
	obj Object
	op  string // OpBegin or OpDone
	seq int    // when the object's current life began, for undo order
}

// OpenJournal opens the journal at path, creating an empty one if there is
// none, and reads what it holds. A last line cut short (the process was
// killed while writing it) is dropped: that record's kernel call had not
// started yet.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	recs, valid, err := decodeJournal(data)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if valid < len(data) {
		if err := f.Truncate(int64(valid)); err != nil {
			f.Close()
			return nil, fmt.Errorf("journal %s: drop the torn last record: %w", path, err)
		}
	}
	j := &Journal{path: path, f: f, state: map[objKey]*entry{}}
	for _, r := range recs {
		j.apply(r)
	}
	j.recs = recs
	return j, nil
}

// decodeJournal parses JSON lines and returns the records and the length of
// the data up to the end of the last complete line.
func decodeJournal(data []byte) ([]Record, int, error) {
	var recs []Record
	valid := 0
	for line := 1; valid < len(data); line++ {
		n := bytes.IndexByte(data[valid:], '\n')
		if n < 0 {
			break // torn last record
		}
		var r Record
		if err := json.Unmarshal(data[valid:valid+n], &r); err != nil {
			return nil, 0, fmt.Errorf("line %d: %w", line, err)
		}
		if err := r.check(); err != nil {
			return nil, 0, fmt.Errorf("line %d: %w", line, err)
		}
		recs = append(recs, r)
		valid += n + 1
	}
	return recs, valid, nil
}

// Path is the file the journal lives in.
func (j *Journal) Path() string { return j.path }

// Append writes r as one line with a single write, and updates the state.
func (j *Journal) Append(r Record) error {
	if err := r.check(); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("journal %s: closed", j.path)
	}
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	j.recs = append(j.recs, r)
	j.apply(r)
	return nil
}

func (j *Journal) apply(r Record) {
	k := r.key()
	switch r.Op {
	case OpGone:
		delete(j.state, k)
	default:
		e := j.state[k]
		if e == nil {
			j.seq++
			e = &entry{seq: j.seq}
			j.state[k] = e
		}
		e.obj, e.op = r.Object, r.Op
	}
}

// Records returns every record in the order written.
func (j *Journal) Records() []Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.recs)
}

// Close closes the file; the journal stays on disk.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// Remove closes and deletes the journal, once the lab is gone.
func (j *Journal) Remove() error {
	if err := j.Close(); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// objects returns the objects whose last record is one of ops, in the order
// their lives began.
func (j *Journal) objects(ops ...string) []Object {
	j.mu.Lock()
	defer j.mu.Unlock()
	es := make([]*entry, 0, len(j.state))
	for _, e := range j.state {
		if slices.Contains(ops, e.op) {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return a.seq - b.seq })
	out := make([]Object, len(es))
	for i, e := range es {
		out[i] = e.obj
	}
	return out
}

// empty reports whether the journal knows of no object at all.
func (j *Journal) empty() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.state) == 0
}

// livePlan rebuilds the plan of what is finished in the kernel, in the
// order it was made.
func (j *Journal) livePlan(lab string) *topologies.Plan {
	p := &topologies.Plan{Lab: lab}
	for _, o := range j.objects(OpDone) {
		switch o.Kind {
		case KindNode:
			p.Nodes = append(p.Nodes, *o.Node)
		case KindFabric:
			p.Fabric = o.Name
		case KindBridge:
			p.Bridges = append(p.Bridges, *o.Bridge)
		case KindLink:
			p.Links = append(p.Links, *o.Link)
		case KindCNI:
			p.CNI = append(p.CNI, *o.CNI)
		}
	}
	return p
}
