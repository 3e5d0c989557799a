package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/labs"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/topologies"
)

// up sends a topology to c as the admin of roleTokens.
func up(c labv1.LabServiceClient, source, topology string) error {
	s, err := c.Up(withToken(roleTokens[2].secret), &labv1.UpRequest{Source: source, Topology: []byte(topology)})
	if err != nil {
		return err
	}
	return drain(s.Recv)
}

func down(c labv1.LabServiceClient, lab string) error {
	s, err := c.Down(withToken(roleTokens[2].secret), &labv1.DownRequest{Lab: lab})
	if err != nil {
		return err
	}
	return drain(s.Recv)
}

// TestPolicyRefuses: over a served API, topologies that reach outside the
// lab are refused without the operator's allowance, and bounds are kept;
// each refusal names its place in the file and the flag, and the host is
// unchanged (no state, no namespace, the command never ran).
func TestPolicyRefuses(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	host := &labs.Host{StateDir: t.TempDir(), RunDir: t.TempDir(), Version: "test"}
	cc, _ := servedTLS(t, roleTokens, &Policy{AllowHostNICs: []string{"lcallowed0"}, MaxNodes: 2}, host)
	c := labv1.NewLabServiceClient(cc)
	lab := labtest.Lab()
	tests := []struct {
		name, topology string
		code           codes.Code
		want           []string
	}{
		{"exec", "name: " + lab + "\nnodes:\n  n1:\n    exec: [\"touch " + ran + "\"]\n", codes.PermissionDenied,
			[]string{"t.yaml:4:12: nodes.n1.exec[0]: exec runs", "--allow-exec"}},
		{"exec in defaults", "name: " + lab + "\ndefaults:\n  exec: [\"touch " + ran + "\"]\nnodes:\n  n1: {}\n", codes.PermissionDenied,
			[]string{"t.yaml:3:10: defaults.exec[0]"}},
		{"a host NIC not allowed", "name: " + lab + "\nnodes:\n  n1: {}\nlinks:\n  - type: host-nic\n    interface: eth0\n    endpoints: [n1:nic0]\n", codes.PermissionDenied,
			[]string{"t.yaml:6:16: links[0].interface: host interface eth0 is not one this server gives to labs", "allowed: lcallowed0"}},
		{"a cni link not allowed", "name: " + lab + "\nnodes:\n  n1: {}\n  n2: {}\nlinks:\n  - type: cni\n    host: n1\n    endpoints: [n2:eth0]\n    config: {cniVersion: 1.0.0, name: net, plugins: [{type: bridge}]}\n", codes.PermissionDenied,
			[]string{"t.yaml:6:11: links[0].type: a cni link runs CNI plugins as root", "--allow-cni"}},
		{"too many nodes", "name: " + lab + "\nnodes:\n  n1: {}\n  n2: {}\n  n3: {}\n", codes.ResourceExhausted,
			[]string{"3 nodes", "at most 2 per lab (--max-nodes)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := up(c, "t.yaml", tt.topology)
			if status.Code(err) != tt.code {
				t.Fatalf("code %v, want %v: %v", status.Code(err), tt.code, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", status.Convert(err).Message(), w)
				}
			}
			if _, err := os.Stat(ran); err == nil {
				t.Error("the exec command ran")
			}
			if labs, _ := host.Labs(); len(labs) != 0 {
				t.Errorf("labs left: %v", labs)
			}
			if _, err := os.Stat(filepath.Join("/run/netns", topologies.Namespace(lab, "n1"))); err == nil {
				t.Error("a namespace was made")
			}
		})
	}
}

// TestPolicyBounds: labs and runs beyond the operator's bounds are
// ResourceExhausted, naming the bound.
func TestPolicyBounds(t *testing.T) {
	host := &labs.Host{StateDir: t.TempDir(), RunDir: t.TempDir(), Version: "test"}
	// A lab that is up, as far as the host's state says.
	if err := os.MkdirAll(filepath.Join(host.StateDir, "labs", "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host.StateDir, "labs", "other", "plan.json"), []byte(`{"lab":"other","nodes":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cc, _ := servedTLS(t, roleTokens, &Policy{MaxLabs: 1}, host)
	err := up(labv1.NewLabServiceClient(cc), "t.yaml", "name: second\nnodes:\n  n1: {}\n")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "at most 1 labs (--max-labs)") {
		t.Errorf("a second lab: %v", err)
	}

	s := &Server{Host: host, Policy: &Policy{MaxRuns: 1}}
	release, err := s.admitRun()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admitRun(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "at most 1 experiments at once (--max-concurrent-runs)") {
		t.Errorf("a second run: %v", err)
	}
	release()
	if release, err := s.admitRun(); err != nil {
		t.Errorf("a run after the first ended: %v", err)
	} else {
		release()
	}
}

// TestPolicyAllows: with the allowances, the same topologies are built:
// the exec command runs and the allowed host interface is used. A host
// interface outside the allowance is still refused.
func TestPolicyAllows(t *testing.T) {
	privtest.Root(t)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	lab := labtest.Lab()
	nic := "s" + lab[1:]
	if err := labtest.Veth(nic, nic+"p"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if lk, err := netlink.LinkByName(nic); err == nil {
			netlink.LinkDel(lk)
		}
	})
	if err := netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: nic}}); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "link", "set", nic+"p", "up").Run(); err != nil {
		t.Fatal(err)
	}
	host := &labs.Host{StateDir: t.TempDir(), RunDir: t.TempDir(), Version: "test"}
	cc, _ := servedTLS(t, roleTokens, &Policy{AllowExec: true, AllowHostNICs: []string{nic}}, host)
	c := labv1.NewLabServiceClient(cc)
	t.Cleanup(func() { _ = down(c, lab) })

	if err := up(c, "t.yaml", "name: "+lab+"\nnodes:\n  n1:\n    agent: false\n    exec: [\"touch "+ran+"\"]\n"+
		"links:\n  - type: host-nic\n    interface: eth0\n    endpoints: [n1:nic0]\n"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("eth0 outside the allowance: %v", err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("the exec command of a refused topology ran")
	}
	if err := up(c, "t.yaml", "name: "+lab+"\nnodes:\n  n1:\n    agent: false\n    exec: [\"touch "+ran+"\"]\n"+
		"links:\n  - type: host-nic\n    interface: "+nic+"\n    endpoints: [n1:mv0]\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Errorf("the exec command did not run: %v", err)
	}
	if out, err := exec.Command("ip", "-n", topologies.Namespace(lab, "n1"), "link", "show", "mv0").CombinedOutput(); err != nil {
		t.Errorf("no macvlan on %s in the node: %v: %s", nic, err, out)
	}
	if err := down(c, lab); err != nil {
		t.Fatal(err)
	}
}
