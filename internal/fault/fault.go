// Package fault names the kinds of failure labctl's domain packages (labs,
// runs, experiments) report, so that they say what went wrong without
// knowing about gRPC: services/rpcerr turns a kind into a gRPC code in one
// place, and an agent's gRPC errors back into kinds on the way in.
package fault

import (
	"context"
	"errors"
	"fmt"
)

// Kind is what a failure means to the caller.
type Kind int

const (
	// Internal: a bug or an unexpected failure of the host.
	Internal Kind = iota
	// Invalid: the request was wrong; nothing was changed.
	Invalid
	// NotFound: the request names something that does not exist.
	NotFound
	// Precondition: the request is right but the lab cannot do it (a node
	// without an agent, a lab without the path an experiment needs).
	Precondition
	// Unavailable: a node's agent could not be reached.
	Unavailable
	// Cancelled: the caller cancelled.
	Cancelled
	// Aborted: a role failed while it ran.
	Aborted
	// Exists: what the request would create is there already; nothing was
	// changed.
	Exists
)

var names = map[Kind]string{Internal: "internal", Invalid: "invalid", NotFound: "not found",
	Precondition: "precondition", Unavailable: "unavailable", Cancelled: "cancelled", Aborted: "aborted", Exists: "exists"}

func (k Kind) String() string { return names[k] }

// Error is a failure of a kind; its text is its own (the kind is not
// repeated in it).
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// New makes a failure of kind k; format may wrap an error with %w.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// Kinded is an error type of one kind (a list of refused parameters is
// Invalid), for errors that carry more than text.
type Kinded interface{ FaultKind() Kind }

// KindOf is the kind of err: the outermost Error's or Kinded's in its
// chain, Cancelled for a cancelled context, Internal for anything else (a
// deadline that passed is no cancel: services/rpcerr reports it as such).
func KindOf(err error) Kind {
	var e *Error
	var k Kinded
	switch {
	case errors.As(err, &e):
		return e.Kind
	case errors.As(err, &k):
		return k.FaultKind()
	case errors.Is(err, context.Canceled):
		return Cancelled
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }
