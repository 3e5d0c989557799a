package busypoll

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/golden"
	"github.com/labctl/labctl/internal/labtest"
)

func lab(t *testing.T, example, client, server string) experiments.Lab {
	t.Helper()
	return labtest.Example(t, example, map[string]string{"client": client, "server": server})
}

func validated(t *testing.T, given map[string]string) experiments.Params {
	t.Helper()
	p, err := experiments.Validate(Experiment{}.Spec(), given)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStepsGolden lays out the steps of runs on the example labs: which
// path each device condition takes, which devices' polls are counted, and
// the interleaving of variants across repeats.
func TestStepsGolden(t *testing.T) {
	for _, tc := range []struct {
		name, example, client, server string
		params                        map[string]string
	}{
		{"busy-poll", "busy-poll", "client", "server", map[string]string{
			"devices": "loopback,veth,veth-gro,veth-gro-tso,veth-xdp,nic", "mechanisms": "blocking,busy_read,so_busy_poll_budget",
			"timeouts": "25us,50us", "repeats": "2"}},
		{"paths-nic", "paths", "n1", "n4", map[string]string{"devices": "veth,nic", "mechanisms": "spin", "repeats": "1"}},
		{"paths-veth", "paths", "n1", "n2", map[string]string{"devices": "veth,veth-xdp", "mechanisms": "epoll_params", "repeats": "1", "napi_devices": "eth9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := Experiment{}.Steps(validated(t, tc.params), lab(t, tc.example, tc.client, tc.server))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, s := range steps {
				srv, cli := s.GetRoles()[0], s.GetRoles()[1]
				fmt.Fprintf(&b, "%d %-40s server %s@%s client %s napi_devices=%s\n", s.GetRepeat(), s.GetVariant(),
					srv.GetNode(), srv.GetAddress(), cli.GetNode(), s.GetParams()["napi_devices"])
				if _, err := experiments.Validate(Experiment{}.Spec(), s.GetParams()); err != nil {
					t.Errorf("step %s: its parameters do not validate, the agent would refuse them: %v", s.GetVariant(), err)
				}
			}
			golden.Check(t, filepath.Join("testdata", "steps-"+tc.name+".golden"), []byte(b.String()))
		})
	}
}

func TestStepsRefuseALabWithoutAnyDevice(t *testing.T) {
	// quickstart has one plain veth: no GRO link, no NIC.
	_, err := Experiment{}.Steps(validated(t, map[string]string{"devices": "veth-gro,nic"}), lab(t, "quickstart", "n1", "n2"))
	if err == nil || !strings.Contains(err.Error(), "veth-gro, nic") {
		t.Errorf("Steps: %v; want an error naming the devices", err)
	}
}

func TestSpecParamsValidate(t *testing.T) {
	p := validated(t, nil)
	if got := p.Map()["devices"]; got != "loopback,veth,veth-gro,veth-xdp,nic" {
		t.Errorf("default devices %v", got)
	}
	for _, bad := range []map[string]string{
		{"timeouts": "2ms"}, {"mechanisms": "blocking,poll"}, {"devices": "wifi"}, {"connections": "0"}, {"budget": "0"},
	} {
		if _, err := experiments.Validate(Experiment{}.Spec(), bad); err == nil {
			t.Errorf("parameters %v were accepted", bad)
		}
	}
}
