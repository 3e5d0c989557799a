package captureorder

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// errNoTcpdump means tcpdump is not installed: the run has no cross-check.
var errNoTcpdump = errors.New("tcpdump is not installed")

// tcpdumpStartTimeout bounds the wait for tcpdump to say it listens.
const tcpdumpStartTimeout = 5 * time.Second

// tcpdumpSettle is how long Stop lets tcpdump finish on its own (it exits
// by itself once it has captured the step's count) before interrupting it:
// an interrupted tcpdump stops reading its ring at once, and what it had
// not yet read is missing from "packets captured".
const tcpdumpSettle = 300 * time.Millisecond

// tcpdump is a running tcpdump that counts the datagrams to one UDP port in
// one direction, as a cross-check of the run's own capture.
type tcpdump struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	closed chan struct{}

	once   sync.Once
	result tcpdumpTally
	err    error
}

// startTcpdump runs `tcpdump -i iface -Q in|out -c count ... udp dst port
// PORT` in the calling thread's network namespace and returns once it
// listens.
func startTcpdump(ctx context.Context, iface string, dir direction, port, count int) (*tcpdump, error) {
	path, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil, errNoTcpdump
	}
	q := "in"
	if dir == egress {
		q = "out"
	}
	// -p: no promiscuous mode (the run's own capture does not use it
	// either); --immediate-mode: hand packets over at once rather than a
	// ring block at a time; -s 128 -B 16384: in immediate mode libpcap
	// sizes every ring slot for the snapshot length, and with the default
	// 256 KiB snapshot its 2 MiB ring holds 8 frames: a burst overflows it
	// ("dropped by kernel"); -c: exit once the step's datagrams are all
	// captured; -w /dev/null: count, do not print.
	cmd := exec.CommandContext(ctx, path, "-i", iface, "-nn", "-p", "-Q", q, "--immediate-mode", "-s", "128", "-B", "16384",
		"-c", fmt.Sprint(count), "-w", "/dev/null", fmt.Sprintf("udp dst port %d", port))
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpdump: %w", err)
	}
	t := &tcpdump{cmd: cmd, closed: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		defer close(t.closed)
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			t.mu.Lock()
			t.stderr.WriteString(sc.Text() + "\n")
			t.mu.Unlock()
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
	}()
	select {
	case <-listening:
		return t, nil
	case <-t.closed:
		_ = cmd.Wait()
		return nil, fmt.Errorf("tcpdump on %s exited before listening: %s", iface, strings.TrimSpace(t.output()))
	case <-time.After(tcpdumpStartTimeout):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("tcpdump on %s did not start listening within %v: %s", iface, tcpdumpStartTimeout, strings.TrimSpace(t.output()))
	}
}

func (t *tcpdump) output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stderr.String()
}

// Stop waits for tcpdump to exit on its own, at most tcpdumpSettle, then
// interrupts it as Ctrl-C does, and reads the counts it prints; calls after
// the first return the same.
func (t *tcpdump) Stop() (tcpdumpTally, error) {
	t.once.Do(func() {
		select {
		case <-t.closed:
		case <-time.After(tcpdumpSettle):
			_ = t.cmd.Process.Signal(unix.SIGINT)
			<-t.closed
		}
		_ = t.cmd.Wait() // tcpdump exits 0 on SIGINT; its counts are the result
		t.result, t.err = parseTcpdumpCounts(t.output())
		if t.err != nil {
			t.err = fmt.Errorf("tcpdump: %w", t.err)
		}
	})
	return t.result, t.err
}

// tcpdumpTally is the summary tcpdump prints when it stops.
type tcpdumpTally struct {
	Captured         int64 // "packets captured": handed to tcpdump and written
	ReceivedByFilter int64 // "packets received by filter"
	DroppedByKernel  int64 // "packets dropped by kernel"
}

var tcpdumpCount = regexp.MustCompile(`(?m)^(\d+) packets? (captured|received by filter|dropped by kernel)$`)

// parseTcpdumpCounts reads the summary lines of tcpdump's stderr.
func parseTcpdumpCounts(stderr string) (tcpdumpTally, error) {
	var c tcpdumpTally
	found := 0
	for _, m := range tcpdumpCount.FindAllStringSubmatch(stderr, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return c, fmt.Errorf("count %q: %w", m[1], err)
		}
		switch m[2] {
		case "captured":
			c.Captured = n
			found++
		case "received by filter":
			c.ReceivedByFilter = n
		case "dropped by kernel":
			c.DroppedByKernel = n
		}
	}
	if found == 0 {
		return c, fmt.Errorf("no \"packets captured\" line in its output: %q", strings.TrimSpace(stderr))
	}
	return c, nil
}
