// Package cni runs the plugins of a lab's cni links through libcni: ADD
// when up attaches an endpoint, DEL when down (or a rollback) detaches it,
// VERSION to check a list before anything is made.
//
// Three things differ from how a container runtime calls libcni, and all
// keep a lab's plugins inside the lab:
//
//   - Each plugin process is forked from a thread switched into the link's
//     host node's namespace, so what a plugin makes in "the host" (a bridge,
//     host-side veths, ifb devices, iptables rules, ip_forward) is made in
//     that node.
//   - libcni's cache, host-local's reservations and tuning's backups live
//     under the lab's state directory (Runner.Dir), never in /var/lib/cni or
//     /run/cni, and go with the lab.
//   - DEL is best effort across the list: libcni stops at the first plugin
//     whose DEL fails, which would leave every plugin before it in place
//     (a bandwidth config that failed ADD fails DEL the same way and would
//     keep bridge's veth). Here each plugin's DEL runs, and the errors are
//     reported together.
package cni

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/topologies"
	"github.com/labctl/labctl/traces"
)

var tracer = otel.Tracer("github.com/labctl/labctl/netns/cni")

// Runner runs the plugins of one lab's attachments.
type Runner struct {
	// Path lists the directories plugins are looked up in, in order.
	Path []string
	// Dir is the lab's CNI state: libcni's cache in Dir/cache, host-local's
	// reservations in Dir/ipam, tuning's backups in Dir/tuning.
	Dir string
	// NSDir is where named namespaces are (netns.RunDir).
	NSDir string
}

// Result is what an ADD made, as the plugins reported it.
type Result = topologies.CNIResult

// config is libcni set up for one call: which exec, which cache.
func (r *Runner) config(host string, bestEffortDel bool) (*libcni.CNIConfig, *nsExec) {
	e := &nsExec{ns: filepath.Join(r.NSDir, host), bestEffortDel: bestEffortDel}
	return libcni.NewCNIConfigWithCacheDir(r.Path, filepath.Join(r.Dir, "cache"), e), e
}

// list is the attachment's list as the plugins get it: with the state
// directories of host-local and tuning moved into the lab's.
func (r *Runner) list(a *topologies.Attachment) (*libcni.NetworkConfigList, error) {
	var v map[string]any
	if err := json.Unmarshal(a.Config, &v); err != nil {
		return nil, fmt.Errorf("cni %s: config: %w", a.ID, err)
	}
	plugins, _ := v["plugins"].([]any)
	for _, p := range plugins {
		m, _ := p.(map[string]any)
		if m == nil {
			continue
		}
		if m["type"] == "tuning" {
			m["dataDir"] = filepath.Join(r.Dir, "tuning")
		}
		if ipam, ok := m["ipam"].(map[string]any); ok && ipam["type"] == "host-local" {
			ipam["dataDir"] = filepath.Join(r.Dir, "ipam")
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cni %s: config: %w", a.ID, err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("cni %s: %w", a.ID, err)
	}
	return l, nil
}

// runtimeConf is what libcni passes to each plugin besides the config.
func (r *Runner) runtimeConf(a *topologies.Attachment) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: a.ContainerID,
		NetNS:       filepath.Join(r.NSDir, a.Namespace),
		IfName:      a.Interface,
		Args:        a.Args,
	}
	if len(a.RuntimeConfig) > 0 {
		if err := json.Unmarshal(a.RuntimeConfig, &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("cni %s: runtime config: %w", a.ID, err)
		}
	}
	return rt, nil
}

// Add runs the list's ADD for a. If a plugin fails, what the plugins
// before it made is taken away again (DEL of the whole list, best effort)
// and the error names the plugin and says what it said.
func (r *Runner) Add(ctx context.Context, a *topologies.Attachment) (_ *Result, err error) {
	ctx, span := tracer.Start(ctx, "cni.add", trace.WithAttributes(attrs(a)...))
	defer func() { traces.Fail(span, err); span.End() }()
	if err := r.mkdirs(); err != nil {
		return nil, err
	}
	list, err := r.list(a)
	if err != nil {
		return nil, err
	}
	rt, err := r.runtimeConf(a)
	if err != nil {
		return nil, err
	}
	cfg, _ := r.config(a.HostNamespace, false)
	res, err := cfg.AddNetworkList(ctx, list, rt)
	if err != nil {
		err = fmt.Errorf("cni %s: %w", a, err)
		if derr := r.del(context.WithoutCancel(ctx), a, list, rt); derr != nil {
			return nil, errors.Join(err, fmt.Errorf("cni %s: undo: %w", a, derr))
		}
		return nil, err
	}
	out, err := convert(res)
	if err != nil {
		return nil, fmt.Errorf("cni %s: result: %w", a, err)
	}
	// The list's plugins and the IPAM plugins they delegate to, found in
	// the plugin path as libcni and the delegating plugin found them.
	out.Plugins = r.Plugins([]topologies.Attachment{*a})
	return out, nil
}

// Del runs the list's DEL for a, from libcni's cache of the ADD when there
// is one (so it works after the file changed), else from a itself (an ADD
// that labctl was killed in has no cache entry). It is best effort: every
// plugin's DEL runs, and their errors are returned together. If the host
// node's namespace is gone, so is everything the plugins made but their
// state files, which live in Dir and go with it.
func (r *Runner) Del(ctx context.Context, a *topologies.Attachment) (err error) {
	ctx, span := tracer.Start(ctx, "cni.del", trace.WithAttributes(attrs(a)...))
	defer func() { traces.Fail(span, err); span.End() }()
	if _, err := os.Stat(filepath.Join(r.NSDir, a.HostNamespace)); errors.Is(err, os.ErrNotExist) {
		span.SetAttributes(attribute.String("labctl.cni.skipped", "host namespace gone"))
		return nil
	}
	rt, err := r.runtimeConf(a)
	if err != nil {
		return err
	}
	cfg, _ := r.config(a.HostNamespace, true)
	list, err := r.list(a)
	if err != nil {
		return err
	}
	cached, crt, cerr := cfg.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: a.Network}, rt)
	if cerr == nil && cached != nil {
		if l, err := libcni.ConfListFromBytes(cached); err == nil {
			list, rt = l, crt
		}
	}
	return r.del(ctx, a, list, rt)
}

// del runs DEL with every plugin's error collected.
func (r *Runner) del(ctx context.Context, a *topologies.Attachment, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	cfg, e := r.config(a.HostNamespace, true)
	err := cfg.DelNetworkList(ctx, list, rt)
	return errors.Join(append(e.errs, err)...)
}

func (r *Runner) mkdirs() error {
	for _, d := range []string{"cache", "ipam", "tuning"} {
		if err := os.MkdirAll(filepath.Join(r.Dir, d), 0o700); err != nil {
			return fmt.Errorf("cni state: %w", err)
		}
	}
	return nil
}

func attrs(a *topologies.Attachment) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("labctl.cni.network", a.Network),
		attribute.String("labctl.cni.host", a.Host),
		attribute.String("labctl.node", a.Node),
		attribute.String("labctl.cni.ifname", a.Interface),
	}
}

// convert turns a plugin's result, of whatever version, into ours.
func convert(res types.Result) (*Result, error) {
	if res == nil {
		return &Result{}, nil
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	out := &Result{}
	for _, i := range cur.Interfaces {
		out.Interfaces = append(out.Interfaces, topologies.CNIInterface{Name: i.Name, MAC: i.Mac, Sandbox: i.Sandbox})
	}
	for _, ip := range cur.IPs {
		x := topologies.CNIIP{Address: ip.Address.String()}
		if ip.Gateway != nil {
			x.Gateway = ip.Gateway.String()
		}
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(cur.Interfaces) {
			x.Interface = cur.Interfaces[*ip.Interface].Name
		}
		out.IPs = append(out.IPs, x)
	}
	for _, rt := range cur.Routes {
		s := rt.Dst.String()
		if rt.GW != nil {
			s += " via " + rt.GW.String()
		}
		out.Routes = append(out.Routes, s)
	}
	return out, nil
}

// nsExec runs plugins in a namespace, one span per call.
type nsExec struct {
	ns            string // the host node's namespace file
	bestEffortDel bool
	mu            sync.Mutex
	errs          []error // DEL errors swallowed in best-effort mode
	version.PluginDecoder
}

// ExecPlugin forks the plugin from a thread switched into the namespace.
// The thread is locked and never unlocked: when the goroutine ends, the
// runtime ends the thread with it, so no other goroutine ever runs in the
// lab's namespace (a thread switched back could fail to switch, and
// Go cannot start a child in another namespace any other way).
func (e *nsExec) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) (out []byte, err error) {
	cmd := envValue(env, "CNI_COMMAND")
	ctx, span := tracer.Start(ctx, "cni.plugin "+strings.ToLower(cmd), trace.WithAttributes(
		attribute.String("labctl.cni.plugin", filepath.Base(path)),
		attribute.String("labctl.cni.command", cmd),
		attribute.String("labctl.cni.ifname", envValue(env, "CNI_IFNAME")),
		attribute.String("labctl.cni.container_id", envValue(env, "CNI_CONTAINERID")),
		attribute.String("labctl.cni.plugin_version", Identify(path).Version),
	))
	defer func() { traces.Fail(span, err); span.End() }()

	type res struct {
		out []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		fd, err := unix.Open(e.ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{nil, fmt.Errorf("namespace %s: %w", e.ns, err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- res{nil, fmt.Errorf("namespace %s: setns: %w", e.ns, err)}
			return
		}
		raw := &invoke.RawExec{Stderr: io.Discard}
		out, err := raw.ExecPlugin(ctx, path, stdin, env)
		ch <- res{out, err}
	}()
	r := <-ch
	if r.err != nil && e.bestEffortDel && cmd == "DEL" {
		e.mu.Lock()
		e.errs = append(e.errs, fmt.Errorf("plugin %s: DEL: %w", filepath.Base(path), r.err))
		e.mu.Unlock()
		traces.Fail(span, r.err)
		return nil, nil // libcni goes on with the next plugin
	}
	return r.out, r.err
}

// FindInPath finds a plugin in the plugin path.
func (e *nsExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func envValue(env []string, key string) string {
	for _, kv := range slices.Backward(env) {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// Plugin identifies a plugin binary.
type Plugin = topologies.CNIPlugin

var identified sync.Map // path -> Plugin

// Identify reads a plugin binary's build info and hashes it (once per
// path and process).
func Identify(path string) Plugin {
	if p, ok := identified.Load(path); ok {
		return p.(Plugin)
	}
	p := Plugin{Type: filepath.Base(path), Path: path}
	if f, err := os.Open(path); err == nil {
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			p.SHA256 = hex.EncodeToString(h.Sum(nil))
		}
		f.Close()
	}
	if bi, err := buildinfo.ReadFile(path); err == nil {
		p.Module, p.Version = bi.Main.Path, bi.Main.Version
	}
	identified.Store(path, p)
	return p
}

// Check checks, before anything is made, that every plugin the
// attachments run is in the plugin path and supports its list's
// cniVersion. It runs each plugin once, with CNI_COMMAND=VERSION (which
// touches nothing), and needs no privilege. Problems point into the file.
func (r *Runner) Check(ctx context.Context, atts []topologies.Attachment) error {
	var errs topologies.ErrorList
	type key struct{ typ, ver string }
	seen := map[key]bool{}
	infos := map[string]version.PluginInfo{}
	for _, a := range atts {
		ver := a.CNIVersion()
		for _, p := range a.Plugins {
			if seen[key{p.Type, ver}] {
				continue
			}
			seen[key{p.Type, ver}] = true
			path, err := invoke.FindInPath(p.Type, r.Path)
			if err != nil {
				errs = append(errs, &topologies.Error{Pos: p.Pos, Field: p.Field, Msg: fmt.Sprintf(
					"no plugin %q in the plugin path %s; build the pinned plugins with scripts/cni.sh, or name a directory with --cni-path or CNI_PATH", p.Type, strings.Join(r.Path, ":"))})
				continue
			}
			info, ok := infos[path]
			if !ok {
				info, err = invoke.GetVersionInfo(ctx, path, &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: io.Discard}, PluginDecoder: version.PluginDecoder{}})
				if err != nil {
					errs = append(errs, &topologies.Error{Pos: p.Pos, Field: p.Field, Msg: fmt.Sprintf("plugin %s: VERSION: %v", path, err)})
					continue
				}
				infos[path] = info
			}
			if !slices.Contains(info.SupportedVersions(), ver) {
				errs = append(errs, &topologies.Error{Pos: a.VersionPos, Field: "cniVersion", Msg: fmt.Sprintf(
					"plugin %s (%s) does not support cniVersion %q; it supports %s", p.Type, path, ver, strings.Join(info.SupportedVersions(), ", "))})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Plugins identifies the plugins the attachments run, in the order they
// first appear.
func (r *Runner) Plugins(atts []topologies.Attachment) []Plugin {
	var out []Plugin
	seen := map[string]bool{}
	for _, a := range atts {
		for _, typ := range a.Types() {
			if seen[typ] {
				continue
			}
			seen[typ] = true
			if path, err := invoke.FindInPath(typ, r.Path); err == nil {
				out = append(out, Identify(path))
			}
		}
	}
	return out
}

// DefaultPath is where plugins are looked for when neither --cni-path nor
// CNI_PATH names a directory: the pinned plugins beside the labctl binary
// (bin/cni, which scripts/cni.sh builds), then where distributions and
// clusters install them.
func DefaultPath() []string {
	if v := os.Getenv("CNI_PATH"); v != "" {
		return filepath.SplitList(v)
	}
	var out []string
	if exe, err := os.Executable(); err == nil {
		out = append(out, filepath.Join(filepath.Dir(exe), "cni"))
	}
	return append(out, "/opt/cni/bin", "/usr/lib/cni")
}
