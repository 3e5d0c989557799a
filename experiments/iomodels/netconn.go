package iomodels

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/role"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// serveNetConn is the netconn model: the one place labctl uses package net
// on a data path, because Go's netpoller is what it measures. A Read that
// finds no data parks the goroutine and the runtime's epoll wakes it; the
// goroutine is not locked to a thread (locking would make every wakeup a
// hand-off between threads, which is not how Go servers run), so CPU time
// and context switches are the whole process's (RUSAGE_SELF), and its
// system calls are counted only by the perf counters, runtime included.
func serveNetConn(ctx context.Context, env *experiments.Env, cfg serverConfig) (*experimentv1.RoleReport, error) {
	r := env.Report()
	r.Notes = append(r.Notes, "netconn: CPU time and context switches are the whole agent process's (getrusage RUSAGE_SELF), since the goroutine moves between threads")
	if cfg.CPU >= 0 {
		r.Notes = append(r.Notes, "netconn: server_cpu is not applied: goroutines are not pinned")
	}
	report.AddEvidence(r, "supported", 1, "", string(netConn), "the server served this model")
	m := &meter{process: true}
	if cfg.CountSyscalls {
		sys, err := openProcessSyscalls()
		if err != nil {
			r.Notes = append(r.Notes, "system calls not counted: "+err.Error())
		} else {
			defer sys.Close()
			m.sys = sys
		}
	}
	addr := env.Address().AsSlice()
	req, resp := make([]byte, cfg.Size), make([]byte, cfg.Size)
	var err error
	if cfg.Proto == protoUDP {
		err = netConnUDP(ctx, env, &net.UDPAddr{IP: addr}, req, resp, m)
	} else {
		err = netConnTCP(ctx, env, &net.TCPAddr{IP: addr}, req, resp, m)
	}
	if err != nil {
		return nil, role.CtxErr(ctx, fmt.Errorf("io-models server (netconn): %w", err))
	}
	m.report(r)
	if m.sys != nil {
		// The loop makes no system call of its own that it could count:
		// the process's count is the model's.
		r.Metrics["syscalls_per_msg"] = r.Metrics["process_syscalls_per_msg"]
	}
	return finish(ctx, r, env.Node, -1)
}

func netConnTCP(ctx context.Context, env *experiments.Env, addr *net.TCPAddr, req, resp []byte, m *meter) error {
	ln, err := net.ListenTCP("tcp", addr)
	if err != nil {
		return err
	}
	stopLn := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopLn()
	env.Ready(ln.Addr().(*net.TCPAddr).Port)
	conn, err := ln.AcceptTCP()
	ln.Close()
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// Go sets TCP_NODELAY on every TCP connection by default.
	for {
		if _, err := io.ReadFull(conn, req); err != nil {
			return err
		}
		copy(resp, req)
		done := m.message(req[0])
		if _, err := conn.Write(resp); err != nil || done {
			return err
		}
	}
}

func netConnUDP(ctx context.Context, env *experiments.Env, addr *net.UDPAddr, req, resp []byte, m *meter) error {
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	env.Ready(conn.LocalAddr().(*net.UDPAddr).Port)
	for {
		n, peer, err := conn.ReadFromUDPAddrPort(req)
		if err != nil {
			return err
		}
		if n != len(req) {
			return fmt.Errorf("datagram of %d bytes from %v, expected %d", n, peer, len(req))
		}
		copy(resp, req)
		done := m.message(req[0])
		if _, err := conn.WriteToUDPAddrPort(resp, peer); err != nil || done {
			return err
		}
	}
}
