package lab

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/topologies"
)

// Policy is what a served LabService lets its callers do beyond what their
// role allows, and how much. Locally root may do anything a topology says;
// a server building topologies for others allows a topology to reach
// outside its lab (commands run on the host, host interfaces) only where
// the operator said so, and bounds what callers may take. A nil Policy (the
// CLI's in-process service) allows everything.
type Policy struct {
	// AllowExec lets topologies run exec commands: they run as root on the
	// server's host filesystem.
	AllowExec bool
	// AllowCNI lets topologies have cni links: their plugins run as root
	// from the server's plugin path, inside the lab's namespaces.
	AllowCNI bool
	// AllowHostNICs are the host interfaces a host-nic link may take.
	AllowHostNICs []string
	// MaxLabs bounds the labs up at once, MaxNodes the nodes of one lab,
	// MaxRuns the runs at once; 0 leaves one unbounded.
	MaxLabs, MaxNodes, MaxRuns int
}

// checkReach refuses the parts of t that reach outside the lab without the
// operator's allowance: PermissionDenied, one line per refused part with
// its file:line:column, and the flag that would allow it.
func (p *Policy) checkReach(t *topologies.Topology) error {
	if p == nil {
		return nil
	}
	var refused []*topologies.Error
	for _, r := range t.Reaches() {
		var msg string
		switch r.Kind {
		case topologies.ReachExec:
			if !p.AllowExec {
				msg = fmt.Sprintf("exec runs %q as root on the server's host; this server does not allow exec (labctl serve --allow-exec)", r.What)
			}
		case topologies.ReachHostNIC:
			if !slices.Contains(p.AllowHostNICs, r.What) {
				allowed := "none"
				if len(p.AllowHostNICs) > 0 {
					allowed = strings.Join(p.AllowHostNICs, ", ")
				}
				msg = fmt.Sprintf("host interface %s is not one this server gives to labs (labctl serve --allow-host-nic; allowed: %s)", r.What, allowed)
			}
		case topologies.ReachCNI:
			if !p.AllowCNI {
				msg = "a cni link runs CNI plugins as root on the server's host (inside the lab's namespaces, from the server's plugin path); this server does not allow them (labctl serve --allow-cni)"
			}
		default:
			msg = fmt.Sprintf("%s reaches outside the lab and this server has no allowance for it", r.Kind)
		}
		if msg != "" {
			refused = append(refused, &topologies.Error{Pos: r.Pos, Field: r.Field, Msg: msg})
		}
	}
	if len(refused) == 0 {
		return nil
	}
	br := &errdetails.BadRequest{}
	for _, e := range refused {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: e.Field, Description: e.Error()})
	}
	st, err := status.New(codes.PermissionDenied, topologies.ErrorList(refused).Error()).WithDetails(br)
	if err != nil {
		return status.Error(codes.PermissionDenied, topologies.ErrorList(refused).Error())
	}
	return st.Err()
}

// checkNodes refuses a lab with more nodes than MaxNodes.
func (p *Policy) checkNodes(plan *topologies.Plan) error {
	if p == nil || p.MaxNodes <= 0 || len(plan.Nodes) <= p.MaxNodes {
		return nil
	}
	return status.Errorf(codes.ResourceExhausted, "lab %s has %d nodes; this server allows at most %d per lab (--max-nodes)", plan.Lab, len(plan.Nodes), p.MaxNodes)
}
