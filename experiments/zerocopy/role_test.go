package zerocopy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/kernel"
	"github.com/labctl/labctl/internal/labtest"
	"github.com/labctl/labctl/internal/privtest"
	"github.com/labctl/labctl/internal/report"
	"github.com/labctl/labctl/internal/uring"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

// runLoopback runs both roles of one step over 127.0.0.1 in the test's
// own namespace, as the agent does.
func runLoopback(t *testing.T, ctx context.Context, given map[string]string) (server, client *experimentv1.RoleReport, serverErr, clientErr error) {
	t.Helper()
	var e Experiment
	p, err := experiments.Validate(e.Spec(), given)
	if err != nil {
		t.Fatal(err)
	}
	link, send, recv, size := stepVariant(experiments.As[params](p))
	v := variant{Link: "lo", Send: send, Recv: recv, Size: size}
	if link != linkLoopback {
		t.Fatalf("runLoopback with link=%s", link)
	}
	step := &experimentv1.Step{Variant: v.String(), Params: p.Map(), Roles: []*experimentv1.RoleAssignment{
		{Role: "server", Node: "n", Address: "127.0.0.1"}, {Role: "client", Node: "n"}}}
	reports, errs := labtest.Roles(t, ctx, e, step, p, labtest.RoleOptions{})
	return reports["server"], reports["client"], errs["server"], errs["client"]
}

func short(send, recv, size string) map[string]string {
	return map[string]string{"link": linkLoopback, "send": send, "recv": recv, "sizes": size,
		"duration": "100ms", "warmup": "20ms", "file_size": "2MiB"}
}

func evidence(t *testing.T, r *experimentv1.RoleReport, name string) float64 {
	t.Helper()
	v, ok := report.EvidenceValue(r, name)
	if !ok {
		t.Fatalf("%s report lacks evidence %s: %v", r.GetRole(), name, r.GetEvidence())
	}
	return v
}

// TestSendPathsOnLoopback runs every send path once and checks the
// metrics each must report, and that the stream really flowed: the
// receiver got at least what the sender measured minus what the sender's
// warm-up and the receiver's differ by.
func TestSendPathsOnLoopback(t *testing.T) {
	for _, send := range sendPaths {
		t.Run(send, func(t *testing.T) {
			server, client, serr, cerr := runLoopback(t, context.Background(), short(send, read, "64KiB"))
			if serr != nil || cerr != nil {
				t.Fatalf("server: %v, client: %v", serr, cerr)
			}
			if why, ok := report.EvidenceValue(client, "unsupported"); ok {
				if strings.HasPrefix(send, "uring") {
					privtest.Unavailable(t, fmt.Sprintf("io_uring path unsupported here (errno %v): %v", why, client.GetNotes()))
				}
				t.Fatalf("%s unsupported: %v", send, client.GetNotes())
			}
			for _, m := range []string{"throughput_bps", "cpu_ns_per_byte", "host_cpu_ns_per_byte", "host_softirq_ns_per_byte", "syscalls_per_byte", "syscalls_per_msg", "sent_bytes"} {
				if v, ok := client.Metrics[m]; !ok || v < 0 {
					t.Errorf("client %s = %v (present %v)", m, v, ok)
				}
			}
			if client.Metrics["sent_bytes"] <= 0 || client.Metrics["cpu_ns_per_byte"] <= 0 {
				t.Errorf("client measured nothing: %v", client.Metrics)
			}
			for _, m := range []string{"received_bytes", "cpu_ns_per_byte", "syscalls_per_byte"} {
				if v, ok := server.Metrics[m]; !ok || v <= 0 {
					t.Errorf("server %s = %v (present %v)", m, v, ok)
				}
			}
			// Over loopback the stream leaves through lo.
			if egress := evidenceDetail(client, "egress_tx_bytes"); !strings.HasSuffix(egress, ": lo") {
				t.Errorf("egress evidence %q does not name lo", egress)
			}
			if got := evidence(t, client, "egress_tx_bytes"); got <= 0 {
				t.Errorf("lo sent %v bytes in the window", got)
			}
			t.Logf("%.2f Gbit/s, sender %.3f ns/B, receiver %.3f ns/B, host %.3f ns/B (softirq %.3f), %.2f syscalls/msg",
				client.Metrics["throughput_bps"]/1e9, client.Metrics["cpu_ns_per_byte"], server.Metrics["cpu_ns_per_byte"],
				client.Metrics["host_cpu_ns_per_byte"], client.Metrics["host_softirq_ns_per_byte"], client.Metrics["syscalls_per_msg"])
			_, hasRatio := client.Metrics["copied_ratio"]
			if hasRatio != zerocopySend(send) {
				t.Errorf("copied_ratio present: %v, want %v", hasRatio, zerocopySend(send))
			}
			// One syscall per message at least, two for read+write and splice.
			minCalls := 1.0
			if send == readWrite || send == splice {
				minCalls = 2
			}
			if got := client.Metrics["syscalls_per_msg"]; got < minCalls {
				t.Errorf("syscalls_per_msg = %v, want >= %v", got, minCalls)
			}
		})
	}
}

func evidenceDetail(r *experimentv1.RoleReport, name string) string {
	for _, e := range r.GetEvidence() {
		if e.GetName() == name {
			return e.GetDetail()
		}
	}
	return ""
}

// TestZerocopyAccountingOnLoopback checks the copied-ratio accounting
// against the kernel's own notifications: over loopback the kernel copies
// every zero-copy send, so every send is completed and every completion
// says copied.
func TestZerocopyAccountingOnLoopback(t *testing.T) {
	for _, send := range []string{msgZerocopy, uringSendZC, uringSendZCFixed} {
		for _, size := range []string{"4KiB", "1MiB"} {
			t.Run(send+"/"+size, func(t *testing.T) {
				_, client, serr, cerr := runLoopback(t, context.Background(), short(send, read, size))
				if serr != nil || cerr != nil {
					t.Fatalf("server: %v, client: %v", serr, cerr)
				}
				if _, ok := report.EvidenceValue(client, "unsupported"); ok {
					if send == msgZerocopy {
						t.Fatalf("MSG_ZEROCOPY unsupported: %v", client.GetNotes())
					}
					privtest.Unavailable(t, fmt.Sprintf("unsupported here: %v", client.GetNotes()))
				}
				sends, completed, copied := evidence(t, client, "zc_sends"), evidence(t, client, "zc_completed"), evidence(t, client, "zc_copied")
				if sends == 0 || completed != sends || copied != completed {
					t.Errorf("sends %v, completed %v, copied %v: want all sends completed and all copied on loopback", sends, completed, copied)
				}
				if got := client.Metrics["copied_ratio"]; got != 1 {
					t.Errorf("copied_ratio %v, want 1", got)
				}
			})
		}
	}
}

// TestReceivePathsOnLoopback checks what each receive path accounts for.
func TestReceivePathsOnLoopback(t *testing.T) {
	for _, recv := range recvPaths {
		t.Run(recv, func(t *testing.T) {
			server, client, serr, cerr := runLoopback(t, context.Background(), short(sendfile, recv, "64KiB"))
			if serr != nil || cerr != nil {
				t.Fatalf("server: %v, client: %v", serr, cerr)
			}
			if _, ok := report.EvidenceValue(server, "unsupported"); ok {
				t.Fatalf("%s unsupported: %v", recv, server.GetNotes())
			}
			if server.Metrics["received_bytes"] <= 0 {
				t.Fatalf("server measured nothing: %v (client sent %v)", server.Metrics, client.Metrics["sent_bytes"])
			}
			switch recv {
			case tcpzc:
				mapped, copied := evidence(t, server, "mapped_bytes"), evidence(t, server, "copied_bytes")
				if mapped+copied != server.Metrics["received_bytes"] {
					t.Errorf("mapped %v + copied %v != received %v", mapped, copied, server.Metrics["received_bytes"])
				}
				if got, want := server.Metrics["mapped_ratio"], mapped/(mapped+copied); got != want {
					t.Errorf("mapped_ratio %v, want %v", got, want)
				}
				t.Logf("mapped %.0f bytes, copied %.0f", mapped, copied)
			case recvTrunc:
				if got := evidence(t, server, "discarded_bytes"); got != server.Metrics["received_bytes"] {
					t.Errorf("discarded %v, received %v", got, server.Metrics["received_bytes"])
				}
			}
		})
	}
}

// TestCancelStopsBothRolesAndLeavesNoFile: a long run cancelled early ends
// both roles with the context's error, and the client's file is gone.
func TestCancelStopsBothRolesAndLeavesNoFile(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, send := range []string{sendfile, msgZerocopy, uringSendZC} {
		t.Run(send, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			params := short(send, tcpzc, "64KiB")
			params["duration"] = "1m"
			_, _, serr, cerr := runLoopback(t, ctx, params)
			if !errors.Is(cerr, context.DeadlineExceeded) {
				t.Errorf("client: %v, want the context's error", cerr)
			}
			if !errors.Is(serr, context.DeadlineExceeded) {
				t.Errorf("server: %v, want the context's error", serr)
			}
			left, _ := filepath.Glob(filepath.Join(tmp, "*"))
			if len(left) > 0 {
				t.Errorf("files left in the temp directory: %v", left)
			}
		})
	}
}

// TestUnsupportedIsReported: a path the kernel refuses is reported with
// the kernel's answer and no numbers, not as a failure.
func TestUnsupportedIsReported(t *testing.T) {
	u := &kernel.NotSupportedError{Feature: uring.OpSendZC.Feature()}
	r := &experimentv1.RoleReport{Role: "client", Metrics: map[string]float64{}}
	addUnsupported(r, uringSendZC, u)
	if _, ok := report.EvidenceValue(r, "unsupported"); !ok || len(r.GetNotes()) != 1 || !strings.Contains(r.GetNotes()[0], "io_uring SEND_ZC cannot run here") {
		t.Errorf("report %v", r)
	}
	if len(r.Metrics) != 0 {
		t.Errorf("an unsupported path reports metrics: %v", r.Metrics)
	}
}
