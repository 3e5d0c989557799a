package zerocopy

import "github.com/labctl/labctl/internal/sock"

// zcTally counts what the kernel reported about zero-copy sends: how many
// it completed, and how many of those it copied after all.
//
// MSG_ZEROCOPY reports ranges of send numbers. The kernel merges the range
// of a completion into the previous one still queued when the numbers
// follow on, without comparing their COPIED flags (skb_zerocopy_notify_extend,
// unchanged up to Linux 6.18), so a merged range carries the flag of its
// first part: Copied is exact on paths that copy every send or none (veth,
// loopback: all; a NIC without observers: none) and an estimate on paths
// that mix. io_uring posts one notification per SEND_ZC request, exact.
type zcTally struct {
	Completed int64
	Copied    int64
}

// add counts MSG_ZEROCOPY completions.
func (t *zcTally) add(cs []sock.Completion) {
	for _, c := range cs {
		n := int64(c.Sends())
		t.Completed += n
		if c.Copied {
			t.Copied += n
		}
	}
}

// addNotification counts one SEND_ZC notification.
func (t *zcTally) addNotification(copied bool) {
	t.Completed++
	if copied {
		t.Copied++
	}
}

// ratio is the share of completed sends the kernel copied.
func (t zcTally) ratio() float64 {
	if t.Completed == 0 {
		return 0
	}
	return float64(t.Copied) / float64(t.Completed)
}
