// Package labtest is what tests that make labs share: names that say which
// test process made an object, and the sweep that removes what a test
// process that died (a timeout, a panic, a kill) left behind, so that the
// next test run starts clean.
//
// A test lab is named t<pid>x<n>, after the test process that makes it.
// What a test makes outside a lab (a helper namespace, a host interface
// standing in for a NIC) is named after the lab and carries Marker, its
// process's, as its ifalias (a namespace on its lo). Sweep removes what
// belongs to processes that are gone, and only that: the tests of other
// packages running at the same time are alive.
package labtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/internal/settings"
	"github.com/labctl/labctl/topologies"
)

var seq atomic.Int32

// Lab returns a lab name that no other test, of this process or another,
// uses: t<pid>x<n>.
func Lab() string { return fmt.Sprintf("t%dx%d", os.Getpid(), seq.Add(1)) }

// Marker is the ifalias of what a test makes outside a lab: labctl-test:<pid>.
func Marker() string { return markerPrefix + strconv.Itoa(os.Getpid()) }

const markerPrefix = "labctl-test:"

var labName = regexp.MustCompile(`^t([0-9]+)x[0-9]+$`)

// owner returns the pid a test lab name or marker carries.
func owner(s string) (int, bool) {
	if m := labName.FindStringSubmatch(s); m != nil {
		pid, err := strconv.Atoi(m[1])
		return pid, err == nil
	}
	if rest, ok := strings.CutPrefix(s, markerPrefix); ok {
		pid, err := strconv.Atoi(rest)
		return pid, err == nil
	}
	return 0, false
}

// gone reports whether no process has pid.
func gone(pid int) bool {
	return pid > 0 && errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

// Sweep removes what test processes that are gone left behind, in order:
// their labs (with destroy, the caller's way to take a lab down, which
// also sends moved host interfaces home and stops the processes in the
// lab), then host interfaces and named namespaces carrying their marker,
// then the changes of host settings whose holder is gone. It returns what
// it removed.
func Sweep(destroy func(lab string) error) ([]string, error) {
	var swept []string
	var errs []error
	entries, _ := os.ReadDir("/run/netns")
	labs := map[string]bool{}
	for _, e := range entries {
		if lab, _, ok := topologies.ParseNamespace(e.Name()); ok {
			if pid, ok := owner(lab); ok && gone(pid) {
				labs[lab] = true
			}
		}
	}
	names := make([]string, 0, len(labs))
	for l := range labs {
		names = append(names, l)
	}
	sort.Strings(names)
	for _, l := range names {
		if err := destroy(l); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", l, err))
			continue
		}
		swept = append(swept, "lab "+l)
	}
	if links, err := netlink.LinkList(); err == nil {
		for _, lk := range links {
			if pid, ok := owner(lk.Attrs().Alias); ok && gone(pid) {
				if err := netlink.LinkDel(lk); err != nil {
					if !errors.Is(err, unix.ENODEV) { // the peer of one deleted before
						errs = append(errs, fmt.Errorf("host interface %s: %w", lk.Attrs().Name, err))
					}
					continue
				}
				swept = append(swept, "host interface "+lk.Attrs().Name)
			}
		}
	}
	entries, _ = os.ReadDir("/run/netns")
	for _, e := range entries {
		out, err := exec.Command("ip", "-n", e.Name(), "-o", "link", "show", "lo").Output()
		if err != nil {
			continue
		}
		f := strings.Fields(string(out))
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "alias" {
				if pid, ok := owner(f[i+1]); ok && gone(pid) {
					if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
						errs = append(errs, fmt.Errorf("namespace %s: %v: %s", e.Name(), err, out))
					} else {
						swept = append(swept, "namespace "+e.Name())
					}
				}
			}
		}
	}
	restored, err := settings.SweepLeases(settings.DefaultLeaseDir, nil)
	for _, r := range restored {
		swept = append(swept, "host setting "+r)
	}
	return swept, errors.Join(append(errs, err)...)
}

// Mark gives a test's helper namespace (made with ip netns add) the
// test's marker, on its lo.
func Mark(ns string) error {
	out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "alias", Marker()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mark namespace %s: %v: %s", ns, err, out)
	}
	return nil
}

// Veth makes a veth pair name-peer in the calling thread's namespace, both
// ends carrying the test's marker (the kernel ignores an alias given when a
// device is made, so it is set after).
func Veth(name, peer string) error {
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}, PeerName: peer, PeerTxQLen: -1}); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	for _, n := range []string{name, peer} {
		lk, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetAlias(lk, Marker())
		}
		if err != nil {
			return fmt.Errorf("veth %s: mark %s: %w", name, n, err)
		}
	}
	return nil
}
