package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/labs"
	"github.com/labctl/labctl/netns/cni"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/runs"
	"github.com/labctl/labctl/services/lab"
)

// maxMessage allows results with many steps and their histograms.
const maxMessage = 64 << 20

// localServer builds the LabService of this host. Agents it starts export
// their spans where this labctl does.
func (g *globals) localServer() *lab.Server {
	host := labs.DefaultHost(version)
	host.OTLPEndpoint, host.TraceDir = g.otlpEndpoint, traceDir()
	if g.cniPath != "" {
		host.CNIPath = filepath.SplitList(g.cniPath) // else labs.Host's default
	}
	return &lab.Server{
		Host:         host,
		Runner:       &runs.Runner{Registry: all.Registry(), Store: &runs.Store{Dir: host.ResultsDir()}, Version: version},
		AgentOptions: []grpc.DialOption{clientTracing()},
	}
}

// cniPaths is where cni links' plugins are looked up.
func (g *globals) cniPaths() []string {
	if g.cniPath != "" {
		return filepath.SplitList(g.cniPath)
	}
	return cni.DefaultPath()
}

// connect returns a LabService client: the remote one of --server, or this
// host's served in-process, so that every command takes the same path
// through the API whether it runs here or elsewhere.
func (g *globals) connect(ctx context.Context) (labv1.LabServiceClient, func(), error) {
	if g.server != "" {
		return g.remote(ctx)
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage), serverTracing())
	labv1.RegisterLabServiceServer(srv, g.localServer())
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///local", append(propagation(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
	if err != nil {
		srv.Stop()
		return nil, nil, fmt.Errorf("in-process lab service: %w", err)
	}
	return labv1.NewLabServiceClient(cc), func() { cc.Close(); srv.Stop() }, nil
}
