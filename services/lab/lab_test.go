package lab

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/labs"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/runs"
)

// serve starts a LabService over bufconn on state directories of the test's
// own; interceptors, when given, guard it as labctl serve does.
func serve(t *testing.T, opts ...grpc.ServerOption) labv1.LabServiceClient {
	t.Helper()
	host := &labs.Host{StateDir: t.TempDir(), RunDir: t.TempDir(), Version: "test"}
	srv := grpc.NewServer(opts...)
	labv1.RegisterLabServiceServer(srv, &Server{Host: host,
		Runner: &runs.Runner{Registry: all.Registry(), Store: &runs.Store{Dir: host.ResultsDir()}, Version: "test"}})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///lab", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return labv1.NewLabServiceClient(cc)
}

// drain reads a server stream to its end and returns its error.
func drain[T any](recv func() (T, error)) error {
	for {
		if _, err := recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func TestBadTopologyIsInvalidArgumentWithFields(t *testing.T) {
	c := serve(t)
	stream, err := c.Up(context.Background(), &labv1.UpRequest{Source: "bad.yaml", Topology: []byte("name: lab\nnodes:\n  n1: {}\nlinks:\n  - endpoints: [n1:eth0, n9:eth0]\n    mtu: 1\n")})
	if err != nil {
		t.Fatal(err)
	}
	err = drain(stream.Recv)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %v: %v", st.Code(), err)
	}
	var fields, descs []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
				descs = append(descs, v.GetDescription())
			}
		}
	}
	if strings.Join(fields, ",") != "links[0].endpoints[1].node,links[0].mtu" {
		t.Errorf("fields %v", fields)
	}
	if len(descs) != 2 || !strings.HasPrefix(descs[0], "bad.yaml:5:") {
		t.Errorf("descriptions do not carry file:line:col: %v", descs)
	}
}

func TestErrorCodes(t *testing.T) {
	c := serve(t)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"status of an unknown lab", func() error {
			_, err := c.GetStatus(ctx, &labv1.GetStatusRequest{Lab: "nope"})
			return err
		}, codes.NotFound},
		{"status with a bad lab name", func() error {
			_, err := c.GetStatus(ctx, &labv1.GetStatusRequest{Lab: "../etc"})
			return err
		}, codes.InvalidArgument},
		{"run in an unknown lab", func() error {
			s, err := c.Run(ctx, &labv1.RunRequest{Lab: "nope", Experiment: "rr"})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		}, codes.NotFound},
		{"an unknown result", func() error {
			_, err := c.GetResult(ctx, &labv1.GetResultRequest{Id: "20990101-000000-rr-0000"})
			return err
		}, codes.NotFound},
		{"a result id that is a path", func() error {
			_, err := c.GetResult(ctx, &labv1.GetResultRequest{Id: "../../etc/passwd"})
			return err
		}, codes.NotFound},
		{"down with a bad lab name", func() error {
			s, err := c.Down(ctx, &labv1.DownRequest{Lab: "Bad Name"})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call()); got != tt.code {
				t.Errorf("code %v, want %v", got, tt.code)
			}
		})
	}
}

func TestListExperimentsDescribesBounds(t *testing.T) {
	resp, err := serve(t).ListExperiments(context.Background(), &labv1.ListExperimentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.GetExperiments() {
		for _, p := range s.GetParams() {
			if p.GetDefault() == "" || p.GetHelp() == "" {
				t.Errorf("%s parameter %s lacks a default or help", s.GetName(), p.GetName())
			}
		}
	}
}
