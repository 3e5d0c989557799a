package iomodels

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Model is the way the server waits for and reads a request.
type Model string

// The models, in the order the summary lists them.
const (
	// Blocking: blocking recv and send, the thread sleeps in recv.
	Blocking Model = "blocking"
	// Spin: a non-blocking socket polled by recv in a loop until data comes.
	Spin Model = "spin"
	// Select, Poll: wait for readability with select(2) or poll(2), then recv.
	Select Model = "select"
	Poll   Model = "poll"
	// EpollLT, EpollET: epoll_wait level or edge triggered, then recv (ET
	// must read until EAGAIN before it waits again).
	EpollLT Model = "epoll-lt"
	EpollET Model = "epoll-et"
	// Uring: io_uring IORING_OP_RECV and IORING_OP_SEND, submitted and
	// awaited with one io_uring_enter per message.
	Uring Model = "uring"
	// UringSQPoll: the same with a kernel submission thread (SQPOLL), so
	// that submitting needs no system call.
	UringSQPoll Model = "uring-sqpoll"
	// NetConn: Go's net.Conn, blocking reads and writes over the runtime's
	// netpoller (epoll underneath, goroutines parked instead of threads).
	NetConn Model = "netconn"
)

// Models lists every model.
var Models = []Model{Blocking, Spin, Select, Poll, EpollLT, EpollET, Uring, UringSQPoll, NetConn}

// Multiplexing reports whether the model waits on a set of descriptors, so
// that idle connections beside the active one change its cost (C9).
func (m Model) Multiplexing() bool {
	switch m {
	case Select, Poll, EpollLT, EpollET:
		return true
	}
	return false
}

// Protocols the request/response runs over.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Variant is one combination the run measures.
type Variant struct {
	Model Model
	Proto string
	// Idle is the number of idle TCP connections the server watches beside
	// the active one (0 for the plain comparison of models).
	Idle int
}

// Name is the variant's name in steps and summaries: "epoll-lt/tcp", or
// "poll/tcp/idle=100" with idle connections.
func (v Variant) Name() string {
	n := string(v.Model) + "/" + v.Proto
	if v.Idle > 0 {
		n += "/idle=" + strconv.Itoa(v.Idle)
	}
	return n
}

// Params are the step parameters that select the variant (the list
// parameters narrowed to one value).
func (v Variant) Params() map[string]string {
	return map[string]string{"models": string(v.Model), "protocols": v.Proto, "idle": strconv.Itoa(v.Idle)}
}

// VariantOf reads the variant back from a step's parameters.
func VariantOf(params map[string]string) (Variant, error) {
	idle, err := strconv.Atoi(params["idle"])
	if err != nil || strings.Contains(params["models"], ",") || strings.Contains(params["protocols"], ",") {
		return Variant{}, fmt.Errorf("step parameters models=%q protocols=%q idle=%q do not name one variant",
			params["models"], params["protocols"], params["idle"])
	}
	return Variant{Model: Model(params["models"]), Proto: params["protocols"], Idle: idle}, nil
}

// Plan lists the variants of a run: every model over every protocol without
// idle connections (when idle includes 0), then, for TCP and the
// multiplexing models, each non-zero idle count. Idle connections make no
// sense for the models that watch one descriptor, and select, poll and epoll
// over UDP would only watch idle sockets nobody sends to; the scaling mode
// is TCP's.
func Plan(models []Model, protos []string, idle []int) ([]Variant, error) {
	models, protos = unique(models), unique(protos)
	idle = slices.Compact(slices.Sorted(slices.Values(idle)))
	var out []Variant
	for _, n := range idle {
		if n != 0 {
			continue
		}
		for _, p := range protos {
			for _, m := range models {
				out = append(out, Variant{Model: m, Proto: p})
			}
		}
	}
	for _, n := range idle {
		if n == 0 {
			continue
		}
		for _, p := range protos {
			if p != TCP {
				continue
			}
			for _, m := range models {
				if m.Multiplexing() {
					out = append(out, Variant{Model: m, Proto: p, Idle: n})
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no variant to run: idle connections (idle > 0) apply only to tcp with select, poll, epoll-lt or epoll-et; add 0 to idle or choose those")
	}
	return out, nil
}

// unique drops repeated elements, keeping the first of each.
func unique[T comparable](xs []T) []T {
	var out []T
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
