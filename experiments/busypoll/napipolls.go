package busypoll

import (
	"strconv"
	"strings"
)

// devFilter is a napi:napi_poll filter (kstat.WithFilter) matching polls of
// the named devices; extra is and-ed to it ("work > 0"). The tracepoint
// fires for every poll of a NAPI instance, from the NET_RX softirq and from
// a busy-polling task alike (napi_busy_loop calls it too), so the count of
// a device's polls against the packets it received shows who polled: a
// softirq polls once per batch, a busy-polling task many times per packet.
// The filter keeps the polls of other devices (other labs, the host's NIC)
// out of the count.
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
