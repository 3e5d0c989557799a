package traces

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/labctl/labctl/internal/privtest"
	"golang.org/x/sys/unix"
)

// dialChildEnv carries the listener's address to the child process,
// dialHostsEnv the hosts file it mounts.
const (
	dialChildEnv = "LABCTL_TRACES_DIAL_CHILD"
	dialHostsEnv = "LABCTL_TRACES_DIAL_HOSTS"
)

// TestDialInNamespace runs the test binary as a child in a fresh network
// namespace, as agents run in their node's, with an fd of this (the host's)
// namespace as fd 3. From there a plain dial to the host's loopback
// listener must fail and a dial through DialInNamespace(3) must reach it;
// the child checks the rest (see dialChild). The namespace has no name and
// no mount: it goes away with the child, and so does its mount namespace.
func TestDialInNamespace(t *testing.T) {
	privtest.Root(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() { // echo every connection
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	hostNS, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	// A name with an IPv4 and an IPv6 address, for which net.Dialer would
	// race both on goroutines of their own (see DialInNamespace); the child
	// bind-mounts this file over /etc/hosts in its own mount namespace.
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 labctl-dual-stack\n::1 labctl-dual-stack\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), dialChildEnv+"="+lis.Addr().String(), dialHostsEnv+"="+hosts)
	cmd.ExtraFiles = []*os.File{hostNS} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child in a fresh namespace: %v", err)
	}
}

// dialChild is the child's side of TestDialInNamespace; it returns the exit
// status. Every thread of this process is in the fresh namespace.
func dialChild(addr string) int {
	fail := func(format string, args ...any) int {
		fmt.Printf("FAIL: "+format+"\n", args...)
		return 1
	}
	const hostFD = 3
	own, err := nsID("/proc/self/ns/net")
	if err != nil {
		return fail("%v", err)
	}
	host, err := nsIDOfFD(hostFD)
	if err != nil {
		return fail("fd %d: %v", hostFD, err)
	}
	if own == host {
		return fail("the child is in the host's namespace %s", own)
	}
	fmt.Printf("own namespace %s, host namespace %s\n", own, host)
	// Private first, so the bind mount cannot propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make / private: %v", err)
	}
	if err := unix.Mount(os.Getenv(dialHostsEnv), "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
		return fail("bind mount over /etc/hosts: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
		c.Close()
		return fail("a plain dial to %s succeeded from the fresh namespace", addr)
	} else {
		fmt.Printf("plain dial fails as it should: %v\n", err)
	}

	_, port, _ := net.SplitHostPort(addr)
	dial := DialInNamespace(hostFD)
	// A literal address, and a name for 127.0.0.1 and ::1 (nothing listens
	// on the latter).
	for _, target := range []string{addr, net.JoinHostPort("labctl-dual-stack", port)} {
		c, err := dial(ctx, target)
		if err != nil {
			return fail("DialInNamespace(%d)(%s): %v", hostFD, target, err)
		}
		sockNS, err := socketNS(c)
		if err != nil {
			return fail("%v", err)
		}
		if sockNS != host {
			return fail("the socket to %s is in namespace %s, want the host's %s", target, sockNS, host)
		}
		msg := []byte("ping " + target)
		if _, err := c.Write(msg); err != nil {
			return fail("write: %v", err)
		}
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(c, back); err != nil || string(back) != string(msg) {
			return fail("echo: %q, %v", back, err)
		}
		c.Close()
		fmt.Printf("dial %s through fd %d: socket in %s, echo ok\n", target, hostFD, sockNS)
	}

	// Every thread went back: none is left in the host's namespace.
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil || len(tasks) == 0 {
		return fail("threads: %v", err)
	}
	for _, task := range tasks {
		id, err := nsID(task)
		if err != nil {
			return fail("%v", err)
		}
		if id != own {
			return fail("%s is in namespace %s, want %s", task, id, own)
		}
	}
	fmt.Printf("all %d threads are still in %s\n", len(tasks), own)
	return 0
}

// nsID names a namespace by its device and inode.
func nsID(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	return strconv.FormatUint(st.Dev, 10) + ":" + strconv.FormatUint(st.Ino, 10), nil
}

func nsIDOfFD(fd int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", fmt.Errorf("fstat: %w", err)
	}
	return strconv.FormatUint(st.Dev, 10) + ":" + strconv.FormatUint(st.Ino, 10), nil
}

// socketNS asks the kernel which namespace a socket belongs to (SIOCGSKNS,
// Linux 4.9+, returns an fd of it).
func socketNS(c net.Conn) (string, error) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return "", err
	}
	var id string
	var nsErr error
	err = raw.Control(func(fd uintptr) {
		nsfd, err := unix.IoctlRetInt(int(fd), unix.SIOCGSKNS)
		if err != nil {
			nsErr = fmt.Errorf("SIOCGSKNS: %w", err)
			return
		}
		defer unix.Close(nsfd)
		id, nsErr = nsIDOfFD(nsfd)
	})
	if err != nil {
		return "", err
	}
	return id, nsErr
}
