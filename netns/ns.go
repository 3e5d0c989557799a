package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
)

// RunDir holds named network namespaces exactly as iproute2 keeps them: one
// file per namespace with the namespace's nsfs inode bind-mounted on it, so
// `ip netns exec <name>` works on labctl's namespaces and the other way round.
const RunDir = "/run/netns"

// threadNS is the calling thread's own network namespace. /proc/self/ns/net
// would be the thread-group leader's, which is not the namespace a locked,
// switched thread is in.
const threadNS = "/proc/thread-self/ns/net"

// nsPath returns the file of namespace ns.
func nsPath(ns string) (string, error) {
	if ns == "" || ns == "." || ns == ".." || strings.ContainsRune(ns, '/') {
		return "", fmt.Errorf("namespace %q: not a valid name", ns)
	}
	return filepath.Join(RunDir, ns), nil
}

// Exists reports whether ns is a named network namespace: its file in
// RunDir has an nsfs inode mounted on it.
func Exists(ns string) bool {
	p, err := nsPath(ns)
	if err != nil {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(p, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// openNS opens namespace ns for setns and netlink.NewHandleAt.
func openNS(ns string) (int, error) {
	p, err := nsPath(ns)
	if err != nil {
		return -1, err
	}
	if !Exists(ns) {
		return -1, fmt.Errorf("namespace %s: %w", ns, os.ErrNotExist)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("namespace %s: %w", ns, &os.PathError{Op: "open", Path: p, Err: err})
	}
	return fd, nil
}

// Do runs fn on an OS thread switched into namespace ns. fn runs on a
// goroutine of its own, locked to its thread: afterwards the thread is
// switched back and reused, or, if switching back fails, left locked, so
// that the runtime ends it with the goroutine instead of ever running
// other goroutines in the wrong namespace. The caller's goroutine never
// leaves its namespace, whatever fn does: an error, a panic (raised again
// in the caller) and runtime.Goexit (t.Fatal in a test; reported as an
// error) all end with the thread switched back or gone. fn must not start
// goroutines that depend on the namespace: they run on other threads.
func Do(ns string, fn func() error) error {
	fd, err := openNS(ns)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return doFd(ns, fd, fn)
}

// DoFD is Do for a namespace given by an open descriptor, such as the
// host's namespace that an agent inherits from the labctl that started it;
// name is for errors.
func DoFD(name string, fd int, fn func() error) error { return doFd(name, fd, fn) }

// doFd is Do with the namespace already open.
func doFd(ns string, fd int, fn func() error) error {
	type outcome struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan outcome, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(threadNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- outcome{err: fmt.Errorf("namespace %s: open the thread's namespace: %w", ns, err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- outcome{err: fmt.Errorf("namespace %s: setns: %w", ns, err)}
			return
		}
		var res error
		returned := false
		defer func() {
			back := returnThread(ns, orig)
			switch r := recover(); {
			case returned:
				done <- outcome{err: errors.Join(res, back)}
			case r != nil:
				done <- outcome{panicked: true, value: r}
			default:
				done <- outcome{err: errors.Join(fmt.Errorf("namespace %s: the function ended its goroutine (runtime.Goexit, as t.Fatal does) instead of returning", ns), back)}
			}
		}()
		res = fn()
		returned = true
	}()
	o := <-done
	if o.panicked {
		panic(o.value)
	}
	return o.err
}

// returnThread switches a locked thread back to namespace orig and unlocks
// it. If that fails the thread stays locked: the runtime then ends it with
// its goroutine instead of running other goroutines in the wrong namespace.
func returnThread(ns string, orig int) error {
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("namespace %s: return the thread to its namespace: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return nil
}

// prepareRunDir makes RunDir a shared mount point, once per process, as
// `ip netns add` does: a namespace unmounted here is then unmounted in every
// mount namespace that was copied from this one while it was mounted (the
// peers of a shared mount), so nothing keeps a deleted namespace alive.
var prepareRunDir = sync.OnceValue(func() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("namespaces: %w", err)
	}
	err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL {
		// Not a mount point yet: bind it on itself first.
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("namespaces: bind %s on itself: %w", RunDir, err)
		}
		err = unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("namespaces: make %s a shared mount: %w", RunDir, err)
	}
	return nil
})

// createNamespace makes namespace name with lo up and carrying marker, and
// returns it open. The namespace is set up completely before it gets its
// name, so a named namespace never lacks its marker. The name is a file in
// RunDir with the namespace bind-mounted on it; the file itself holds the
// marker too (iproute2 leaves it empty, and the mount hides it), because a
// kill between creating the file and mounting on it leaves the file alone:
// its content then tells whose it is, and the next up reuses it or the next
// down removes it. The unnamed namespace itself died with the process.
//
// IPv6 defaults are set before any interface exists, so that every
// interface inherits them. The fabric gets IPv6 off: it only bridges, and
// without IPv6 its thousands of ports neither get addresses nor send router
// solicitations and MLD reports into the lab. Nodes send no router
// solicitations: a lab has no router advertisements unless a user sets one
// up (and can turn solicitations back on with a sysctl), and each
// solicitation, repeated with backoff for as long as the interface is up,
// would flood every bridge of the lab and show up in every capture.
func createNamespace(name, marker string, fabric bool) (_ *nsEntry, err error) {
	if err := prepareRunDir(); err != nil {
		return nil, err
	}
	p, err := nsPath(name)
	if err != nil {
		return nil, err
	}

	runtime.LockOSThread()
	orig, err := unix.Open(threadNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open the thread's namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("unshare: %w", err)
	}
	defer func() { err = errors.Join(err, returnThread(name, orig)) }()

	// The thread is in the new namespace: a handle made here is bound to
	// it, which saves NewHandleAt's own switch.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	e := &nsEntry{name: name, fd: -1, h: h}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: loIndex}}
	if err := h.LinkSetAlias(lo, marker); err != nil {
		return nil, fmt.Errorf("set lo alias: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up: %w", err)
	}
	defaults := []topologies.Sysctl{{Key: "net.ipv6.conf.default.router_solicitations", Value: "0"}}
	if fabric {
		defaults = []topologies.Sysctl{{Key: "net.ipv6.conf.all.disable_ipv6", Value: "1"}, {Key: "net.ipv6.conf.default.disable_ipv6", Value: "1"}}
	}
	for _, s := range defaults {
		if err := writeSysctl(s.Key, s.Value); err != nil {
			return nil, err
		}
	}
	if e.fd, err = unix.Open(threadNS, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}

	if err := createNSFile(p, marker); err != nil {
		return nil, err
	}
	if err := unix.Mount(threadNS, p, "none", unix.MS_BIND, ""); err != nil {
		unix.Unlink(p)
		return nil, fmt.Errorf("bind %s on %s: %w", threadNS, p, err)
	}
	return e, nil
}

// createNSFile creates the file that names a namespace, holding marker. A
// file left by an interrupted create with the same marker, or with none, is
// taken over.
func createNSFile(p, marker string) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err == unix.EEXIST {
		if m, ok := leftoverMarker(filepath.Base(p)); ok && unfinished(m, marker) {
			fd, err = unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: p, Err: err}
	}
	_, err = unix.Write(fd, []byte(marker))
	unix.Close(fd)
	if err != nil {
		unix.Unlink(p)
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	return nil
}

// leftoverMarker returns the marker held by the file of namespace name, if
// that file is not (or no longer) a namespace: what an interrupted create
// leaves.
func leftoverMarker(name string) (string, bool) {
	p, err := nsPath(name)
	if err != nil || Exists(name) {
		return "", false
	}
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > maxAlias {
		return "", false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// unfinished reports whether a leftover file holding m (see leftoverMarker)
// is what an interrupted create of the namespace that carries marker left:
// the marker, or nothing at all (a create killed between making the file
// and writing the marker into it; an empty file has nothing to protect).
func unfinished(m, marker string) bool { return m == marker || m == "" }

// loIndex is lo's ifindex in every namespace but the initial one.
const loIndex = 1

// removeNamespace unmounts and unlinks namespace name, as `ip netns delete`
// does; the kernel frees the namespace, and the veths, bridges and macvlans
// in it, once nothing else holds it. Unlinking also detaches the copies of
// the mount in other mount namespaces (Linux 3.18+), such as those of
// agents started with a private copy of the mount table. A name that does
// not exist is not an error.
func removeNamespace(name string) error {
	p, err := nsPath(name)
	if err != nil {
		return err
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("namespace %s: unmount: %w", name, err)
	}
	if err := unix.Unlink(p); err != nil && err != unix.ENOENT {
		return fmt.Errorf("namespace %s: %w", name, &os.PathError{Op: "unlink", Path: p, Err: err})
	}
	return nil
}

// nsMarkerOf reads the alias of lo in an open namespace.
func nsMarkerOf(e *nsEntry) (string, error) {
	lo, err := e.h.LinkByIndex(loIndex)
	if err != nil {
		return "", fmt.Errorf("namespace %s: lo: %w", e.name, err)
	}
	return lo.Attrs().Alias, nil
}

// List returns the namespaces of lab, sorted: those named like the lab's
// whose lo alias names the lab. A file that an interrupted up left in
// RunDir without a namespace on it is listed too when it holds the lab's
// marker (see createNamespace).
func List(lab string) ([]string, error) {
	c := newNSCache()
	defer c.close()
	found, err := listLab(c, lab)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(found))
	for name := range found {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// listLab maps each namespace of lab to its node name ("" for the fabric).
// Names of both schemes are looked at: today's labctl-<lab>.<node>, and
// labctl-<lab>-<node> and labctl-<lab>--fabric of labs made by earlier
// versions, which down must still find (see topologies.NamespacePrefix).
// The older names are ambiguous (lab "a" node "b-n1" and lab "a-b" node
// "n1" share one), so the marker decides.
func listLab(c *nsCache, lab string) (map[string]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("namespaces: %w", err)
	}
	out := map[string]string{}
	for _, de := range entries {
		name := de.Name()
		if _, ok := nodeOfName(name, lab); !ok {
			continue
		}
		node, ok, err := ownedBy(c, name, lab)
		if err != nil {
			return nil, err
		}
		if ok {
			out[name] = node
		}
	}
	return out, nil
}

// nodeOfName returns the node ("" for the fabric) that name would be in lab
// under either scheme, going by the name alone.
func nodeOfName(name, lab string) (string, bool) {
	if l, node, ok := topologies.ParseNamespace(name); ok {
		if l != lab {
			return "", false
		}
		if node == topologies.FabricNode {
			node = ""
		}
		return node, true
	}
	rest, ok := strings.CutPrefix(name, topologies.NamespacePrefix+lab+"-")
	switch {
	case !ok || rest == "":
		return "", false
	case rest == "-fabric":
		return "", true
	}
	return rest, true
}

// ownedBy reports whether namespace name belongs to lab, and to which node
// ("" for the fabric): its lo alias, or for a file left by an interrupted
// create the file's content, is a marker of the lab. An empty leftover
// counts (see unfinished), by its name alone.
func ownedBy(c *nsCache, name, lab string) (node string, ok bool, err error) {
	if m, ok := leftoverMarker(name); ok {
		if m == "" {
			node, ok := nodeOfName(name, lab)
			return node, ok, nil
		}
		node, ok := markerNode(m, lab)
		return node, ok, nil
	}
	e, err := c.get(name)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	alias, err := nsMarkerOf(e)
	if err != nil {
		return "", false, err
	}
	node, ok = markerNode(alias, lab)
	return node, ok, nil
}

// markerNode returns the node ("" for the fabric) that a namespace marker
// of lab names.
func markerNode(m, lab string) (string, bool) {
	l, node, ok := parseNSMarker(m)
	if !ok || l != lab {
		return "", false
	}
	if node == topologies.FabricNode {
		node = ""
	}
	return node, true
}
