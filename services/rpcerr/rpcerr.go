// Package rpcerr maps labctl's errors to gRPC statuses with details, and
// back, so that a bad topology or parameter reads the same through the
// remote API as on the command line.
package rpcerr

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/fault"
	"github.com/labctl/labctl/topologies"
)

// Status converts err into a gRPC status error. Topology and parameter
// errors become InvalidArgument with a BadRequest detail naming each field;
// context errors become Canceled or DeadlineExceeded; an error that already
// is a status passes through; anything else is code.
func Status(err error, code codes.Code) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var topo topologies.ErrorList
	var topoOne *topologies.Error
	var params experiments.ParamErrors
	var param *experiments.ParamError
	switch {
	case errors.As(err, &topo):
		br := &errdetails.BadRequest{}
		for _, e := range topo {
			br.FieldViolations = append(br.FieldViolations, violation(e))
		}
		return withDetails(codes.InvalidArgument, err.Error(), br)
	case errors.As(err, &topoOne):
		return withDetails(codes.InvalidArgument, err.Error(), &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{violation(topoOne)}})
	case errors.As(err, &params):
		br := &errdetails.BadRequest{}
		for _, e := range params {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: "params." + e.Param, Description: e.Msg})
		}
		return withDetails(codes.InvalidArgument, err.Error(), br)
	case errors.As(err, &param):
		return withDetails(codes.InvalidArgument, err.Error(), &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "params." + param.Param, Description: param.Msg}}})
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.As(err, new(*fault.Error)):
		return status.Error(kindCodes[fault.KindOf(err)], err.Error())
	}
	return status.Error(code, err.Error())
}

// kindCodes are the gRPC codes of the domain's kinds of failure; FromStatus
// reads them back.
var kindCodes = map[fault.Kind]codes.Code{
	fault.Internal:     codes.Internal,
	fault.Invalid:      codes.InvalidArgument,
	fault.NotFound:     codes.NotFound,
	fault.Precondition: codes.FailedPrecondition,
	fault.Unavailable:  codes.Unavailable,
	fault.Cancelled:    codes.Canceled,
	fault.Aborted:      codes.Aborted,
	fault.Exists:       codes.AlreadyExists,
}

// FromStatus turns a gRPC status error from an agent into a failure of the
// kind its code means, with the status's message as its text, so that the
// domain packages calling agents never see a status.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	kind := fault.Internal
	for k, c := range kindCodes {
		if c == st.Code() {
			kind = k
		}
	}
	return &fault.Error{Kind: kind, Err: errors.New(st.Message())}
}

func violation(e *topologies.Error) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: e.Field, Description: e.Error()}
}

func withDetails(code codes.Code, msg string, details ...*errdetails.BadRequest) error {
	st := status.New(code, msg)
	for _, d := range details {
		if with, err := st.WithDetails(d); err == nil {
			st = with
		}
	}
	return st.Err()
}

// IsInvalid reports whether err is an InvalidArgument status: the request
// was wrong and nothing was changed.
func IsInvalid(err error) bool { return status.Code(err) == codes.InvalidArgument }

// Message returns the message of a status error, or err's text.
func Message(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}
