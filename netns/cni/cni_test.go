package cni

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/topologies"
)

// attachments plans a one-endpoint cni link with the list conflist, written
// in its own file.
func attachments(t *testing.T, conflist string) []topologies.Attachment {
	t.Helper()
	top, err := topologies.Decode("lab.yaml", []byte("name: lab\nnodes: {worker: {}, pod: {}}\nlinks:\n  - {type: cni, host: worker, conflist: net.conflist, endpoints: [pod:eth0]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	top.SetFile("net.conflist", []byte(conflist))
	p, err := top.Plan()
	if err != nil {
		t.Fatal(err)
	}
	return p.CNI
}

// TestCheck runs the pinned plugins' VERSION (no privilege needed) and
// refuses what they cannot run, pointing into the conflist.
func TestCheck(t *testing.T) {
	r := &Runner{Path: labtest.CNIPlugins(t)}
	for _, c := range []struct {
		name, conflist string
		want           string // regexp over the error; "" means no error
	}{
		{"supported", `{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}, {"type": "bandwidth", "capabilities": {"bandwidth": true}}]}`, ""},
		{"unknown type", "{\n  \"cniVersion\": \"1.0.0\", \"name\": \"n\",\n  \"plugins\": [{\"type\": \"brigde\"}]\n}",
			`^net\.conflist:3:24: plugins\[0\]\.type: no plugin "brigde" in the plugin path`},
		{"unknown ipam type", `{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "ipam": {"type": "host-locale"}}]}`,
			`^net\.conflist:1:86: plugins\[0\]\.ipam\.type: no plugin "host-locale"`},
		{"unsupported version", "{\n  \"cniVersion\": \"0.2.0\",\n  \"name\": \"n\", \"plugins\": [{\"type\": \"bandwidth\"}]\n}",
			`^net\.conflist:2:17: cniVersion: plugin bandwidth \(.*/bandwidth\) does not support cniVersion "0\.2\.0"; it supports 0\.3\.0,`},
		{"a version no plugin knows", `{"cniVersion": "9.9.9", "name": "n", "plugins": [{"type": "bridge"}]}`,
			`^net\.conflist:1:16: cniVersion: plugin bridge .* does not support cniVersion "9\.9\.9"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := r.Check(context.Background(), attachments(t, c.conflist))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == "":
				return
			case err == nil:
				t.Fatal("accepted")
			case !topologies.IsInvalid(err):
				t.Errorf("not a topology error (exit 2): %v", err)
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 1 || !regexp.MustCompile(c.want).MatchString(lines[0]) {
				t.Errorf("error %q, want it to match %s", err, c.want)
			}
		})
	}
}

// TestIdentify records which build of a plugin ran.
func TestIdentify(t *testing.T) {
	r := &Runner{Path: labtest.CNIPlugins(t)}
	ps := r.Plugins(attachments(t, `{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}]}`))
	if len(ps) != 2 || ps[0].Type != "bridge" || ps[1].Type != "host-local" {
		t.Fatalf("plugins: %+v", ps)
	}
	for _, p := range ps {
		if p.Module != "github.com/containernetworking/plugins" || !strings.HasPrefix(p.Version, "v1.") || len(p.SHA256) != 64 {
			t.Errorf("plugin %s: %+v", p.Type, p)
		}
	}
}
