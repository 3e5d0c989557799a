package main

import (
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labctl/labctl/internal/golden"
	"github.com/labctl/labctl/internal/privtest"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// artifacts is where tests keep what a person may want to look at after a
// run (screenshots): LABCTL_ARTIFACTS, which scripts/test.sh sets, or the
// test's temporary directory.
func artifacts(t *testing.T) string {
	dir := os.Getenv("LABCTL_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium runs headless Chromium on a local file with no network and a
// throw-away profile.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		privtest.Unavailable(t, "chromium is not installed (scripts/deps.sh installs it)")
	}
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	out, err := exec.Command(bin, append(flags, args...)...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return out
}

// TestReportsInChromium makes the reports of a real rr run and a real
// zerocopy run, opens each in headless Chromium, and checks what it
// rendered: the DOM holds one SVG per figure with its title, and the
// screenshot has its plots drawn (coloured pixels down the page, not a
// blank or a broken page). The screenshots are kept in LABCTL_ARTIFACTS;
// with -update the rr one becomes docs/report-rr.png, the README's
// picture.
func TestReportsInChromium(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	rr := c.result(append([]string{"run", "rr", lab, "-q"}, shortRR...)...)
	zc := c.result("run", "zerocopy", lab, "--client", "n1", "--server", "n2", "-q", "-p", "send=read_write,sendfile,msg_zerocopy",
		"-p", "sizes=4KiB,64KiB", "-p", "duration=100ms", "-p", "warmup=20ms", "-p", "repeats=2", "-p", "max_repeats=2")
	dir := artifacts(t)
	for _, tc := range []struct {
		r       *experimentv1.Result
		figures []string
	}{
		{rr, []string{"Round-trip time", "Round-trip time: p50, p99, p99.9", "CPU per message", "Topology: " + lab}},
		{zc, []string{"Sender CPU per byte over message size", "Zero-copy sends the kernel copied", "Throughput", "Topology: " + lab}},
	} {
		page := filepath.Join(dir, "report-"+tc.r.GetExperiment()+".html")
		c.ok("report", tc.r.GetId(), "--out", page, "-q")
		dom := string(chromium(t, "--dump-dom", "file://"+page))
		if n := strings.Count(dom, "<svg"); n < len(tc.figures) {
			t.Errorf("%s: the DOM holds %d SVG elements, want at least %d", tc.r.GetExperiment(), n, len(tc.figures))
		}
		for _, f := range tc.figures {
			if !strings.Contains(dom, ">"+f+"<") {
				t.Errorf("%s: the DOM has no figure %q", tc.r.GetExperiment(), f)
			}
		}
		shot := filepath.Join(dir, "report-"+tc.r.GetExperiment()+".png")
		chromium(t, "--window-size=1200,4000", "--screenshot="+shot, "file://"+page)
		checkDrawn(t, shot, len(tc.figures))
		t.Logf("report %s, screenshot %s", page, shot)
		if tc.r == rr && golden.Updating() {
			// The README's picture: the top of the page, verdict and CDF.
			chromium(t, "--window-size=1100,1150", "--screenshot="+filepath.Join("..", "docs", "report-rr.png"), "file://"+page)
		}
	}
}

// checkDrawn decodes a screenshot and checks that plots were drawn: rows
// that hold coloured pixels (the plots' lines, bars and bands; text is
// black or grey) in at least as many separate bands as there are figures,
// covering a fair part of the page.
func checkDrawn(t *testing.T, path string, figures int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	b := img.Bounds()
	coloured, bands := 0, 0
	inBand := false
	for y := b.Min.Y; y < b.Max.Y; y++ {
		n := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			if saturated(img, x, y) {
				n++
			}
		}
		if n > 2 {
			coloured++
			if !inBand {
				bands++
			}
		}
		inBand = n > 2
	}
	if share := float64(coloured) / float64(b.Dy()); share < 0.05 || bands < figures {
		t.Errorf("screenshot %s: coloured pixels on %.0f%% of the rows in %d bands; the plots look blank", path, 100*share, bands)
	}
}

func saturated(img image.Image, x, y int) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	hi, lo := max(r, g, b), min(r, g, b)
	return hi-lo > 0x4000
}

// TestResultsCompare compares two rr runs made with different message
// sizes: the changed parameter is shown, and each summary metric's change
// with its significance; -o json is a ResultComparison.
func TestResultsCompare(t *testing.T) {
	c := newCLI(t)
	lab, _ := c.up("quickstart")
	a := c.result(append([]string{"run", "rr", lab, "-q", "-p", "size=64"}, shortRR...)...)
	b := c.result(append([]string{"run", "rr", lab, "-q", "-p", "size=32KiB"}, shortRR...)...)
	table := c.ok("results", "compare", a.GetId(), b.GetId())
	for _, want := range []string{"param size", "64", "32KiB", "client.rtt_p50_ns", "CHANGE"} {
		if !strings.Contains(table, want) {
			t.Errorf("compare does not show %q:\n%s", want, table)
		}
	}
	cmp := &experimentv1.ResultComparison{}
	c.message(cmp, "results", "compare", a.GetId(), b.GetId())
	if !cmp.GetComparable() || cmp.GetA() != a.GetId() || cmp.GetB() != b.GetId() {
		t.Fatalf("comparison of %s and %s: %v", a.GetId(), b.GetId(), cmp)
	}
	found := false
	for _, d := range cmp.GetDifferences() {
		if d.GetWhat() == "param size" && d.GetA() == "64" && d.GetB() == "32KiB" {
			found = true
		}
	}
	if !found {
		t.Errorf("the changed size is not among the differences: %v", cmp.GetDifferences())
	}
	if len(cmp.GetChanges()) == 0 {
		t.Fatal("no changes")
	}
	for _, ch := range cmp.GetChanges() {
		if ch.GetComparison() == nil || ch.GetComparison().GetText() == "" || ch.GetA().GetN() != 2 || ch.GetB().GetN() != 2 {
			t.Errorf("%s %s: no tested change over 2 and 2 repeats: %v", ch.GetVariant(), ch.GetMetric(), ch)
		}
	}
	// A result exported here and imported into another store is the same.
	out := c.ok("results", "export", b.GetId())
	other := newCLI(t)
	file := filepath.Join(t.TempDir(), "b.json")
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	other.ok("results", "import", file)
	if again := other.run("results", "import", file); again.code == 0 || !strings.Contains(again.stderr, "already stored") {
		t.Errorf("a second import of %s: exit %d, %s", b.GetId(), again.code, again.stderr)
	}
	got := other.result("results", "show", b.GetId())
	if got.GetId() != b.GetId() || len(got.GetSteps()) != len(b.GetSteps()) || got.GetVerdict().GetExplanation() != b.GetVerdict().GetExplanation() {
		t.Errorf("imported result differs from the exported one")
	}
	csv := c.ok("results", "export", b.GetId(), "--format", "csv")
	if lines := strings.Count(csv, "\n"); lines != 1+2*len(b.GetSteps()) {
		t.Errorf("csv has %d lines, want a header and 2 per step (%d steps)", lines, len(b.GetSteps()))
	}
}
