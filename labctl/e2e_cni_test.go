package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/labctl/labctl/internal/labtest"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
)

// TestCNIKubernetesNode brings up the k8s-node example with the pinned
// plugins (bridge with host-local IPAM, then bandwidth, run in worker's
// namespace), checks what the plugins made against the conflist, runs rr
// from outside the node to a pod and from pod to pod, shows the shaping in
// rr's result, and checks that down leaves nothing.
func TestCNIKubernetesNode(t *testing.T) {
	c := newCLI(t)
	plugins := labtest.CNIPlugins(t)
	c.env = append(c.env, "CNI_PATH="+strings.Join(plugins, ":"))
	lab, path := c.labFile("k8s-node")
	existed := map[string]bool{}
	for _, d := range []string{"/var/lib/cni", "/run/cni"} {
		_, err := os.Stat(d)
		existed[d] = err == nil
	}

	change := &labv1.Change{}
	c.message(change, "up", path, "-q")

	// One span per plugin call, under the attachment's, naming the plugin,
	// its version and the interface.
	calls := map[string]int{}
	for _, sp := range c.spans(change.GetTraceId()) {
		if sp.Name != "cni.plugin add" {
			continue
		}
		calls[sp.attr("labctl.cni.plugin")]++
		if sp.attr("labctl.cni.plugin_version") != "v1.10.0" || sp.attr("labctl.cni.ifname") != "eth0" {
			t.Errorf("span of plugin %s: version %q, interface %q", sp.attr("labctl.cni.plugin"), sp.attr("labctl.cni.plugin_version"), sp.attr("labctl.cni.ifname"))
		}
	}
	if calls["bridge"] != 2 || calls["bandwidth"] != 2 {
		t.Errorf("plugin spans: %v, want bridge and bandwidth twice each", calls)
	}

	// Pod addresses from host-local, in the conflist's range, and the
	// status and plan that show them.
	st := c.status(lab)
	var cniLinks int
	for _, l := range st.GetLinks() {
		if l.GetKind() == "cni" {
			cniLinks++
			if !l.GetPresent() || !slices.ContainsFunc(l.GetMade(), func(s string) bool { return strings.HasPrefix(s, "address 10.22.0.") }) {
				t.Errorf("status: %s present %v, made %q", l.GetId(), l.GetPresent(), l.GetMade())
			}
		}
	}
	if cniLinks != 2 || len(st.GetDrift()) > 0 {
		t.Errorf("status: %d cni attachments, drift %q", cniLinks, st.GetDrift())
	}
	for _, pod := range []string{"pod-a", "pod-b"} {
		out := c.ok("exec", lab, pod, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if !strings.Contains(out, "inet 10.22.0.") {
			t.Errorf("%s eth0: %s", pod, out)
		}
	}

	// The bandwidth plugin's tbf at the configured rate, on both pods'
	// host-side veths and on their ifb devices.
	var qdiscs []struct {
		Kind    string `json:"kind"`
		Dev     string `json:"dev"`
		Options struct {
			Rate uint64 `json:"rate"`
		} `json:"options"`
	}
	if err := json.Unmarshal([]byte(c.ok("exec", lab, "worker", "--", "tc", "-j", "qdisc")), &qdiscs); err != nil {
		t.Fatal(err)
	}
	tbfs := 0
	for _, q := range qdiscs {
		if q.Kind == "tbf" {
			tbfs++
			// tc -j reports the rate in bytes per second.
			if q.Options.Rate != 100_000_000/8 {
				t.Errorf("tbf on %s: rate %d B/s, want %d", q.Dev, q.Options.Rate, 100_000_000/8)
			}
		}
	}
	if tbfs != 4 {
		t.Errorf("worker has %d tbf qdiscs, want 4 (ingress and egress of two pods): %+v", tbfs, qdiscs)
	}

	// Hairpin mode on the bridge ports, as the conflist asks.
	var links []struct {
		Name     string `json:"ifname"`
		Master   string `json:"master"`
		LinkInfo struct {
			SlaveData struct {
				Hairpin *bool `json:"hairpin"`
			} `json:"info_slave_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(c.ok("exec", lab, "worker", "--", "ip", "-d", "-j", "link")), &links); err != nil {
		t.Fatal(err)
	}
	ports := 0
	for _, l := range links {
		if l.Master == "cni0" {
			ports++
			if h := l.LinkInfo.SlaveData.Hairpin; h == nil || !*h {
				t.Errorf("bridge port %s: hairpin %v, the conflist says hairpinMode: true", l.Name, h)
			}
		}
	}
	if ports != 2 {
		t.Errorf("cni0 has %d ports, want 2", ports)
	}
	// What the plugins made is in worker, none of it in the host.
	for _, l := range links {
		if l.Name == "lo" || l.Name == "eth0" {
			continue
		}
		if _, err := netlink.LinkByName(l.Name); err == nil {
			t.Errorf("interface %s, which the plugins made in worker, is in the host's namespace", l.Name)
		}
	}

	// rr from outside the node to a pod, and pod to pod: small messages
	// complete, and 64 KiB ones show the shaper. Requests cross the pod's
	// ingress tbf and responses its egress tbf, each 100 Mbit/s with a
	// 125 kB bucket: a message fits in a bucket, and each bucket refills
	// while the other direction's message is on its way, so a round trip
	// takes at least 64 KiB × 8 / 100 Mbit/s = 5.2 ms (not twice that),
	// where the same link unshaped takes a fraction of a millisecond.
	for _, roles := range [][2]string{{"client", "pod-a"}, {"pod-a", "pod-b"}} {
		res := c.result("run", "rr", lab, "--client", roles[0], "--server", roles[1], "--param", "duration=1s", "--param", "repeats=3", "-q")
		completed(t, res, 3)
		// The run says which plugin builds made the network it measured.
		var types []string
		for _, p := range res.GetHost().GetCniPlugins() {
			types = append(types, p.GetType())
			if p.GetVersion() == "" || len(p.GetSha256()) != 64 || !strings.HasPrefix(p.GetPath(), plugins[0]) {
				t.Errorf("plugin %s in the result's environment: %+v", p.GetType(), p)
			}
		}
		if !slices.Equal(types, []string{"bridge", "host-local", "bandwidth"}) {
			t.Errorf("the result's cni plugins: %q", types)
		}
	}
	const size, rate = 64 << 10, 100e6
	res := c.result("run", "rr", lab, "--client", "client", "--server", "pod-a",
		"--param", "size=64KiB", "--param", "duration=2s", "--param", "repeats=3", "-q")
	completed(t, res, 3)
	floor := size * 8 / rate * 1e9 // ns
	for _, s := range res.GetSteps() {
		var p50, perSec float64
		for _, r := range s.GetReports() {
			if r.GetRole() == "client" {
				p50, perSec = r.GetMetrics()["rtt_p50_ns"], r.GetMetrics()["msgs_per_s"]
			}
		}
		if p50 < 0.8*floor {
			t.Errorf("rr 64KiB through the shaper: p50 %.2f ms, below the %.2f ms the 100 Mbit/s rate allows", p50/1e6, floor/1e6)
		}
		// Throughput towards the pod, request bytes only, is bounded by the
		// rate (the 1 Mbit burst adds at most 0.5 Mbit/s over 2 s).
		if bits := perSec * size * 8; bits > 1.05*rate {
			t.Errorf("rr 64KiB: %.1f Mbit/s towards the pod, above the 100 Mbit/s rate", bits/1e6)
		}
	}

	// Down: no namespace, no interface in the host, no IPAM reservation
	// or libcni cache file, nothing in the places plugins default to.
	c.ok("down", lab, "-q")
	assertGone(t, lab)
	if _, err := os.Stat(filepath.Join(c.state, "labs", lab)); !os.IsNotExist(err) {
		left, _ := filepath.Glob(filepath.Join(c.state, "labs", lab, "cni", "*", "*"))
		t.Errorf("the lab's state is left (%v): %q", err, left)
	}
	for d, was := range existed {
		if _, err := os.Stat(d); err == nil && !was {
			t.Errorf("%s was made: the plugins wrote outside the lab", d)
		}
	}
}

// TestCNIBadInputChangesNothing: a conflist labctl or the plugins refuse
// stops up before anything is made, with exit 2 and the place in the file
// (the topology's or the conflist's).
func TestCNIBadInputChangesNothing(t *testing.T) {
	c := newCLI(t)
	c.env = append(c.env, "CNI_PATH="+strings.Join(labtest.CNIPlugins(t), ":"))
	list := func(version, plugins string) string {
		return `{"cniVersion": "` + version + `", "name": "net",` + "\n" + `"plugins": [` + plugins + `]}`
	}
	bridge := `{"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "SUBNET"}]]}}`
	for _, tc := range []struct {
		name, conflist, route, want string
	}{
		{"bad JSON", `{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge",}]}`, "", `net\.conflist:1:70: invalid JSON`},
		{"unknown plugin type", list("1.0.0", `{"type": "bridgr"}`), "", `net\.conflist:2:22: plugins\[0\]\.type: no plugin "bridgr"`},
		{"unsupported cniVersion", list("0.2.0", `{"type": "bandwidth"}`), "", `net\.conflist:1:16: cniVersion: plugin bandwidth .* does not support cniVersion "0\.2\.0"`},
		{"overlapping IPAM subnet", list("1.0.0", strings.Replace(bridge, "SUBNET", "198.18.0.0/16", 1)), "", `net\.conflist:2:86: plugins\[0\]\.ipam\.ranges\[0\]\[0\]\.subnet: the IPAM subnet 198\.18\.0\.0/16 overlaps the lab's address pool`},
		{"via a cni endpoint", list("1.0.0", strings.Replace(bridge, "SUBNET", "10.22.0.0/24", 1)), "    routes: [{dst: 10.22.0.0/24, via: pod:eth0}]\n", `\.yaml:4:39: nodes\.client\.routes\[0\]\.via: interface pod:eth0 is made by a cni link`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := labtest.Lab()
			dir := t.TempDir()
			top := "name: " + lab + "\nnodes:\n  client:\n" + tc.route + "  worker: {}\n  pod: {}\nlinks:\n" +
				"  - endpoints: [client:eth0, worker:eth0]\n" +
				"  - {type: cni, host: worker, conflist: net.conflist, endpoints: [pod:eth0]}\n"
			if tc.route == "" {
				top = strings.Replace(top, "  client:\n", "  client: {}\n", 1)
			}
			file := filepath.Join(dir, "lab.yaml")
			if err := os.WriteFile(file, []byte(top), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "net.conflist"), []byte(tc.conflist), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, verb := range []string{"plan", "up"} {
				r := c.run(verb, file, "-q")
				if r.code != 2 || !regexp.MustCompile(tc.want).MatchString(r.stderr) {
					t.Errorf("%s: exit %d, stderr %q; want exit 2 and %s", verb, r.code, r.stderr, tc.want)
				}
			}
			assertGone(t, lab)
			if _, err := os.Stat(filepath.Join(c.state, "labs", lab)); !os.IsNotExist(err) {
				t.Errorf("up left the lab's state directory (%v)", err)
			}
		})
	}
}
