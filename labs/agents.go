package labs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/labctl/labctl/internal/settings"
	"github.com/labctl/labctl/netns"
	agentv1 "github.com/labctl/labctl/proto/labctl/agent/v1"
	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/traces"
)

var tracer = otel.Tracer("github.com/labctl/labctl/labs")

// Each agent is the labctl binary itself (`labctl agent`), started inside
// its node's namespace as a daemon of its own session, so that it outlives
// the CLI that started it and a Ctrl-C in the user's terminal does not
// reach it.

// AgentSocket is the Unix socket of a node's agent.
func (h *Host) AgentSocket(lab, node string) string {
	return filepath.Join(h.LabRunDir(lab), node+".sock")
}

// SettingsDir holds the journals of the settings a node's roles change.
func (h *Host) SettingsDir(lab, node string) string {
	return filepath.Join(h.LabRunDir(lab), "settings", node)
}

func (h *Host) agentFile(lab, node, ext string) string {
	return filepath.Join(h.LabRunDir(lab), node+"."+ext)
}

// The descriptors an agent inherits (services/agent.Daemon reads them
// from its flags): the host's network namespace, to reach what exists only
// there (the global sysctls, the trace collector), and the write end of a
// pipe on which the agent says it is serving.
const (
	AgentHostNetnsFD = 3
	AgentReadyFD     = 4
)

// agentStartTimeout bounds how long up waits for a new agent to serve.
const agentStartTimeout = 10 * time.Second

// ensureAgents starts an agent in every node that asks for one and has
// none serving (new nodes, recreated nodes, agents that died or run another
// version), and waits until all of them serve.
func (h *Host) ensureAgents(ctx context.Context, plan *topologies.Plan, progress func(Progress)) ([]string, error) {
	if err := os.MkdirAll(h.LabRunDir(plan.Lab), 0o755); err != nil {
		return nil, fmt.Errorf("lab %s: %w", plan.Lab, err)
	}
	var want []topologies.Node
	for _, n := range plan.Nodes {
		if n.Agent {
			want = append(want, n)
		}
	}
	ctx, span := tracer.Start(ctx, "agents", trace.WithAttributes(traces.KeyLab.String(plan.Lab), attribute.Int("labctl.agents", len(want))))
	defer span.End()
	var mu sync.Mutex
	var started []string
	done := 0
	// The spawner, which prepares the agents' mount namespace, is made
	// when the first agent needs starting: an up that changes nothing
	// starts none.
	var (
		spawnOnce sync.Once
		sp        *netns.Spawner
		spErr     error
	)
	spawner := func() (*netns.Spawner, error) {
		spawnOnce.Do(func() { sp, spErr = netns.NewSpawner(runtime.NumCPU()) })
		return sp, spErr
	}
	defer func() {
		if sp != nil { // read after the group has ended
			sp.Close()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * runtime.NumCPU()) // starting an agent is mostly its exec and Go start-up: CPU
	for _, n := range want {
		g.Go(func() error {
			st := h.AgentStatus(gctx, plan.Lab, n.Name)
			if st.Health == "SERVING" && st.Version == h.Version {
				return nil
			}
			if st.Pid > 0 {
				stopProcess(st.Pid) // another version, or wedged
			}
			spawn, err := spawner()
			if err != nil {
				return fmt.Errorf("lab %s: agents: %w", plan.Lab, err)
			}
			if err := h.startAgent(gctx, spawn, plan.Lab, n); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			started = append(started, n.Name)
			done++
			if progress != nil {
				progress(Progress{Phase: "agents", Done: done, Total: len(want), Object: "agent " + n.Name})
			}
			return nil
		})
	}
	err := g.Wait()
	return started, err
}

func (h *Host) startAgent(ctx context.Context, sp *netns.Spawner, lab string, n topologies.Node) (err error) {
	_, span := tracer.Start(ctx, "agent.start", trace.WithAttributes(traces.KeyNode.String(n.Name)))
	defer func() {
		traces.Fail(span, err)
		span.End()
	}()
	if h.Binary == "" {
		return fmt.Errorf("node %s: no labctl binary to start an agent from", n.Name)
	}
	sock := h.AgentSocket(lab, n.Name)
	pidFile := h.agentFile(lab, n.Name, "pid")
	os.Remove(sock)
	os.Remove(pidFile)
	log, err := os.OpenFile(h.agentFile(lab, n.Name, "log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: agent log: %w", n.Name, err)
	}
	defer log.Close()
	// The agent inherits the host's network namespace and the write end of
	// a pipe on which it says it is ready.
	hostNS, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("node %s: host namespace: %w", n.Name, err)
	}
	defer hostNS.Close()
	ready, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer ready.Close()
	if err := os.MkdirAll(h.SettingsDir(lab, n.Name), 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	args := []string{"agent", "--lab", lab, "--node", n.Name, "--socket", sock, "--pid-file", pidFile, "--settings-dir", h.SettingsDir(lab, n.Name),
		"--host-netns-fd", strconv.Itoa(AgentHostNetnsFD), "--ready-fd", strconv.Itoa(AgentReadyFD), "--otlp-endpoint", h.OTLPEndpoint}
	if h.TraceDir != "" {
		args = append(args, "--trace-dir", h.TraceDir)
	}
	cmd := exec.Command(h.Binary, args...)
	// ExtraFiles[i] is descriptor 3+i in the child.
	extra := make([]*os.File, max(AgentHostNetnsFD, AgentReadyFD)-2)
	extra[AgentHostNetnsFD-3], extra[AgentReadyFD-3] = hostNS, readyW
	cmd.ExtraFiles = extra
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = sp.Start(n.Namespace, cmd)
	readyW.Close() // the agent holds the only write end now
	if err != nil {
		return fmt.Errorf("node %s: start agent: %w", n.Name, err)
	}
	// Reap it if it dies, so that a crash shows as an exit status instead
	// of a zombie that still looks alive.
	go func() { _ = cmd.Wait() }()
	// The agent writes one byte once it listens and serves health; EOF
	// means it exited first.
	_ = ready.SetReadDeadline(time.Now().Add(agentStartTimeout))
	stop := context.AfterFunc(ctx, func() { _ = ready.SetReadDeadline(time.Now()) })
	defer stop()
	var b [1]byte
	if _, err := ready.Read(b[:]); err != nil {
		stopProcess(cmd.Process.Pid)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		what := "exited at start"
		if errors.Is(err, os.ErrDeadlineExceeded) {
			what = fmt.Sprintf("not ready after %v", agentStartTimeout)
		}
		return fmt.Errorf("node %s: agent %s; its log: %s", n.Name, what, tail(h.agentFile(lab, n.Name, "log")))
	}
	return nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(none)"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

// stopAgents stops the agents of a lab (by pid file; down then also kills
// whatever still runs in the lab's namespaces).
func (h *Host) stopAgents(lab string, plan *topologies.Plan) []string {
	var stopped []string
	entries, _ := os.ReadDir(h.LabRunDir(lab))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, e := range entries {
		node, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		pid := readPid(h.agentFile(lab, node, "pid"))
		if pid <= 0 || !isAgent(pid, lab, node) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopProcess(pid)
			mu.Lock()
			stopped = append(stopped, node)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return stopped
}

// restoreSettings undoes the settings changes that agents of the lab left
// behind when they were killed, each in its node's namespace (a sysctl
// under /proc/sys/net belongs to the namespace of the thread that writes
// it). Global settings, such as net.core.busy_read, would otherwise stay
// changed on the host after the lab is gone.
func (h *Host) restoreSettings(lab string, plan *topologies.Plan) error {
	if plan == nil {
		return nil
	}
	var errs []error
	for _, n := range plan.Nodes {
		pattern := filepath.Join(h.SettingsDir(lab, n.Name), "*.settings.jsonl")
		if m, _ := filepath.Glob(pattern); len(m) == 0 || !netns.Exists(n.Namespace) {
			continue
		}
		// Node settings are restored in the node's namespace; host settings
		// (global sysctls) here, where labctl runs.
		err := netns.Do(n.Namespace, func() error {
			_, err := settings.RestoreAll(pattern, settings.Options{Host: hostScope}, notSysfs)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: restore settings: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// notSysfs leaves out device attributes under /sys: the agent wrote them
// in its own sysfs, which shows the node's interfaces, while /sys here shows
// the host's, where an interface of the same name is another device. The
// node's interfaces go away with its namespace anyway.
func notSysfs(r settings.Record) bool { return !strings.HasPrefix(r.File, "/sys/") }

// hostScope runs a function in labctl's own namespace, the host's: from
// inside netns.Do that means on another goroutine, whose thread is not
// switched.
func hostScope(fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- fn() }()
	return <-errc
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// isAgent checks that pid is the agent of lab's node, so that a stale pid
// file whose pid was reused never gets another process killed.
func isAgent(pid int, lab, node string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	var gotLab, gotNode string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--lab":
			gotLab = args[i+1]
		case "--node":
			gotNode = args[i+1]
		}
	}
	return len(args) > 1 && args[1] == "agent" && gotLab == lab && gotNode == node
}

// stopProcess sends SIGTERM, waits up to two seconds, then SIGKILL.
func stopProcess(pid int) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	if p.Signal(syscall.SIGTERM) != nil {
		return
	}
	for range 100 {
		if p.Signal(syscall.Signal(0)) != nil || isZombie(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = p.Signal(syscall.SIGKILL)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

// AgentState is the health of one node's agent.
type AgentState struct {
	Wanted  bool   // the plan asks for an agent in the node
	Health  string // SERVING, NOT_SERVING, or UNREACHABLE
	Version string
	Pid     int
	Socket  string
	Err     string
}

// healthTimeout bounds each health check, so that status on a lab with a
// dead agent answers quickly.
const healthTimeout = time.Second

// AgentStatus asks a node's agent for its health and version.
func (h *Host) AgentStatus(ctx context.Context, lab, node string) AgentState {
	st := AgentState{Socket: h.AgentSocket(lab, node), Health: "UNREACHABLE"}
	if _, err := os.Stat(st.Socket); err != nil {
		st.Err = "no agent socket (not started, or stopped)"
		return st
	}
	cc, err := dialAgent(st.Socket)
	if err != nil {
		st.Err = err.Error()
		return st
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		st.Err = err.Error()
		return st
	}
	st.Health = resp.GetStatus().String()
	info, err := agentv1.NewAgentServiceClient(cc).GetInfo(ctx, &agentv1.GetInfoRequest{})
	if err == nil {
		st.Version, st.Pid = info.GetVersion(), int(info.GetPid())
	}
	return st
}

func dialAgent(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Agents reaches the agents of one lab; Close releases the connections.
type Agents struct {
	h   *Host
	lab string
	mu  sync.Mutex
	cc  map[string]*grpc.ClientConn
	// Options are added to every connection (tracing handlers).
	Options []grpc.DialOption
}

// Agents returns a dialer for the lab's agents.
func (h *Host) Agents(lab string, opts ...grpc.DialOption) *Agents {
	return &Agents{h: h, lab: lab, cc: map[string]*grpc.ClientConn{}, Options: opts}
}

// Agent returns a client of node's agent.
func (a *Agents) Agent(node string) (agentv1.AgentServiceClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cc, ok := a.cc[node]; ok {
		return agentv1.NewAgentServiceClient(cc), nil
	}
	sock := a.h.AgentSocket(a.lab, node)
	if _, err := os.Stat(sock); err != nil {
		return nil, fmt.Errorf("no agent socket %s: %w", sock, errors.Unwrap(err))
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, a.Options...)
	cc, err := grpc.NewClient("unix://"+sock, opts...)
	if err != nil {
		return nil, err
	}
	a.cc[node] = cc
	return agentv1.NewAgentServiceClient(cc), nil
}

// Close closes every connection.
func (a *Agents) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cc := range a.cc {
		cc.Close()
	}
	a.cc = map[string]*grpc.ClientConn{}
}
