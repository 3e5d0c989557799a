package agent

import (
	"context"
	"io"
	"net"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/labctl/labctl/experiments/all"
	agentv1 "github.com/labctl/labctl/proto/labctl/agent/v1"
	experimentv1 "github.com/labctl/labctl/proto/labctl/experiment/v1"
)

func dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	srv := NewGRPCServer(&Server{Lab: "lab", Node: "n1", Version: "v-test", Registry: all.Registry(), SettingsDir: t.TempDir()})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///agent", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return cc
}

func TestInfoHealthAndReflection(t *testing.T) {
	cc := dial(t)
	ctx := context.Background()
	info, err := agentv1.NewAgentServiceClient(cc).GetInfo(ctx, &agentv1.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetNode() != "n1" || info.GetVersion() != "v-test" || info.GetPid() == 0 {
		t.Errorf("info %v", info)
	}
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: agentv1.AgentService_ServiceDesc.ServiceName})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health %v %v", h, err)
	}
	refl, err := grpc_reflection_v1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		found = found || s.GetName() == "labctl.agent.v1.AgentService"
	}
	if !found {
		t.Errorf("reflection does not list AgentService: %v", resp)
	}
}

func TestRunRoleErrors(t *testing.T) {
	c := agentv1.NewAgentServiceClient(dial(t))
	tests := []struct {
		name  string
		req   *agentv1.RunRoleRequest
		code  codes.Code
		field string
	}{
		{"unknown experiment", &agentv1.RunRoleRequest{Experiment: "nope", Role: "server"}, codes.NotFound, ""},
		{"unknown role", &agentv1.RunRoleRequest{Experiment: "rr", Role: "sender"}, codes.InvalidArgument, ""},
		{"parameter out of bounds", &agentv1.RunRoleRequest{Experiment: "rr", Role: "server",
			Step: &experimentv1.Step{Params: map[string]string{"size": "0"}}}, codes.InvalidArgument, "params.size"},
		{"bad peer address", &agentv1.RunRoleRequest{Experiment: "rr", Role: "client",
			Peers: map[string]string{"server": "nowhere"}}, codes.InvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := c.RunRole(context.Background(), tt.req)
			if err == nil {
				for err == nil {
					_, err = s.Recv()
				}
			}
			if err == io.EOF {
				t.Fatal("the call succeeded")
			}
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("code %v (%v), want %v", st.Code(), err, tt.code)
			}
			if tt.field == "" {
				return
			}
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 && br.GetFieldViolations()[0].GetField() == tt.field {
					return
				}
			}
			t.Errorf("no field violation for %s in %v", tt.field, st.Details())
		})
	}
}
