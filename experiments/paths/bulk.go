package paths

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/measure"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	"github.com/labctl/labctl/internal/sock"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// A bulk stream: the client writes chunks of a fixed size over one TCP
// connection for a fixed time; the server reads until EOF and times the
// stream from its first byte to its last, so that what the client's send
// buffer held at the end is not counted as carried.

// serveBulk accepts one connection on the role's address and reads it to
// the end.
func serveBulk(ctx context.Context, env *experiments.Env, chunk, cpu int) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(cpu)
	if err != nil {
		return nil, err
	}
	defer unlock()
	fd, done, err := role.AcceptOne(ctx, env, nil)
	if err != nil {
		return nil, err
	}
	defer done()
	buf := make([]byte, chunk)
	var (
		total       int64
		first, last time.Time
		start       measure.Usage
	)
	for {
		n, err := sock.Recv(fd, buf, 0)
		if err != nil {
			return nil, role.CtxErr(ctx, fmt.Errorf("bulk server: %w", err))
		}
		if n == 0 {
			break
		}
		last = time.Now()
		if total == 0 {
			first = last
			start, _ = measure.ThreadUsage()
		}
		total += int64(n)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the EOF came from our own shutdown
	}
	end, _ := measure.ThreadUsage()
	r := env.Report()
	r.Metrics["received_bytes"] = float64(total)
	if d := last.Sub(first); total > 0 && d > 0 {
		r.Metrics["throughput_bps"] = float64(total) * 8 / d.Seconds()
		report.AddUsage(r, end.Sub(start), total, "byte")
	}
	r.Environment = report.Node(ctx, env.Node, nil)
	r.Environment.PinnedCpu = int32(cpu)
	return r, nil
}

// bulkOptions are the sender's knobs.
type bulkOptions struct {
	Chunk    int // bytes per write
	Duration time.Duration
	CPU      int
}

// sendBulk connects to peer and writes for o.Duration.
func sendBulk(ctx context.Context, env *experiments.Env, peer netip.AddrPort, o bulkOptions) (*experimentv1.RoleReport, error) {
	unlock, err := role.LockThread(o.CPU)
	if err != nil {
		return nil, err
	}
	defer unlock()
	env.Ready(0)
	fd, err := sock.Connect(sock.TCP, peer)
	if err != nil {
		return nil, fmt.Errorf("bulk client: %w", err)
	}
	defer fd.Close()
	stop := role.ShutdownOnDone(ctx, fd)
	defer stop()
	buf := make([]byte, o.Chunk)
	env.Progressf("writing %d-byte chunks for %v", o.Chunk, o.Duration)
	var total int64
	start, _ := measure.ThreadUsage()
	begin := time.Now()
	for time.Since(begin) < o.Duration {
		n, err := sock.WriteFull(fd, buf)
		total += int64(n)
		if err != nil {
			return nil, role.CtxErr(ctx, fmt.Errorf("bulk client: %w", err))
		}
	}
	elapsed := time.Since(begin)
	end, _ := measure.ThreadUsage()
	// Close the stream and wait for the server's close, so that the step
	// ends only once every byte is read (and counted on the interfaces).
	if err := shutdownWrite(fd); err != nil {
		return nil, role.CtxErr(ctx, err)
	}
	if _, err := sock.Recv(fd, buf[:1], 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, role.CtxErr(ctx, fmt.Errorf("bulk client: waiting for the server's close: %w", err))
	}
	r := env.Report()
	r.Metrics["sent_bytes"] = float64(total)
	r.Metrics["tx_bps"] = float64(total) * 8 / elapsed.Seconds()
	report.AddUsage(r, end.Sub(start), total, "byte")
	r.Environment = report.Node(ctx, env.Node, nil)
	r.Environment.PinnedCpu = int32(o.CPU)
	return r, nil
}
