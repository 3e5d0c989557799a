// Package sysctl maps sysctl keys to their files under /proc/sys and reads
// and writes them. It is the one place that knows how a key is spelt:
// topologies validate keys with it, netns writes a node's sysctls with it,
// experiments change and restore settings with it, and results record the
// host's with it.
//
// A key is read as sysctl(8) reads it: dots separate levels, and a slash
// stands for a dot inside a level, since interface names may contain dots
// (net.ipv4.conf.eth0/100.rp_filter is the file
// /proc/sys/net/ipv4/conf/eth0.100/rp_filter). A level that is empty, "."
// or ".." is refused, so that no key can name a file outside /proc/sys.
//
// Files under /proc/sys/net belong to the network namespace of the thread
// that opens them, not to the process's: callers that write a node's
// settings do it from a thread switched into the node.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Root is where sysctl files live.
const Root = "/proc/sys"

// ErrKey says a key cannot name a sysctl.
var ErrKey = errors.New("not a valid sysctl key")

// Path returns the file of key under Root.
func Path(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("sysctl %q: %w: it is empty", key, ErrKey)
	}
	levels := strings.Split(key, ".")
	for i, l := range levels {
		l = strings.ReplaceAll(l, "/", ".")
		switch {
		case l == "":
			return "", fmt.Errorf("sysctl %q: %w: level %d is empty", key, ErrKey, i+1)
		case l == "." || l == "..":
			return "", fmt.Errorf("sysctl %q: %w: level %d is %q", key, ErrKey, i+1, l)
		case strings.ContainsAny(l, "\x00 \t\n"):
			return "", fmt.Errorf("sysctl %q: %w: level %d holds a space or a control character", key, ErrKey, i+1)
		}
		levels[i] = l
	}
	return Root + "/" + strings.Join(levels, "/"), nil
}

// Read returns the value of key in the calling thread's namespace, its
// whitespace normalised to single spaces (the kernel separates the values
// of net.ipv4.tcp_rmem with tabs).
func Read(key string) (string, error) {
	p, err := Path(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.Join(strings.Fields(string(b)), " "), nil
}

// Write sets key to value in the calling thread's namespace.
func Write(key, value string) error {
	p, err := Path(key)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sysctl %s = %q: %w", key, value, err)
	}
	return nil
}
