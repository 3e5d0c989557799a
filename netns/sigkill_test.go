package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/topologies"
)

// sigkillPlan is linear,5 plus a node hx holding a moved host interface.
func sigkillPlan(lab, host string) *topologies.Plan {
	p := linearPlan(lab, 5)
	p.Nodes = append(p.Nodes, topologies.Node{Name: "hx", Namespace: topologies.Namespace(lab, "hx")})
	p.Links = append(p.Links, topologies.Link{ID: "host:hx:eth1", Kind: topologies.KindMove, Host: host,
		Ends: []topologies.Iface{end(p, "hx", "eth1", "198.18.202.2/24")}})
	return p
}

// applyChild is the child of TestSigkill: it applies sigkillPlan slowly
// (so that the parent's kill lands midway) and waits to be killed.
func applyChild() error {
	lab, host, path := os.Getenv("NETNS_TEST_LAB"), os.Getenv("NETNS_TEST_HOST"), os.Getenv("NETNS_TEST_JOURNAL")
	j, err := OpenJournal(path)
	if err != nil {
		return err
	}
	_, err = Apply(context.Background(), nil, sigkillPlan(lab, host), Options{
		Journal:  j,
		Workers:  2,
		Progress: func(Progress) { time.Sleep(2 * time.Millisecond) },
	})
	if err != nil {
		return err
	}
	select {} // the parent kills us
}

// TestSigkill kills an Apply with SIGKILL after it has written k journal
// records, for k early, midway and late, and checks that what is left
// converges: by Destroy with neither plan nor journal (the marker sweep),
// by a new Apply, and by Destroy with the journal.
func TestSigkill(t *testing.T) {
	privtest.Root(t)
	objs := objects(sigkillPlan("x", "x"))
	total := 2 * len(objs) // a begin and a done each
	for _, c := range []struct {
		records  int
		converge string
	}{
		{1, "sweep"},
		{total / 7, "apply"},
		{total / 4, "journal"},
		{total / 2, "apply"},
		{2 * total / 3, "sweep"},
		{total - 3, "journal"},
	} {
		t.Run(fmt.Sprintf("%d of %d records, then %s", c.records, total, c.converge), func(t *testing.T) {
			lab := uniqueLab(t)
			far := "lct-" + lab
			helperNS(t, far)
			host := "s" + lab[1:] + "v"
			lk := standIn(t, host, far, "198.18.202.1/24")
			if err := setStandIn(lk); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "journal")
			t.Cleanup(func() {
				if _, err := Destroy(context.Background(), lab, nil, Options{}); err != nil {
					t.Errorf("cleanup: %v", err)
				}
				assertNoLab(t, lab)
			})

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "NETNS_TEST_CHILD=apply", "NETNS_TEST_LAB="+lab, "NETNS_TEST_HOST="+host, "NETNS_TEST_JOURNAL="+path)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			written := 0
			for written < c.records {
				select {
				case err := <-exited:
					t.Fatalf("child exited before %d records: %v: %s", c.records, err, stderr.String())
				default:
				}
				data, _ := os.ReadFile(path)
				written = bytes.Count(data, []byte("\n"))
				time.Sleep(100 * time.Microsecond)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			data, _ := os.ReadFile(path)
			t.Logf("killed with %d records written", bytes.Count(data, []byte("\n")))

			ctx := context.Background()
			p := sigkillPlan(lab, host)
			switch c.converge {
			case "sweep":
				if _, err := Destroy(ctx, lab, nil, Options{}); err != nil {
					t.Fatal(err)
				}
			case "apply":
				j, err := OpenJournal(path)
				if err != nil {
					t.Fatal(err)
				}
				defer j.Close()
				if _, err := Apply(ctx, nil, p, Options{Journal: j}); err != nil {
					t.Fatal(err)
				}
				st, err := Observe(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if d := st.Drift(); len(d) > 0 {
					t.Errorf("drift after converging: %+v", d)
				}
				ping(t, topologies.Namespace(lab, "h1"), "198.18.0.6") // h5, across five bridges
				ping(t, topologies.Namespace(lab, "hx"), "198.18.202.1")
				if _, err := Destroy(ctx, lab, p, Options{Journal: j}); err != nil {
					t.Fatal(err)
				}
				if objs := j.objects(OpBegin, OpDone); len(objs) > 0 {
					t.Errorf("the journal still knows of %q", names(objs))
				}
			case "journal":
				j, err := OpenJournal(path)
				if err != nil {
					t.Fatal(err)
				}
				defer j.Close()
				if _, err := Destroy(ctx, lab, nil, Options{Journal: j}); err != nil {
					t.Fatal(err)
				}
			}
			assertNoLab(t, lab)
			assertRestored(t, host)
		})
	}
}
