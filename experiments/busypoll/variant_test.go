package busypoll

import (
	"strings"
	"testing"
	"time"
)

func TestVariantNamesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		v    variant
		name string
	}{
		{variant{Device: loopback, Mechanism: blocking}, "loopback/blocking"},
		{variant{Device: vethGRO, Mechanism: busyRead, Timeout: 50 * time.Microsecond}, "veth-gro/busy_read-50us"},
		{variant{Device: veth, Mechanism: soBusyPollBudget, Timeout: 25 * time.Microsecond, Budget: 64}, "veth/so_busy_poll_budget-25us-64pkts"},
		{variant{Device: vethXDP, Mechanism: epollParams, Timeout: 0}, "veth-xdp/epoll_params-0us"},
		{variant{Device: nic, Mechanism: spin}, "nic/spin"},
		{variant{Device: vethGROTSO, Mechanism: epoll}, "veth-gro-tso/epoll"},
	} {
		if got := tc.v.String(); got != tc.name {
			t.Errorf("%+v names itself %q, want %q", tc.v, got, tc.name)
		}
		back, err := parseVariant(tc.name)
		if err != nil || back != tc.v {
			t.Errorf("ParseVariant(%q) = %+v, %v; want %+v", tc.name, back, err, tc.v)
		}
	}
}

func TestParseVariantRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"blocking", "want DEVICE/MECHANISM"},
		{"wifi/blocking", "unknown device"},
		{"veth/poll", "unknown mechanism"},
		{"veth/blocking-50us", "takes 1 fields"},
		{"veth/busy_read", "takes 2 fields"},
		{"veth/busy_read-50ms", "whole microseconds"},
		{"veth/so_busy_poll_budget-50us-0pkts", "budget"},
		{"veth/so_busy_poll_budget-50us-64", "budget"},
	} {
		_, err := parseVariant(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseVariant(%q): %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestMechanismProperties(t *testing.T) {
	for _, tc := range []struct {
		m        mechanism
		mode     mode
		baseline mechanism
		busy     bool
		sysctl   string
	}{
		{blocking, modeBlocking, blocking, false, ""},
		{soBusyPoll, modeBlocking, blocking, true, ""},
		{soBusyPollBudget, modeBlocking, blocking, true, ""},
		{busyRead, modeBlocking, blocking, true, "net.core.busy_read"},
		{preferBusyPoll, modeBlocking, blocking, true, ""},
		{epoll, modeEpoll, epoll, false, ""},
		{busyPoll, modeEpoll, epoll, true, "net.core.busy_poll"},
		{epollParams, modeEpoll, epoll, true, ""},
		{spin, modeSpin, blocking, false, ""},
	} {
		if tc.m.Mode() != tc.mode || tc.m.BaselineOf() != tc.baseline || tc.m.KernelBusyPoll() != tc.busy || tc.m.HostSysctl() != tc.sysctl {
			t.Errorf("%s: mode %v baseline %s busy %v sysctl %q; want %v %s %v %q", tc.m, tc.m.Mode(), tc.m.BaselineOf(), tc.m.KernelBusyPoll(), tc.m.HostSysctl(),
				tc.mode, tc.baseline, tc.busy, tc.sysctl)
		}
	}
}

func TestExpand(t *testing.T) {
	got := expand(vethGRO, []mechanism{blocking, busyRead, soBusyPollBudget, spin},
		[]time.Duration{25 * time.Microsecond, 50 * time.Microsecond, 50*time.Microsecond + 300*time.Nanosecond}, 64)
	var names []string
	for _, v := range got {
		names = append(names, v.String())
	}
	want := "veth-gro/blocking veth-gro/busy_read-25us veth-gro/busy_read-50us veth-gro/so_busy_poll_budget-25us-64pkts veth-gro/so_busy_poll_budget-50us-64pkts veth-gro/spin"
	if strings.Join(names, " ") != want {
		t.Errorf("Expand:\n got %s\nwant %s", strings.Join(names, " "), want)
	}
}

func TestDevFilter(t *testing.T) {
	for _, tc := range []struct {
		devs  []string
		extra string
		want  string
	}{
		{[]string{"napi0"}, "", `(dev_name == "napi0")`},
		{[]string{"a", "b"}, "work > 0", `(dev_name == "a" || dev_name == "b") && work > 0`},
	} {
		if got := devFilter(tc.devs, tc.extra); got != tc.want {
			t.Errorf("devFilter(%v, %q) = %s, want %s", tc.devs, tc.extra, got, tc.want)
		}
	}
}
