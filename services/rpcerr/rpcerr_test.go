package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/experiments"
	"github.com/labctl/labctl/internal/fault"
)

// TestStatusAndBack: each kind of failure has its code, keeps its text,
// and reads back as the same kind from an agent's status.
func TestStatusAndBack(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		kind fault.Kind
	}{
		{fault.New(fault.NotFound, "no experiment %q", "x"), codes.NotFound, fault.NotFound},
		{fault.New(fault.Invalid, "bad"), codes.InvalidArgument, fault.Invalid},
		{fault.New(fault.Precondition, "no path"), codes.FailedPrecondition, fault.Precondition},
		{fmt.Errorf("step 3: %w", fault.New(fault.Unavailable, "node n2: agent unreachable")), codes.Unavailable, fault.Unavailable},
		{fault.New(fault.Cancelled, "run cancelled"), codes.Canceled, fault.Cancelled},
		{fault.New(fault.Aborted, "role failed"), codes.Aborted, fault.Aborted},
		{context.Canceled, codes.Canceled, fault.Cancelled},
		{experiments.ParamErrors{{Param: "size", Msg: "too big"}}, codes.InvalidArgument, fault.Invalid},
		{errors.New("disk full"), codes.Internal, fault.Internal},
	} {
		st := status.Convert(Status(tc.err, codes.Internal))
		if st.Code() != tc.code || st.Message() != tc.err.Error() {
			t.Errorf("%v: status %v %q, want %v", tc.err, st.Code(), st.Message(), tc.code)
		}
		back := FromStatus(st.Err())
		if k := fault.KindOf(back); k != tc.kind || back.Error() != tc.err.Error() {
			t.Errorf("%v: back as %v %q, want %v", tc.err, k, back, tc.kind)
		}
	}
}

func TestParamErrorsNameFields(t *testing.T) {
	err := Status(fmt.Errorf("run: %w", experiments.ParamErrors{{Param: "size", Msg: "too big"}, {Param: "repeats", Msg: "below 1"}}), codes.Internal)
	var fields []string
	for _, d := range status.Convert(err).Details() {
		for _, v := range d.(*errdetails.BadRequest).GetFieldViolations() {
			fields = append(fields, v.GetField())
		}
	}
	if fmt.Sprint(fields) != "[params.size params.repeats]" {
		t.Errorf("fields %v", fields)
	}
}
