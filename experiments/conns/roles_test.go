package conns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// pair is two network namespaces of the test's own joined by a veth,
// standing for a server node and a client node.
type pair struct {
	server, client         string // namespace names
	serverAddr, clientAddr string
}

// newPair makes the namespaces and removes them at cleanup (which removes
// the veth and everything the roles left in them).
func newPair(t *testing.T) pair {
	t.Helper()
	privtest.Root(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	p := pair{server: "cc" + id + "s", client: "cc" + id + "c", serverAddr: "198.18.0.2", clientAddr: "198.18.0.1"}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	for _, ns := range []string{p.server, p.client} {
		ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		if err := labtest.Mark(ns); err != nil { // swept if the test dies
			t.Fatal(err)
		}
	}
	ip("link", "add", "cc"+id, "netns", p.client, "type", "veth", "peer", "name", "cc"+id, "netns", p.server)
	for _, end := range []struct{ ns, addr string }{{p.client, p.clientAddr}, {p.server, p.serverAddr}} {
		ip("-n", end.ns, "addr", "add", end.addr+"/30", "dev", "cc"+id)
		ip("-n", end.ns, "link", "set", "cc"+id, "up")
		ip("-n", end.ns, "link", "set", "lo", "up")
	}
	return p
}

// roleRun is what both roles of one step reported.
type roleRun struct {
	server, client       *experimentv1.RoleReport
	serverErr, clientErr error
}

// runStep runs both roles of one step in this process, each on a thread in
// its namespace of p, with a settings journal of its own that it restores
// when it ends, as an agent would.
func runStep(t *testing.T, ctx context.Context, e experiments.Experiment, p pair, variant string, params map[string]string) roleRun {
	t.Helper()
	ps, err := experiments.Validate(e.Spec(), params)
	if err != nil {
		t.Fatal(err)
	}
	step := &experimentv1.Step{Variant: variant, Params: ps.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "s", Address: p.serverAddr}, {Role: "client", Node: "c", Address: p.clientAddr}}}
	nss := map[string]netns.NsHandle{"s": labtest.Named(t, p.server), "c": labtest.Named(t, p.client)}
	reports, errs := labtest.Roles(t, ctx, e, step, ps, labtest.RoleOptions{NS: func(node string) netns.NsHandle { return nss[node] }})
	return roleRun{server: reports["server"], client: reports["client"], serverErr: errs["server"], clientErr: errs["client"]}
}

// readIn reads a file from inside namespace ns (a per-namespace sysctl).
func readIn(t *testing.T, ns, path string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", path).Output()
	if err != nil {
		t.Fatalf("read %s in %s: %v", path, ns, err)
	}
	return string(out)
}
