package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"log"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
)

// Role is what a token may do; each role may do everything the ones below
// it may.
type Role int

// Roles, from least to most.
const (
	// Viewer reads: status, labs, experiments, results, traces.
	Viewer Role = iota + 1
	// Runner also runs experiments on labs that are up.
	Runner
	// Admin also builds and removes labs.
	Admin
)

var roleNames = map[Role]string{Viewer: "viewer", Runner: "runner", Admin: "admin"}

func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (viewer, runner or admin)", s)
}

// MethodRoles is the least role of each LabService method. Health and
// reflection need a viewer's token: an unauthenticated caller learns
// nothing, not even what the server serves.
var MethodRoles = map[string]Role{
	labv1.LabService_GetStatus_FullMethodName:       Viewer,
	labv1.LabService_ListLabs_FullMethodName:        Viewer,
	labv1.LabService_ListExperiments_FullMethodName: Viewer,
	labv1.LabService_ListResults_FullMethodName:     Viewer,
	labv1.LabService_GetResult_FullMethodName:       Viewer,
	labv1.LabService_GetTrace_FullMethodName:        Viewer,
	labv1.LabService_CompareResults_FullMethodName:  Viewer,
	labv1.LabService_GetReport_FullMethodName:       Viewer,
	labv1.LabService_ImportResult_FullMethodName:    Runner,
	labv1.LabService_Run_FullMethodName:             Runner,
	labv1.LabService_CancelRun_FullMethodName:       Runner,
	labv1.LabService_WatchDrops_FullMethodName:      Runner,
	labv1.LabService_Up_FullMethodName:              Admin,
	labv1.LabService_Down_FullMethodName:            Admin,
}

// methodRole is the least role of method: Admin for a method the table does
// not name, so that a method added without a role is closed, not open.
func methodRole(method string) Role {
	if r, ok := MethodRoles[method]; ok {
		return r
	}
	if strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.") {
		return Viewer
	}
	return Admin
}

// Token is one caller of the served API: a name to log and trace, a role,
// and the secret it authenticates with.
type Token struct {
	Name   string
	Role   Role
	secret string
}

// Secret is what the token's holder sends (for a client's own token file).
func (t Token) Secret() string { return t.secret }

// MinSecret is the shortest secret accepted (128 bits as hex is 32).
const MinSecret = 16

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ParseTokens reads a token file. Each line that is not blank or a #
// comment is NAME ROLE SECRET; a file of a single bare secret (the format
// of earlier versions) is one admin token named "default". file names the
// file in errors.
//
//	# name   role    secret
//	alice    admin   6Z1kq...
//	ci       runner  Qm9v...
//	grafana  viewer  cGxh...
func ParseTokens(file string, data []byte) ([]Token, error) {
	var out []Token
	names, secrets := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	var bare []int
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		var tok Token
		switch len(f) {
		case 1:
			bare = append(bare, line)
			tok = Token{Name: "default", Role: Admin, secret: f[0]}
		case 3:
			r, err := ParseRole(f[1])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", file, line, err)
			}
			if !tokenName.MatchString(f[0]) {
				return nil, fmt.Errorf("%s:%d: token name %q: use letters, digits and . _ @ - (at most 64)", file, line, f[0])
			}
			tok = Token{Name: f[0], Role: r, secret: f[2]}
		default:
			return nil, fmt.Errorf("%s:%d: want NAME ROLE SECRET (or a file of one bare secret), got %d fields", file, line, len(f))
		}
		if len(tok.secret) < MinSecret {
			return nil, fmt.Errorf("%s:%d: the secret of %s is %d characters; use at least %d (head -c 32 /dev/urandom | base64)", file, line, tok.Name, len(tok.secret), MinSecret)
		}
		if prev, dup := names[tok.Name]; dup {
			return nil, fmt.Errorf("%s:%d: token name %s is also on line %d", file, line, tok.Name, prev)
		}
		if prev, dup := secrets[tok.secret]; dup {
			return nil, fmt.Errorf("%s:%d: the secret is also on line %d", file, line, prev)
		}
		names[tok.Name], secrets[tok.secret] = line, line
		out = append(out, tok)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(bare) > 0 && len(out) > 1 {
		return nil, fmt.Errorf("%s:%d: a bare secret must be alone in its file; write NAME ROLE SECRET", file, bare[0])
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no token", file)
	}
	return out, nil
}

// Caller is who made a call, as Guard found it.
type Caller struct {
	Name string
	Role Role
}

type callerKey struct{}

// CallerOf returns the caller of a guarded call; ok is false for a call
// that was not guarded (the CLI's in-process service).
func CallerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(*call)
	if !ok {
		return Caller{}, false
	}
	return c.Caller, true
}

// call is what Guard keeps of one call: the caller, and the lab the handler
// found it is about (an up names its lab only inside the topology).
type call struct {
	Caller
	lab string
}

// noteLab tells the call's log line which lab the call was about.
func noteLab(ctx context.Context, lab string) {
	if c, ok := ctx.Value(callerKey{}).(*call); ok {
		c.lab = lab
	}
}

// Guard returns interceptors that authenticate every call by its bearer
// token, refuse it if the token's role is below the method's, and log it
// (token name, role, method, lab, outcome, time) to logger. The call's span
// carries the token's name, never its secret.
func Guard(tokens []Token, logger *log.Logger) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	admit := func(ctx context.Context, method string) (context.Context, *call, error) {
		tok, ok := authenticate(ctx, tokens)
		if !ok {
			return ctx, nil, status.Error(codes.Unauthenticated, "missing or wrong bearer token (labctl --token-file)")
		}
		c := &call{Caller: Caller{Name: tok.Name, Role: tok.Role}}
		trace.SpanFromContext(ctx).SetAttributes(attribute.String("labctl.caller", tok.Name), attribute.String("labctl.caller.role", tok.Role.String()))
		if need := methodRole(method); tok.Role < need {
			return ctx, c, status.Errorf(codes.PermissionDenied, "%s needs the %s role; token %s is a %s", shortMethod(method), need, tok.Name, tok.Role)
		}
		return context.WithValue(ctx, callerKey{}, c), c, nil
	}
	logCall := func(c *call, method string, req any, start time.Time, err error) {
		who := "unauthenticated"
		if c != nil {
			who = c.Name + " (" + c.Role.String() + ")"
		}
		lab := ""
		if c != nil && c.lab != "" {
			lab = " lab " + c.lab
		} else if r, ok := req.(interface{ GetLab() string }); ok && r.GetLab() != "" {
			lab = " lab " + r.GetLab()
		}
		st := status.Convert(err)
		outcome := st.Code().String()
		if err != nil {
			outcome += ": " + st.Message()
		}
		logger.Printf("%s %s%s: %s (%v)", who, shortMethod(method), lab, outcome, time.Since(start).Round(time.Millisecond))
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		ctx, c, err := admit(ctx, info.FullMethod)
		if err == nil {
			resp, err = handler(ctx, req)
		}
		logCall(c, info.FullMethod, req, start, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		ctx, c, err := admit(ss.Context(), info.FullMethod)
		w := &peekStream{ServerStream: ss, ctx: ctx}
		if err == nil {
			err = handler(srv, w)
		}
		logCall(c, info.FullMethod, w.first, start, err)
		return err
	}
	return unary, stream
}

// authenticate finds the token the call carries. Every secret is compared
// in constant time, and all of them each time, so that neither a prefix of
// a secret nor which token matched leaks through timing.
func authenticate(ctx context.Context, tokens []Token) (Token, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	var found Token
	ok := false
	for _, v := range md.Get("authorization") {
		got, bearer := strings.CutPrefix(v, "Bearer ")
		if !bearer {
			continue
		}
		for _, t := range tokens {
			if subtle.ConstantTimeCompare([]byte(got), []byte(t.secret)) == 1 {
				found, ok = t, true
			}
		}
	}
	return found, ok
}

// peekStream gives a handler the guarded context, and keeps the first
// message it receives for the log (the request of a server stream).
type peekStream struct {
	grpc.ServerStream
	ctx   context.Context
	first any
}

func (s *peekStream) Context() context.Context { return s.ctx }

func (s *peekStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.first == nil {
		s.first = m
	}
	return err
}

// shortMethod is a method without its package: LabService/Up.
func shortMethod(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[i+1:]
	}
	return full
}
