package uring

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Err returns the request's error, nil on success. A SEND_ZC notification
// carries flags, not an error, in Res, so its Err is nil.
func (c *CQE) Err() error {
	if c.Res >= 0 || c.Notif() {
		return nil
	}
	return unix.Errno(-c.Res)
}

// More reports IORING_CQE_F_MORE: the request will post another completion
// (for SEND_ZC, its notification).
func (c *CQE) More() bool { return c.Flags&CQEFMore != 0 }

// Notif reports IORING_CQE_F_NOTIF: this is a SEND_ZC notification, posted
// once the kernel no longer uses the send's buffer.
func (c *CQE) Notif() bool { return c.Flags&CQEFNotif != 0 }

// ZCCopied reports, for the notification of a SEND_ZC sent with
// SendZCReportUsage, that the kernel copied the data instead of sending the
// pages (IORING_NOTIF_USAGE_ZC_COPIED). Without SendZCReportUsage the kernel
// does not say, and ZCCopied is false.
func (c *CQE) ZCCopied() bool { return c.Notif() && uint32(c.Res)&NotifUsageZCCopied != 0 }

func (r *Ring) ready() uint32 { return atomic.LoadUint32(r.cqTail) - r.cqHead }

// PeekCQE returns the oldest completion without waiting or entering the
// kernel, or nil if there is none. It stays valid, and in the queue, until
// SeenCQE. Completions that overflowed a full completion queue (more requests
// in flight than CQEs) reach the queue only at the next WaitCQE or
// SubmitAndWait.
func (r *Ring) PeekCQE() *CQE {
	if r.ready() == 0 {
		return nil
	}
	return &r.cqes[r.cqHead&r.cqMask]
}

// WaitCQE returns the oldest completion, waiting for one with io_uring_enter
// (IORING_ENTER_GETEVENTS) if the queue is empty; it does not submit. As with
// PeekCQE, call SeenCQE when done with it.
func (r *Ring) WaitCQE() (*CQE, error) {
	for {
		if c := r.PeekCQE(); c != nil {
			return c, nil
		}
		if _, e := r.enter(0, 1, enterGetEvents); e != 0 && e != unix.EINTR {
			return nil, fmt.Errorf("io_uring %d: enter to wait for a completion: %w", r.fd, e)
		}
	}
}

// SeenCQE consumes the oldest completion, handing its slot back to the
// kernel; the pointer PeekCQE or WaitCQE returned for it is invalid after.
// It does nothing when the queue is empty.
func (r *Ring) SeenCQE() {
	if r.ready() == 0 {
		return
	}
	r.cqHead++
	atomic.StoreUint32(r.cqHeadPtr, r.cqHead)
}
