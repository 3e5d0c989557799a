package lab

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/labctl/labctl/experiments/all"
	"github.com/labctl/labctl/labs"
	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/runs"
)

func TestParseTokens(t *testing.T) {
	const s1, s2, s3 = "0123456789abcdef0", "fedcba98765432100", "aaaaaaaaaaaaaaaaaaaa"
	good := []struct {
		name, file string
		want       []Token
	}{
		{"a bare secret, as earlier versions had it", s1 + "\n", []Token{{Name: "default", Role: Admin, secret: s1}}},
		{"names and roles, comments and blanks", "# name role secret\n\nalice admin " + s1 + "\n  ci runner " + s2 + "  \ngrafana viewer " + s3 + "\n",
			[]Token{{"alice", Admin, s1}, {"ci", Runner, s2}, {"grafana", Viewer, s3}}},
	}
	for _, tt := range good {
		got, err := ParseTokens("tokens", []byte(tt.file))
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("%s: %v, %v", tt.name, got, err)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: token %d is %+v, want %+v", tt.name, i, got[i], tt.want[i])
			}
		}
	}
	bad := []struct{ name, file, err string }{
		{"empty", "# nothing\n", "tokens: no token"},
		{"a short secret", "alice admin short\n", "tokens:1: the secret of alice is 5 characters"},
		{"an unknown role", "alice root " + s1 + "\n", `tokens:1: unknown role "root"`},
		{"two fields", "alice " + s1 + "\n", "tokens:1: want NAME ROLE SECRET"},
		{"a name twice", "a admin " + s1 + "\na viewer " + s2 + "\n", "tokens:2: token name a is also on line 1"},
		{"a secret twice", "a admin " + s1 + "\nb viewer " + s1 + "\n", "tokens:2: the secret is also on line 1"},
		{"a bare secret among others", s1 + "\nb viewer " + s2 + "\n", "tokens:1: a bare secret must be alone"},
		{"a bad name", "a/b admin " + s1 + "\n", `tokens:1: token name "a/b"`},
	}
	for _, tt := range bad {
		if _, err := ParseTokens("tokens", []byte(tt.file)); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.err)
		}
	}
}

// TestEveryMethodHasARole: a method added to LabService without a role in
// MethodRoles would be admin-only by default; the table must name it.
func TestEveryMethodHasARole(t *testing.T) {
	sd := labv1.LabService_ServiceDesc
	var names []string
	for _, m := range sd.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range sd.Streams {
		names = append(names, s.StreamName)
	}
	for _, n := range names {
		if _, ok := MethodRoles["/"+sd.ServiceName+"/"+n]; !ok {
			t.Errorf("LabService/%s has no role in MethodRoles", n)
		}
	}
	if len(names) != len(MethodRoles) {
		t.Errorf("MethodRoles has %d methods, LabService %d", len(MethodRoles), len(names))
	}
}

// servedTLS starts a guarded LabService on loopback TCP with TLS, as labctl
// serve runs it, and returns a connection to it that trusts its
// certificate, and the server's log.
func servedTLS(t *testing.T, tokens []Token, policy *Policy, host *labs.Host) (*grpc.ClientConn, *bytes.Buffer) {
	t.Helper()
	cert, pool := selfSigned(t)
	var logs bytes.Buffer
	unary, stream := Guard(tokens, log.New(&logs, "", 0))
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})),
		grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	labv1.RegisterLabServiceServer(srv, &Server{Host: host, Policy: policy,
		Runner: &runs.Runner{Registry: all.Registry(), Store: &runs.Store{Dir: host.ResultsDir()}, Version: "test"}})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return cc, &logs
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "labctl test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

var roleTokens = []Token{{"v", Viewer, "viewer-secret-0123456789"}, {"r", Runner, "runner-secret-0123456789"}, {"a", Admin, "admin-secret-01234567890"}}

func withToken(secret string) context.Context {
	return metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+secret))
}

// TestRolesGetExactlyTheirMethods calls every method with every role over
// TLS: a role below the method's is PermissionDenied naming the role
// needed; one at or above it reaches the method, which answers for itself
// (NotFound, InvalidArgument: nothing here exists, and nothing is changed).
func TestRolesGetExactlyTheirMethods(t *testing.T) {
	host := &labs.Host{StateDir: t.TempDir(), RunDir: t.TempDir(), Version: "test"}
	cc, logs := servedTLS(t, roleTokens, &Policy{}, host)
	c := labv1.NewLabServiceClient(cc)
	calls := map[string]func(ctx context.Context) error{
		labv1.LabService_GetStatus_FullMethodName: func(ctx context.Context) error {
			_, err := c.GetStatus(ctx, &labv1.GetStatusRequest{Lab: "nope"})
			return err
		},
		labv1.LabService_ListLabs_FullMethodName: func(ctx context.Context) error {
			_, err := c.ListLabs(ctx, &labv1.ListLabsRequest{})
			return err
		},
		labv1.LabService_ListExperiments_FullMethodName: func(ctx context.Context) error {
			_, err := c.ListExperiments(ctx, &labv1.ListExperimentsRequest{})
			return err
		},
		labv1.LabService_ListResults_FullMethodName: func(ctx context.Context) error {
			_, err := c.ListResults(ctx, &labv1.ListResultsRequest{})
			return err
		},
		labv1.LabService_GetResult_FullMethodName: func(ctx context.Context) error {
			_, err := c.GetResult(ctx, &labv1.GetResultRequest{Id: "20990101-000000-rr-0000"})
			return err
		},
		labv1.LabService_GetTrace_FullMethodName: func(ctx context.Context) error {
			_, err := c.GetTrace(ctx, &labv1.GetTraceRequest{Id: "nope"})
			return err
		},
		labv1.LabService_CompareResults_FullMethodName: func(ctx context.Context) error {
			_, err := c.CompareResults(ctx, &labv1.CompareResultsRequest{A: "20990101-000000-rr-0000", B: "20990101-000000-rr-0001"})
			return err
		},
		labv1.LabService_GetReport_FullMethodName: func(ctx context.Context) error {
			_, err := c.GetReport(ctx, &labv1.GetReportRequest{Ids: []string{"20990101-000000-rr-0000"}})
			return err
		},
		labv1.LabService_ImportResult_FullMethodName: func(ctx context.Context) error {
			_, err := c.ImportResult(ctx, &labv1.ImportResultRequest{Source: "r.json", Result: []byte("{")})
			return err
		},
		labv1.LabService_Run_FullMethodName: func(ctx context.Context) error {
			s, err := c.Run(ctx, &labv1.RunRequest{Lab: "nope", Experiment: "rr"})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		},
		labv1.LabService_CancelRun_FullMethodName: func(ctx context.Context) error {
			_, err := c.CancelRun(ctx, &labv1.CancelRunRequest{RunId: "nope"})
			return err
		},
		labv1.LabService_WatchDrops_FullMethodName: func(ctx context.Context) error {
			s, err := c.WatchDrops(ctx, &labv1.WatchDropsRequest{Lab: "nope"})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		},
		labv1.LabService_Up_FullMethodName: func(ctx context.Context) error {
			s, err := c.Up(ctx, &labv1.UpRequest{Source: "t.yaml", Topology: []byte("name: x\nnodes: {}\n")})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		},
		labv1.LabService_Down_FullMethodName: func(ctx context.Context) error {
			s, err := c.Down(ctx, &labv1.DownRequest{Lab: "Not A Name"})
			if err != nil {
				return err
			}
			return drain(s.Recv)
		},
	}
	if len(calls) != len(MethodRoles) {
		t.Fatalf("the test calls %d methods, LabService has %d", len(calls), len(MethodRoles))
	}
	for method, need := range MethodRoles {
		for _, tok := range roleTokens {
			err := calls[method](withToken(tok.secret))
			code := status.Code(err)
			if tok.Role < need {
				if code != codes.PermissionDenied || !strings.Contains(err.Error(), "needs the "+need.String()+" role") {
					t.Errorf("%s as %s: %v; want PermissionDenied naming %s", shortMethod(method), tok.Role, err, need)
				}
				continue
			}
			if code == codes.PermissionDenied || code == codes.Unauthenticated {
				t.Errorf("%s as %s: refused: %v", shortMethod(method), tok.Role, err)
			}
		}
		if err := calls[method](context.Background()); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s without a token: %v", shortMethod(method), err)
		}
		if err := calls[method](withToken("not-a-token-of-this-server")); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s with a wrong token: %v", shortMethod(method), err)
		}
	}
	// Health needs a token too, a viewer's.
	h := healthpb.NewHealthClient(cc)
	if _, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("health without a token: %v", err)
	}
	if _, err := h.Check(withToken(roleTokens[0].secret), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health as a viewer: %v", err)
	}
	// Nothing was made: the calls that reached their method were refused
	// by it.
	if entries, _ := os.ReadDir(filepath.Join(host.StateDir, "labs")); len(entries) != 0 {
		t.Errorf("state left: %v", entries)
	}
	// Every call is logged with its token's name, never its secret.
	out := logs.String()
	for _, want := range []string{"a (admin) LabService/Up", "v (viewer) LabService/Up: PermissionDenied", "unauthenticated LabService/ListLabs: Unauthenticated", "lab nope"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	for _, tok := range roleTokens {
		if strings.Contains(out, tok.secret) {
			t.Errorf("the log holds %s's secret", tok.Name)
		}
	}
}
