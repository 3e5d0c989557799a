package conns

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/labctl/labctl/internal/kstat"
)

// connCaches are the slab caches a connection's kernel objects come from,
// by the names the kernel creates them with.
var connCaches = []string{
	"TCP",                 // struct tcp_sock, the socket itself
	"request_sock_TCP",    // a connection in the SYN queue, until accepted
	"tw_sock_TCP",         // a TIME_WAIT socket (struct tcp_timewait_sock)
	"sock_inode_cache",    // struct socket_alloc: socket and inode behind a descriptor
	"dentry",              // the sockfs dentry of that inode
	"filp",                // the struct file of the descriptor
	"eventpoll_epi",       // one epoll registration
	"eventpoll_pwq",       // the wait queue entry of that registration
	"tcp_bind_bucket",     // a local port in use (bhash)
	"tcp_bind2_bucket",    // a local port and address in use (bhash2, Linux 6.1+)
	"skbuff_head_cache",   // struct sk_buff
	"skbuff_fclone_cache", // the sk_buff pair TCP sends with; over veth the receiver queues the clone
	"skbuff_small_head",   // small packet data heads (Linux 6.6+)
}

// slabLine is one line of /proc/slabinfo and the caches it counts. SLUB
// merges caches of compatible object size and flags (unless booted with
// slab_nomerge), and the merged cache shows under one name only, often not
// the one a reader looks for: on Linux 6.18 x86-64 "eventpoll_epi" also
// counts tcp_bind_bucket and tcp_bind2_bucket, and eventpoll_pwq hides in
// "anon_vma_chain".
type slabLine struct {
	Name string
	// Caches are the caches of connCaches it counts; Aliases every cache
	// it counts.
	Caches, Aliases []string
}

// resolveLines finds the slabinfo line of every cache in caches. targets
// maps each entry of /sys/kernel/slab to the cache it stands for (a merged
// cache's aliases are symbolic links to one directory). A cache the kernel
// does not have is left out.
func resolveLines(info kstat.SlabInfo, targets map[string]string, caches []string) []slabLine {
	byLine := map[string]*slabLine{}
	var order []string
	for _, c := range caches {
		t, ok := targets[c]
		if !ok {
			if _, inInfo := info[c]; !inInfo {
				continue
			}
			t = c // no sysfs view: trust the name
		}
		var members []string
		for name, tt := range targets {
			if tt == t && !strings.HasPrefix(name, ":") {
				members = append(members, name)
			}
		}
		if len(members) == 0 {
			members = []string{c}
		}
		sort.Strings(members)
		line := ""
		for _, m := range members {
			if _, ok := info[m]; ok {
				line = m
				break
			}
		}
		if line == "" {
			continue
		}
		l := byLine[line]
		if l == nil {
			l = &slabLine{Name: line, Aliases: members}
			byLine[line] = l
			order = append(order, line)
		}
		l.Caches = append(l.Caches, c)
	}
	out := make([]slabLine, len(order))
	for i, name := range order {
		out[i] = *byLine[name]
	}
	return out
}

// readSlabTargets reads /sys/kernel/slab: each entry is a directory (a
// cache of its own, or a merged cache named like ":A-0000128") or a link
// to the directory of the merged cache it belongs to.
func readSlabTargets(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			out[e.Name()] = e.Name()
			continue
		}
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = filepath.Base(t)
	}
	return out, nil
}

// snapshot is the kernel memory at one barrier of a step.
type snapshot struct {
	Slab     kstat.SlabInfo
	SockStat kstat.SockStat // of the reader's namespace; TCP.mem is host-wide
	Memcg    memcgSample
}

// Series that are not slab lines.
const (
	seriesConnCaches = "conn_caches" // the sum of the connection caches' lines
	seriesAllSlab    = "all_slab"    // every slab cache of the host
	seriesTCPMem     = "tcp_mem"     // sockstat TCP mem: pages charged to TCP buffers, host-wide
	seriesMemcgKmem  = "memcg_kmem"  // kernel memory charged to the role's memory cgroup
	seriesMemcgSock  = "memcg_sock"  // socket buffer memory charged to it
	pageSize         = 4096          // the unit of sockstat's mem (and of net.ipv4.tcp_mem)
)

// memoryDelta returns the kernel memory gained between base and cur, in
// bytes, per series: each slab line (objects in use times object size),
// their sum, all slab caches, TCP buffer pages, and the memory cgroup's
// counters when both samples have them.
func memoryDelta(lines []slabLine, base, cur snapshot) map[string]float64 {
	out := map[string]float64{}
	d := cur.Slab.Sub(base.Slab)
	var conn, all float64
	for _, l := range lines {
		b := float64(d[l.Name].ActiveBytes())
		out[l.Name] = b
		conn += b
	}
	for _, c := range d {
		all += float64(c.ActiveBytes())
	}
	out[seriesConnCaches] = conn
	out[seriesAllSlab] = all
	out[seriesTCPMem] = float64((cur.SockStat["TCP.mem"] - base.SockStat["TCP.mem"]) * pageSize)
	if base.Memcg.OK && cur.Memcg.OK {
		out[seriesMemcgKmem] = float64(cur.Memcg.Kmem - base.Memcg.Kmem)
		if cur.Memcg.SockValid {
			out[seriesMemcgSock] = float64(cur.Memcg.Sock - base.Memcg.Sock)
		}
	}
	return out
}

// otherAliases lists what a line counts besides the caches it was chosen
// for, for the note that explains it.
func otherAliases(l slabLine) []string {
	var out []string
	for _, a := range l.Aliases {
		if !slices.Contains(l.Caches, a) {
			out = append(out, a)
		}
	}
	return out
}
