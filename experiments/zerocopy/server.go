package zerocopy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/kstat"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// serve is the server: it accepts one connection and receives the stream
// through its path until the client closes it. Its measured window starts
// warmup after the first byte, as the client's does after connecting, and
// ends at the end of the stream; per-byte costs do not need the two windows
// to coincide, only to lie in the steady stream.
func serve(ctx context.Context, env *experiments.Env) (*experimentv1.RoleReport, error) {
	p := experiments.As[params](env.Params)
	cpu := p.ServerCPU
	unlock, err := role.LockThread(cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	_, _, path, _ := stepVariant(p)
	page := unix.Getpagesize()
	chunk := (int(p.RecvChunk) + page - 1) / page * page
	fd, done, err := role.AcceptOne(ctx, env, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	r := env.Report()
	rx, err := newReceiver(fd, path, chunk)
	var u *kernel.NotSupportedError
	if errors.As(err, &u) {
		addUnsupported(r, path, u)
	} else if err != nil {
		return nil, err
	}
	defer rx.close()

	before, err := kstat.ReadNetStat()
	if err != nil {
		return nil, fmt.Errorf("zerocopy server: %w", err)
	}
	warmup := p.Warmup
	var first time.Time
	var total int64
	var start struct {
		usage                             measure.Usage
		total, calls, copied, mapped, out int64
	}
	measuring := false
	for {
		n, eof, err := rx.next()
		if err != nil {
			return nil, role.CtxErr(ctx, fmt.Errorf("zerocopy server: %w", err))
		}
		if eof {
			break
		}
		total += int64(n)
		if measuring || n == 0 {
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		if time.Since(first) >= warmup {
			measuring = true
			start.total, start.calls, start.copied, start.mapped, start.out = total, rx.calls, rx.copied, rx.mapped, rx.discarded
			if start.usage, err = measure.ThreadUsage(); err != nil {
				return nil, err
			}
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the end of stream came from our own shutdown
	}
	end, err := measure.ThreadUsage()
	if err != nil {
		return nil, err
	}
	if u != nil {
		return finish(ctx, r, env.Node, cpu, "")
	}
	bytes := total - start.total
	r.Metrics["received_bytes"] = float64(bytes)
	if !measuring || bytes == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("received %d bytes, none after the %v warm-up: nothing to measure", total, warmup))
		return finish(ctx, r, env.Node, cpu, "")
	}
	report.AddUsage(r, end.Sub(start.usage), bytes, "byte")
	r.Metrics["syscalls_per_byte"] = float64(rx.calls-start.calls) / float64(bytes)
	copied, mapped := rx.copied-start.copied, rx.mapped-start.mapped
	switch path {
	case recvTrunc:
		r.Notes = append(r.Notes, "recv with MSG_TRUNC discards the data in the kernel: no copy to the application, a bound on receiving without the copy rather than a way to receive")
		report.AddEvidence(r, "discarded_bytes", float64(rx.discarded-start.out), "bytes", "recv(MSG_TRUNC) return values", "bytes TCP dropped without copying them to the application")
	case tcpzc:
		r.Metrics["mapped_ratio"] = float64(mapped) / float64(mapped+copied)
		report.AddEvidence(r, "mapped_bytes", float64(mapped), "bytes", "getsockopt TCP_ZEROCOPY_RECEIVE length", "bytes mapped into the application without a copy")
		report.AddEvidence(r, "copied_bytes", float64(copied), "bytes", "read of TCP_ZEROCOPY_RECEIVE recv_skip_hint", "bytes the kernel could not map, read (copied) instead")
	}
	d, err := kstat.ReadNetStat()
	if err == nil {
		report.AddEvidence(r, "tcp_retrans_segs", float64(d.Sub(before)["Tcp.RetransSegs"]), "segments",
			"/proc/net/snmp Tcp.RetransSegs delta in the node", "over the whole stream")
	}
	return finish(ctx, r, env.Node, cpu, "")
}
