package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
)

// progress draws up/down progress on stderr: one rewritten line on a
// terminal, a line per phase (and per tenth of a long phase) otherwise, so
// that logs stay readable for a thousand-node lab.
type progress struct {
	w       io.Writer
	tty     bool
	quiet   bool
	phase   string
	printed int // last count printed for the phase (non-tty)
	last    time.Time
	started time.Time
}

func newProgress(quiet bool) *progress {
	return &progress{w: os.Stderr, tty: term.IsTerminal(int(os.Stderr.Fd())), quiet: quiet, started: time.Now()}
}

func (p *progress) update(ev *labv1.Progress) {
	if p.quiet || ev == nil {
		return
	}
	if ev.GetPhase() != p.phase {
		p.end()
		p.phase, p.printed = ev.GetPhase(), 0
	}
	done, total := int(ev.GetDone()), int(ev.GetTotal())
	if p.tty {
		if time.Since(p.last) < 50*time.Millisecond && done < total {
			return
		}
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r\033[K%-10s %s %d/%d  %s", ev.GetPhase(), bar(done, total), done, total, ev.GetObject())
		return
	}
	if done == total || total >= 20 && done-p.printed >= total/10 {
		p.printed = done
		fmt.Fprintf(p.w, "%s: %d/%d (%s)\n", ev.GetPhase(), done, total, ev.GetObject())
	}
}

// line prints a message of its own, below the progress line.
func (p *progress) line(format string, args ...any) {
	if p.quiet {
		return
	}
	p.end()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// end finishes the progress line on a terminal.
func (p *progress) end() {
	if p.tty && p.phase != "" {
		fmt.Fprintln(p.w)
	}
	p.phase = ""
}

func bar(done, total int) string {
	const width = 20
	if total <= 0 {
		return ""
	}
	n := done * width / total
	b := make([]byte, width)
	for i := range b {
		b[i] = '.'
		if i < n {
			b[i] = '#'
		}
	}
	return "[" + string(b) + "]"
}
