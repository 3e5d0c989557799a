// Command bench measures labctl against the tools a user would otherwise
// pick, alternately in one run on one machine, and writes BENCHMARKS.md:
// the machine, kernel and date, the median and spread of every figure, and
// the ratio labctl/peer computed pair by pair. Benchmarks are not tests:
// nothing here fails on a number.
//
//	sudo go run ./bench                       # everything, writes BENCHMARKS.md
//	sudo go run ./bench -sections bringup -reps 3
//
// It needs root, the built labctl (it builds one), and the peers from
// scripts/deps.sh --bench (mininet, bridge-utils, sockperf, iperf3).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

type section struct {
	name string
	run  func(ctx context.Context, b *bench) (string, error)
}

var sections = []section{
	{"bringup", bringup},
	{"latency", latency},
	{"throughput", throughput},
	{"tracing", tracing},
	{"packets", packets},
}

// bench carries what every section shares.
type bench struct {
	labctl string   // the built binary
	env    []string // its environment: state directories of the run's own
	reps   int
	quick  bool
	log    func(format string, args ...any)
}

func main() {
	out := flag.String("o", "BENCHMARKS.md", "file to write")
	only := flag.String("sections", "bringup,latency,throughput,tracing,packets", "sections to run")
	reps := flag.Int("reps", 5, "alternating repetitions of each comparison")
	quick := flag.Bool("quick", false, "smaller sizes, for trying the harness out")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *out, strings.Split(*only, ","), *reps, *quick); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string, only []string, reps int, quick bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	dir, err := os.MkdirTemp("", "labctl-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "labctl")
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+gitVersion(), "-o", bin, "./labctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build labctl: %v\n%s", err, out)
	}
	b := &bench{
		labctl: bin,
		env:    append(os.Environ(), "LABCTL_STATE_DIR="+filepath.Join(dir, "state"), "LABCTL_RUN_DIR="+filepath.Join(dir, "run")),
		reps:   reps,
		quick:  quick,
		log:    func(f string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...) },
	}
	var doc bytes.Buffer
	fmt.Fprintf(&doc, "# Benchmarks\n\nWritten by `go run ./bench` (see bench/main.go); every figure is the median of %d alternating repetitions with its range [min .. max], and labctl/peer ratios are computed pair by pair (repetition i of labctl over repetition i of the peer), then summarised the same way.\n\n", reps)
	fmt.Fprintf(&doc, "%s\n", machine())
	// The reading of the numbers is written by hand (bench/READING.md).
	if reading, err := os.ReadFile("bench/READING.md"); err == nil {
		doc.Write(reading)
		doc.WriteString("\n")
	}
	for _, s := range sections {
		if !contains(only, s.name) {
			continue
		}
		b.log("section %s", s.name)
		text, err := s.run(ctx, b)
		if err != nil {
			fmt.Fprintf(&doc, "## %s\n\nnot measured: %v\n\n", s.name, err)
			b.log("section %s: %v", s.name, err)
			continue
		}
		doc.WriteString(text)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	doc.WriteString(experimentTables())
	return os.WriteFile(out, doc.Bytes(), 0o644)
}

// experimentTables appends what each experiment's engineer measured with
// the experiment's defaults (bench/results/*.md).
func experimentTables() string {
	files, _ := filepath.Glob("bench/results/*.md")
	sort.Strings(files)
	if len(files) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("# Experiment tables\n\nEach experiment run with its defaults on its example lab; the command that produced each table is with it.\n\n")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// Demote headings one level so they nest under this one; a # in a
		// fenced block is a shell comment, not a heading.
		fenced := false
		for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
			if strings.HasPrefix(line, "```") {
				fenced = !fenced
			}
			if !fenced && strings.HasPrefix(line, "#") {
				line = "#" + line
			}
			b.WriteString(line + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func gitVersion() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "bench"
	}
	return strings.TrimSpace(string(out))
}

// machine describes where the numbers come from.
func machine() string {
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	str := func(b [65]int8) string {
		var s []byte
		for _, c := range b {
			if c == 0 {
				break
			}
			s = append(s, byte(c))
		}
		return string(s)
	}
	model := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("Machine: %s, kernel %s, %d CPUs (%s), labctl %s; %s; load average at start %s.\n",
		str(u.Nodename), str(u.Release), runtime.NumCPU(), model, gitVersion(), time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		strings.Join(strings.Fields(string(load))[:3], " "))
}
