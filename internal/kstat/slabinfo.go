package kstat

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Slab is one cache of /proc/slabinfo.
type Slab struct {
	ActiveObjs   int64 `json:"active_objs"`
	NumObjs      int64 `json:"num_objs"`
	ObjSize      int64 `json:"objsize"`
	ObjPerSlab   int64 `json:"objperslab"`
	PagesPerSlab int64 `json:"pagesperslab"`
	ActiveSlabs  int64 `json:"active_slabs"`
	NumSlabs     int64 `json:"num_slabs"`
}

// ActiveBytes is the memory of the objects in use, ActiveObjs*ObjSize.
func (s Slab) ActiveBytes() int64 { return s.ActiveObjs * s.ObjSize }

// AllocatedBytes is the memory of all objects the cache holds, in use or
// free, NumObjs*ObjSize.
func (s Slab) AllocatedBytes() int64 { return s.NumObjs * s.ObjSize }

// SlabInfo is a snapshot of /proc/slabinfo keyed by cache name ("TCP",
// "tw_sock_TCP", "sock_inode_cache", "dentry", "filp", ...). Host-wide.
//
// SLUB merges caches of compatible size and flags, and a merged cache
// appears under one name only; boot with slab_nomerge to see every cache on
// its own. On SLUB, ActiveObjs counts objects sitting in per-CPU slabs as in
// use, so small deltas are noisy: fit over many objects (measure.LinearFit).
type SlabInfo map[string]Slab

// ReadSlabInfo reads /proc/slabinfo, which only root can read (mode 0400).
func ReadSlabInfo() (SlabInfo, error) { return readFile("/proc/slabinfo", ParseSlabInfo) }

// ParseSlabInfo parses /proc/slabinfo version 2.1, the format of SLAB and SLUB
// alike since Linux 2.6:
//
//	name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ... : slabdata <active_slabs> <num_slabs> <sharedavail>
func ParseSlabInfo(r io.Reader) (SlabInfo, error) {
	sc := newScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("empty input, want \"slabinfo - version: 2.1\"")
	}
	// SLAB with CONFIG_DEBUG_SLAB (removed in Linux 6.8 with SLAB itself)
	// appends " (statistics)" and more columns after slabdata.
	version, ok := strings.CutPrefix(sc.Text(), "slabinfo - version: ")
	if f := strings.Fields(version); !ok || len(f) == 0 || f[0] != "2.1" {
		return nil, fmt.Errorf("line 1: %q: only slabinfo version 2.1 is supported", sc.Text())
	}
	s := SlabInfo{}
	for line := 2; sc.Scan(); line++ {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		f := strings.Fields(sc.Text())
		data := slices.Index(f, "slabdata")
		if len(f) < 6 || data < 0 || data+2 >= len(f) {
			return nil, fmt.Errorf("line %d: %q does not look like \"name <5 numbers> : ... : slabdata <numbers>\"", line, sc.Text())
		}
		name := f[0]
		var v [7]int64
		for i, field := range []string{f[1], f[2], f[3], f[4], f[5], f[data+1], f[data+2]} {
			n, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: cache %s: %w", line, name, err)
			}
			v[i] = n
		}
		s[name] = Slab{ActiveObjs: v[0], NumObjs: v[1], ObjSize: v[2], ObjPerSlab: v[3], PagesPerSlab: v[4], ActiveSlabs: v[5], NumSlabs: v[6]}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// Sub returns the change since prev for every cache of s: object and slab
// counts become (possibly negative) deltas, while ObjSize, ObjPerSlab and
// PagesPerSlab stay s's, so ActiveBytes of a delta is the memory gained. A
// cache missing from prev (created in between) counts from 0.
func (s SlabInfo) Sub(prev SlabInfo) SlabInfo {
	d := make(SlabInfo, len(s))
	for name, c := range s {
		p := prev[name]
		c.ActiveObjs -= p.ActiveObjs
		c.NumObjs -= p.NumObjs
		c.ActiveSlabs -= p.ActiveSlabs
		c.NumSlabs -= p.NumSlabs
		d[name] = c
	}
	return d
}
