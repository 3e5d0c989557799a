package busypoll

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/labctl/labctl/experiments/kstat"
)

// pollCounter counts hits of the napi:napi_poll tracepoint that match a
// filter, with one counting perf event per online CPU. The tracepoint
// fires for every poll of a NAPI instance, from the NET_RX softirq and
// from a busy-polling task alike (napi_busy_loop calls it too), so the
// count of a device's polls against the packets it received shows who
// polled: a softirq polls once per batch, a busy-polling task many times
// per packet. kstat.TracepointCounter counts a tracepoint without a filter,
// host-wide; the filter here keeps the polls of other devices (other labs,
// the host's NIC) out of the count.
type pollCounter struct {
	filter string
	fds    []int
}

const napiPollIDFile = "/sys/kernel/tracing/events/napi/napi_poll/id"

// devFilter is a tracepoint filter matching polls of the named devices;
// extra is and-ed to it ("work > 0").
func devFilter(devices []string, extra string) string {
	parts := make([]string, len(devices))
	for i, d := range devices {
		parts[i] = "dev_name == " + strconv.Quote(d)
	}
	f := "(" + strings.Join(parts, " || ") + ")"
	if extra != "" {
		f += " && " + extra
	}
	return f
}

// openPollCounter starts counting napi_poll hits that match filter.
func openPollCounter(filter string) (*pollCounter, error) {
	id, err := napiPollID()
	if err != nil {
		return nil, err
	}
	cpus, err := kstat.ReadOnlineCPUs()
	if err != nil {
		return nil, fmt.Errorf("napi:napi_poll counter: %w", err)
	}
	c := &pollCounter{filter: filter}
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})), Config: id, Bits: unix.PerfBitDisabled}
	for _, cpu := range cpus {
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("napi:napi_poll counter: perf_event_open on CPU %d: %w", cpu, err)
		}
		c.fds = append(c.fds, fd)
		// The filter goes on before the event is enabled, so nothing
		// unfiltered is ever counted.
		if err := unix.IoctlSetString(fd, unix.PERF_EVENT_IOC_SET_FILTER, filter); err != nil {
			c.Close()
			return nil, fmt.Errorf("napi:napi_poll counter: filter %q: %w", filter, err)
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			c.Close()
			return nil, fmt.Errorf("napi:napi_poll counter: enable on CPU %d: %w", cpu, err)
		}
	}
	return c, nil
}

// napiPollID reads the tracepoint's id, mounting tracefs where it belongs
// when it is not there: an agent has a sysfs of its own, on which
// /sys/kernel/tracing starts empty. The mount stays for later counters (it
// lives in the agent's mount namespace).
func napiPollID() (uint64, error) {
	b, err := os.ReadFile(napiPollIDFile)
	if errors.Is(err, os.ErrNotExist) {
		var st unix.Statfs_t
		if serr := unix.Statfs("/sys/kernel/tracing", &st); serr == nil && st.Type != unix.TRACEFS_MAGIC {
			if merr := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); merr != nil {
				return 0, fmt.Errorf("mount tracefs on /sys/kernel/tracing: %w", merr)
			}
			b, err = os.ReadFile(napiPollIDFile)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("napi:napi_poll tracepoint: %w", err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", napiPollIDFile, err)
	}
	return id, nil
}

// Read returns the matching polls so far, on all CPUs.
func (c *pollCounter) Read() (uint64, error) {
	var total uint64
	var buf [8]byte
	for _, fd := range c.fds {
		if _, err := unix.Read(fd, buf[:]); err != nil {
			return 0, fmt.Errorf("napi:napi_poll counter %q: read: %w", c.filter, err)
		}
		total += binary.NativeEndian.Uint64(buf[:])
	}
	return total, nil
}

// Close releases the perf events.
func (c *pollCounter) Close() error {
	var errs []error
	for _, fd := range c.fds {
		errs = append(errs, unix.Close(fd))
	}
	c.fds = nil
	return errors.Join(errs...)
}
