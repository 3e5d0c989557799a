package traces

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// DialInNamespace returns a dialer whose TCP sockets are created in the
// network namespace of nsFD (an open /proc/<pid>/ns/net or bind mount).
// Agents run inside node namespaces, where localhost is the node's own
// loopback; the collector listens on the host's, so an agent is given an
// fd of the host's namespace and exports through this dialer (Options.Dial).
//
// A socket belongs to the namespace of the thread that created it, for
// life. Each attempt runs on a fresh goroutine locked to its OS thread,
// which switches into nsFD, dials, and switches back to the namespace the
// thread was in before (opened per dial, so the dialer is right whichever
// namespace the calling process lives in). If switching back fails the
// goroutine exits still locked, and the Go runtime then ends the thread
// rather than reuse it in the wrong namespace.
//
// Names are resolved first, in the caller's namespace (for localhost that is
// /etc/hosts, which agents share with the host), and each address is dialed
// as a literal: net.Dialer creates the socket on the calling thread only for
// a single literal address. For a name with IPv4 and IPv6 addresses it races
// them on new goroutines (Happy Eyeballs, net/dial.go dialParallel in Go
// 1.26), whose threads are not in nsFD.
func DialInNamespace(nsFD int) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s in namespace fd %d: %w", addr, nsFD, err)
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("dial %s in namespace fd %d: port: %w", addr, nsFD, err)
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("dial %s in namespace fd %d: %w", addr, nsFD, err)
		}
		var errs []error
		for _, ip := range ips {
			conn, err := dialInNamespace(ctx, nsFD, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, fmt.Errorf("dial %s in namespace fd %d: %w", addr, nsFD, errors.Join(errs...))
	}
}

func dialInNamespace(ctx context.Context, nsFD int, ap netip.AddrPort) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := dialOnLockedThread(ctx, nsFD, ap)
		done <- result{conn, err}
	}()
	r := <-done // the dial itself honours ctx
	return r.conn, r.err
}

// dialOnLockedThread must run on a goroutine of its own: on a failed switch
// back it leaves that goroutine locked to a thread in the wrong namespace.
func dialOnLockedThread(ctx context.Context, nsFD int, ap netip.AddrPort) (net.Conn, error) {
	runtime.LockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own network namespace /proc/thread-self/ns/net: %w", err)
	}
	defer unix.Close(own)
	if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns to namespace fd %d: %w", nsFD, err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, "tcp", ap.String())
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("setns back to own namespace after dialing %s: %w (thread left locked)", ap, err)
	}
	runtime.UnlockOSThread()
	if dialErr != nil {
		return nil, dialErr
	}
	return conn, nil
}
