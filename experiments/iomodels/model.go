package iomodels

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// model is the way the server waits for and reads a request.
type model string

// The models, in the order the summary lists them.
const (
	// blocking: blocking recv and send, the thread sleeps in recv.
	blocking model = "blocking"
	// spin: a non-blocking socket polled by recv in a loop until data comes.
	spin model = "spin"
	// selectModel, Poll: wait for readability with select(2) or poll(2), then recv.
	selectModel model = "select"
	poll        model = "poll"
	// epollLT, EpollET: epoll_wait level or edge triggered, then recv (ET
	// must read until EAGAIN before it waits again).
	epollLT model = "epoll-lt"
	epollET model = "epoll-et"
	// uringModel: io_uring IORING_OP_RECV and IORING_OP_SEND, submitted and
	// awaited with one io_uring_enter per message.
	uringModel model = "uring"
	// uringSQPoll: the same with a kernel submission thread (SQPOLL), so
	// that submitting needs no system call.
	uringSQPoll model = "uring-sqpoll"
	// netConn: Go's net.Conn, blocking reads and writes over the runtime's
	// netpoller (epoll underneath, goroutines parked instead of threads).
	netConn model = "netconn"
)

// models lists every model.
var models = []model{blocking, spin, selectModel, poll, epollLT, epollET, uringModel, uringSQPoll, netConn}

// Multiplexing reports whether the model waits on a set of descriptors, so
// that idle connections beside the active one change its cost (C9).
func (m model) Multiplexing() bool {
	switch m {
	case selectModel, poll, epollLT, epollET:
		return true
	}
	return false
}

// Protocols the request/response runs over.
const (
	protoTCP = "tcp"
	protoUDP = "udp"
)

// variant is one combination the run measures.
type variant struct {
	Model model
	Proto string
	// Idle is the number of idle TCP connections the server watches beside
	// the active one (0 for the plain comparison of models).
	Idle int
}

// Name is the variant's name in steps and summaries: "epoll-lt/tcp", or
// "poll/tcp/idle=100" with idle connections.
func (v variant) Name() string {
	n := string(v.Model) + "/" + v.Proto
	if v.Idle > 0 {
		n += "/idle=" + strconv.Itoa(v.Idle)
	}
	return n
}

// Params are the step parameters that select the variant (the list
// parameters narrowed to one value).
func (v variant) Params() map[string]string {
	return map[string]string{"models": string(v.Model), "protocols": v.Proto, "idle": strconv.Itoa(v.Idle)}
}

// variantOf reads the variant back from a step's parameters.
func variantOf(params map[string]string) (variant, error) {
	idle, err := strconv.Atoi(params["idle"])
	if err != nil || strings.Contains(params["models"], ",") || strings.Contains(params["protocols"], ",") {
		return variant{}, fmt.Errorf("step parameters models=%q protocols=%q idle=%q do not name one variant",
			params["models"], params["protocols"], params["idle"])
	}
	return variant{Model: model(params["models"]), Proto: params["protocols"], Idle: idle}, nil
}

// plan lists the variants of a run: every model over every protocol without
// idle connections (when idle includes 0), then, for TCP and the
// multiplexing models, each non-zero idle count. Idle connections make no
// sense for the models that watch one descriptor, and select, poll and epoll
// over UDP would only watch idle sockets nobody sends to; the scaling mode
// is TCP's.
func plan(models []model, protos []string, idle []int) ([]variant, error) {
	models, protos = unique(models), unique(protos)
	idle = slices.Compact(slices.Sorted(slices.Values(idle)))
	var out []variant
	for _, n := range idle {
		if n != 0 {
			continue
		}
		for _, p := range protos {
			for _, m := range models {
				out = append(out, variant{Model: m, Proto: p})
			}
		}
	}
	for _, n := range idle {
		if n == 0 {
			continue
		}
		for _, p := range protos {
			if p != protoTCP {
				continue
			}
			for _, m := range models {
				if m.Multiplexing() {
					out = append(out, variant{Model: m, Proto: p, Idle: n})
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
