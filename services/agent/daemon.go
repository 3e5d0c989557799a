package agent

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/netns"
	"github.com/labctl/labctl/traces"
)

// Daemon is the life of an agent process inside a node: mount the node's
// sysfs, listen, restore what a killed predecessor left, serve until
// SIGTERM, then give running roles a moment to restore what they changed.
type Daemon struct {
	Lab, Node string
	Version   string
	Registry  *experiments.Registry
	// Socket is the Unix socket to listen on, PidFile where the pid goes.
	Socket, PidFile string
	// SettingsDir holds the journals of the settings roles change
	// (default: settings/NODE beside the socket).
	SettingsDir string
	// HostFD and Ready are the descriptors inherited from labs.Host, which
	// starts agents (labs.AgentHostNetnsFD, labs.AgentReadyFD), or -1.
	HostFD, Ready int
	// Traces are the agent's trace settings; the daemon adds the lab and
	// node and, with HostFD, dials the collector from the host's namespace.
	Traces traces.Options
	// ServerOptions are added to the gRPC server (tracing).
	ServerOptions []grpc.ServerOption
}

// Run runs the agent until SIGTERM or SIGINT.
func (d Daemon) Run(ctx context.Context) error {
	logger := log.New(os.Stderr, fmt.Sprintf("agent %s/%s: ", d.Lab, d.Node), log.LstdFlags|log.Lmicroseconds)
	// Started by netns.Spawner in a mount namespace of its own: mount a
	// sysfs that shows this node's interfaces.
	if err := netns.MountSysfs(); err != nil {
		logger.Printf("warning: %v (/sys shows another namespace's interfaces)", err)
	}
	os.Remove(d.Socket)
	// The socket is created 0600 from the start: a umask around bind
	// leaves no window in which another user could connect.
	old := syscall.Umask(0o177)
	lis, err := net.Listen("unix", d.Socket)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("agent %s/%s: %w", d.Lab, d.Node, err)
	}
	if err := os.WriteFile(d.PidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("agent %s/%s: pid file: %w", d.Lab, d.Node, err)
	}
	defer os.Remove(d.PidFile)
	if d.SettingsDir == "" {
		d.SettingsDir = filepath.Join(filepath.Dir(d.Socket), "settings", d.Node)
	}
	svc := &Server{Lab: d.Lab, Node: d.Node, Version: d.Version, Registry: d.Registry, SettingsDir: d.SettingsDir}
	if d.HostFD >= 0 {
		svc.Host = func(fn func() error) error { return netns.DoFD("host", d.HostFD, fn) }
	}
	// Settings a previous agent of this node changed and could not put
	// back (it was killed) are restored before anything runs.
	if restored, err := svc.RestoreSettings(); len(restored) > 0 || err != nil {
		logger.Printf("restored settings left by a previous agent: %v (errors: %v)", restored, err)
	}
	topts := d.Traces
	topts.Service, topts.Version, topts.Instance = "labctl-agent", d.Version, d.Lab+"/"+d.Node
	topts.Attributes = append(topts.Attributes, traces.KeyLab.String(d.Lab), traces.KeyNode.String(d.Node))
	if d.HostFD >= 0 {
		// The collector listens in the host's namespace, not this node's.
		topts.Dial = traces.DialInNamespace(d.HostFD)
	}
	tp, err := traces.Setup(ctx, topts)
	if err != nil {
		return fmt.Errorf("agent %s/%s: %w", d.Lab, d.Node, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), traces.ShutdownTimeout+time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}()
	svc.FlushSpans = tp.FlushLocal
	srv := NewGRPCServer(svc, d.ServerOptions...)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		logger.Print("stopping")
		// Running roles get their context cancelled by Stop; give them a
		// moment to restore what they changed.
		t := time.AfterFunc(2*time.Second, srv.Stop)
		srv.GracefulStop()
		t.Stop()
	}()
	logger.Printf("serving on %s (pid %d, version %s)", d.Socket, os.Getpid(), d.Version)
	if d.Ready >= 0 {
		// Listening, with health SERVING: connections queue until Serve
		// accepts them, so up can return now.
		ready := os.NewFile(uintptr(d.Ready), "ready")
		_, _ = ready.Write([]byte{1})
		ready.Close()
	}
	return srv.Serve(lis)
}
