package lab

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/labctl/labctl/internal/fault"
	"github.com/labctl/labctl/internal/pktpath"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/topologies"
)

// dropsEvery is how often WatchDrops sends what the kernel dropped.
const dropsEvery = 100 * time.Millisecond

// WatchDrops streams the drops of a lab's traffic until the caller goes:
// a packet tracer that samples nothing and reports every drop of the
// lab's namespaces (or one node's), each also a span of the call's trace.
func (s *Server) WatchDrops(req *labv1.WatchDropsRequest, stream labv1.LabService_WatchDropsServer) error {
	if err := topologies.CheckName(req.GetLab()); err != nil {
		return status.Errorf(grpccodes.InvalidArgument, "lab %v", err)
	}
	plan, err := s.Host.Plan(req.GetLab())
	if err != nil {
		return statusOf(err)
	}
	nss := map[string]string{}
	for _, ns := range plan.Namespaces() {
		if node, _ := plan.NodeOf(ns); req.GetNode() == "" || node == req.GetNode() {
			nss[ns] = node
		}
	}
	if len(nss) == 0 {
		return statusOf(fault.New(fault.NotFound, "lab %s has no node %q", req.GetLab(), req.GetNode()))
	}
	t, err := pktpath.Start(pktpath.Options{Namespaces: nss})
	if err != nil {
		return statusOf(fault.New(fault.Precondition, "watch drops in lab %s: %w", req.GetLab(), err))
	}
	defer t.Close()
	ctx := stream.Context()
	tr := trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/labctl/labctl/services/lab")
	tick := time.NewTicker(dropsEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for _, d := range t.TakeDrops(time.Time{}, time.Now().Add(time.Hour)) {
			_, span := tr.Start(ctx, "drop", trace.WithTimestamp(d.Time), trace.WithAttributes(
				attribute.String("labctl.node", d.Node), attribute.String("network.transport", d.Proto),
				attribute.String("source.address", d.Src.String()), attribute.String("destination.address", d.Dst.String()),
				attribute.String("drop.reason", d.Reason), attribute.String("drop.location", d.Location)))
			span.SetStatus(codes.Error, "dropped: "+d.Reason)
			span.End(trace.WithTimestamp(d.Time))
			err := stream.Send(&labv1.WatchDropsResponse{Drop: &labv1.PacketDrop{Time: timestamppb.New(d.Time), Node: d.Node,
				Protocol: d.Proto, Source: d.Src.String(), Destination: d.Dst.String(), Reason: d.Reason, Location: d.Location}})
			if err != nil {
				return nil // the caller went away
			}
		}
	}
}
