package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
)

// needTools skips or fails a test without the tools it verifies with.
func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			privtest.Unavailable(t, tool+" is not installed")
		}
	}
}

// newLab prepares a privileged test of lab: a journal, and a cleanup that
// destroys the lab (on failure too) and then checks that nothing of it is
// left.
func newLab(t *testing.T, lab string) *Journal {
	t.Helper()
	privtest.Root(t)
	needTools(t, "ip")
	j, err := OpenJournal(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := Destroy(context.Background(), lab, nil, Options{Journal: j}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		j.Close()
		assertNoLab(t, lab)
	})
	return j
}

// assertNoLab checks that no namespace, mount or interface of lab is left.
func assertNoLab(t testing.TB, lab string) {
	t.Helper()
	if names, err := List(lab); err != nil || len(names) > 0 {
		t.Errorf("lab %s: namespaces left: %q (%v)", lab, names, err)
	}
	entries, _ := os.ReadDir(RunDir)
	for _, e := range entries {
		// Files named like the lab's that are not namespaces are what an
		// interrupted create would leave.
		if strings.HasPrefix(e.Name(), "labctl-"+lab) && !Exists(e.Name()) {
			t.Errorf("lab %s: file left in %s: %s", lab, RunDir, e.Name())
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], RunDir+"/labctl-"+lab) && !Exists(filepath.Base(f[4])) {
			t.Errorf("lab %s: mount left: %s", lab, f[4])
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, lk := range links {
		alias := lk.Attrs().Alias
		if alias == ifaceMarker(lab) || strings.HasPrefix(alias, ifaceMarker(lab)+":") {
			t.Errorf("lab %s: host interface %s still carries %q", lab, lk.Attrs().Name, alias)
		}
	}
}

// inNS runs a command inside namespace ns and returns its output.
func inNS(t testing.TB, ns string, name string, args ...string) string {
	t.Helper()
	var out, stderr bytes.Buffer
	cmd := Command(context.Background(), ns, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err, stderr.String())
	}
	return out.String()
}

// ipJSON runs `ip -j args...` in ns ("" for the host) and decodes it.
func ipJSON(t testing.TB, ns string, args ...string) []map[string]any {
	t.Helper()
	full := append([]string{"-j"}, args...)
	if ns != "" {
		full = append([]string{"-n", ns}, full...)
	}
	out, err := exec.Command("ip", full...).Output()
	if err != nil {
		t.Fatalf("ip %s: %v", strings.Join(full, " "), err)
	}
	var v []map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
	return v
}

// link returns `ip -d -j link show dev` of one interface.
func link(t testing.TB, ns, dev string) map[string]any {
	t.Helper()
	v := ipJSON(t, ns, "-d", "link", "show", "dev", dev)
	if len(v) != 1 {
		t.Fatalf("%s: %s: %d links", ns, dev, len(v))
	}
	return v[0]
}

// addrs returns the local/prefixlen addresses of dev, link-local excluded.
func addrs(t testing.TB, ns, dev string) []string {
	t.Helper()
	var out []string
	for _, l := range ipJSON(t, ns, "addr", "show", "dev", dev) {
		for _, a := range l["addr_info"].([]any) {
			a := a.(map[string]any)
			if a["scope"] == "link" {
				continue
			}
			out = append(out, fmt.Sprintf("%v/%v", a["local"], a["prefixlen"]))
		}
	}
	return out
}

// hasFlag reports whether an `ip -j link` object has flag f.
func hasFlag(l map[string]any, f string) bool {
	for _, x := range l["flags"].([]any) {
		if x == f {
			return true
		}
	}
	return false
}

// ping sends one echo request from ns to addr.
func ping(t testing.TB, ns, addr string) {
	t.Helper()
	needTools(t, "ping")
	out, err := Command(context.Background(), ns, "ping", "-c1", "-W1", addr).CombinedOutput()
	if err != nil {
		t.Errorf("ping %s from %s: %v\n%s", addr, ns, err, out)
	}
}

// netnsInode is the inode of a namespace file (or of /proc/<pid>/ns/net).
func netnsInode(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// standIn makes a veth pair in the host namespace to stand in for a host
// NIC (this kernel has no dummy or netdevsim): name stays in the host, its
// peer goes into namespace peerNS with peerAddr. Both are removed in
// cleanup.
func standIn(t *testing.T, name, peerNS, peerAddr string) netlink.Link {
	t.Helper()
	peer := name + "p"
	// Both ends carry the test's marker, so that a sweep finds them if the
	// test dies before its cleanup.
	if err := labtest.Veth(name, peer); err != nil {
		t.Fatalf("stand-in %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Wherever the test left it (a failed restore leaves it in a lab
		// namespace, which the lab's cleanup deletes with it).
		if lk, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(lk)
		}
	})
	lk, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", fmt.Sprintf(
		"ip link set %[1]s netns %[2]s && ip -n %[2]s addr add %[3]s dev %[1]s && ip -n %[2]s link set %[1]s up",
		peer, peerNS, peerAddr)).CombinedOutput()
	if err != nil {
		t.Fatalf("stand-in %s: %v: %s", name, err, out)
	}
	return lk
}

// helperNS creates a plain namespace for the far ends of stand-ins.
func helperNS(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("%s: lo up: %v: %s", name, err, out)
	}
	if err := labtest.Mark(name); err != nil {
		t.Fatal(err)
	}
}

// ipQdisc returns the root qdisc of dev from `tc -j qdisc show`.
func ipQdisc(t testing.TB, ns, dev string) map[string]any {
	t.Helper()
	out := inNS(t, ns, "tc", "-j", "qdisc", "show", "dev", dev, "root")
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) == 0 {
		t.Fatalf("%s: tc qdisc show dev %s: %v: %s", ns, dev, err, out)
	}
	return v[0]
}
