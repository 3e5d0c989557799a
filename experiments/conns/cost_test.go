package conns

import (
	"context"
	"os"
	"testing"
	"time"

	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// TestCostStepsInNamespaces runs one step of each variant between two
// namespaces and checks what does not depend on the rest of the host: the
// kernel's evidence that the connections were in the state each snapshot
// assumes, and that the report carries every series of every snapshot.
// What the slabs weigh is host-wide (other tests and tenants move it) and
// is measured, not asserted: see bench/results/conn-cost.md.
func TestCostStepsInNamespaces(t *testing.T) {
	p := newPair(t)
	const n = 3000
	for _, v := range costVariants {
		t.Run(v, func(t *testing.T) {
			out := runStep(t, context.Background(), Cost{}, p, costVariant(v, n), map[string]string{"counts": "3000", "variants": v, "hold": "0s"})
			if out.serverErr != nil || out.clientErr != nil {
				t.Fatalf("server: %v, client: %v", out.serverErr, out.clientErr)
			}
			step := &experimentv1.StepResult{Step: &experimentv1.Step{Variant: costVariant(v, n), Params: map[string]string{"counts": "3000", "variants": v}},
				Reports: []*experimentv1.RoleReport{out.server, out.client}}
			if missing := shortfalls(step); len(missing) > 0 {
				t.Errorf("evidence: %v", missing)
			}
			m := out.client.Metrics
			for _, phase := range []string{phaseEstablished, phaseCloseWait, phaseTimeWait} {
				for _, series := range []string{"TCP", "tw_sock_TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", seriesConnCaches, seriesAllSlab, seriesTCPMem} {
					if _, ok := m[phase+"."+series+"_bytes"]; !ok {
						t.Errorf("no %s.%s_bytes", phase, series)
					}
				}
			}
			// The per-connection figures are the snapshots' changes split
			// into ends, over n.
			e := splitEnds(m["established.conn_caches_bytes"], m["close_wait.conn_caches_bytes"], m["time_wait.conn_caches_bytes"])
			for name, want := range map[string]float64{"pair_per_conn_bytes": e.Pair / n, "server_end_per_conn_bytes": e.ServerEnd / n,
				"client_end_per_conn_bytes": e.ClientEnd / n, "time_wait_per_conn_bytes": e.TimeWait / n, "conns": n} {
				if m[name] != want {
					t.Errorf("%s = %v, want %v", name, m[name], want)
				}
			}
			if m["open_per_s"] <= 0 {
				t.Errorf("open_per_s %v", m["open_per_s"])
			}
			if destroyed, ok := evidence(out.client, "time_wait_destroyed"); !ok || destroyed != n {
				t.Errorf("TIME_WAIT sockets destroyed: %v", destroyed)
			}
			leftovers(t, p)
		})
	}
}

func evidence(r *experimentv1.RoleReport, name string) (float64, bool) {
	e := evidenceOf(r, name)
	return e.GetValue(), e != nil
}

func TestCostCancelLeavesNothing(t *testing.T) {
	p := newPair(t)
	before, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		t.Fatal(err)
	}
	// 60,000 connections take seconds: the cancel comes while they open.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	out := runStep(t, ctx, Cost{}, p, "idle n=60000", map[string]string{"counts": "60000", "variants": "idle"})
	if out.clientErr == nil || out.serverErr == nil {
		t.Fatalf("a cancelled step ended without errors: client %v, server %v", out.clientErr, out.serverErr)
	}
	leftovers(t, p)
	if after, _ := os.ReadFile("/proc/self/limits"); string(after) != string(before) {
		t.Errorf("process limits changed:\n%s\nwant\n%s", after, before)
	}
}
