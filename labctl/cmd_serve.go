package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/services/lab"
	"github.com/labctl/labctl/traces"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen, cert, key, clientCA string
	var maxRun time.Duration
	var policy lab.Policy
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the lab API to other machines (LabService over gRPC)",
		Long: `Serve exposes this host's labs over gRPC (LabService: up, down, status, run,
results), so that any labctl can use them with --server. Every call needs a
bearer token of --token-file, and the token's role decides what it may do:

  viewer  status, lists, results, traces
  runner  also run (and cancel its own runs) on labs that are up
  admin   also up and down (and cancel any run)

The token file holds one token per line, NAME ROLE SECRET (# starts a comment);
a file holding a single bare secret is one admin token, as in earlier versions.
Every call is logged to stderr with the token's name, the method, the lab and
the outcome; its span carries the token's name, never the secret.

Topologies that reach outside their lab are refused unless allowed here:
exec commands (they run as root on this host: --allow-exec) and host
interfaces (--allow-host-nic, only the ones named). --max-labs, --max-nodes and
--max-concurrent-runs bound what callers take (0: no bound).

Off loopback, serve refuses to listen without TLS (--tls-cert and --tls-key);
--client-ca also requires client certificates. Health and reflection are
served behind the same tokens. docs/serve.md explains running it safely.

Make a secret with: head -c 32 /dev/urandom | base64`,
		Example: `  printf 'me admin %s\n' "$(head -c 32 /dev/urandom | base64)" > tokens
  labctl serve --listen 127.0.0.1:7443 --token-file tokens
  labctl --server 127.0.0.1:7443 --token-file my-token run rr quickstart
  labctl serve --listen 0.0.0.0:7443 --token-file tokens --tls-cert srv.pem --tls-key srv.key --client-ca ca.pem \
      --max-labs 4 --max-nodes 64 --max-concurrent-runs 1 --allow-host-nic eth1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tokenFile := g.tokenFile
			if tokenFile == "" {
				return usagef("serve needs --token-file (every call must carry its token)")
			}
			data, err := os.ReadFile(tokenFile)
			if err != nil {
				return usagef("token file: %v", err)
			}
			tokens, err := lab.ParseTokens(tokenFile, data)
			if err != nil {
				return usageError{err.Error()}
			}
			for _, p := range []struct {
				flag string
				v    int
			}{{"--max-labs", policy.MaxLabs}, {"--max-nodes", policy.MaxNodes}, {"--max-concurrent-runs", policy.MaxRuns}} {
				if p.v < 0 {
					return usagef("%s %d: want 0 (no bound) or more", p.flag, p.v)
				}
			}
			if (cert == "") != (key == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			if clientCA != "" && cert == "" {
				return usagef("--client-ca needs TLS (--tls-cert and --tls-key)")
			}
			if cert == "" && !isLoopback(listen) {
				return usagef("refusing to serve %s without TLS: the token would cross the network in clear text; add --tls-cert and --tls-key, or listen on 127.0.0.1", listen)
			}
			p, err := g.tracing(cmd.Context(), "labctl")
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), traces.ShutdownTimeout+time.Second)
				defer cancel()
				_ = p.Shutdown(ctx)
			}()
			logger := log.New(os.Stderr, "serve: ", log.LstdFlags)
			unary, stream := lab.Guard(tokens, logger)
			opts := []grpc.ServerOption{serverTracing(), grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream),
				grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage)}
			if cert != "" {
				creds, err := serverTLS(cert, key, clientCA)
				if err != nil {
					return err
				}
				opts = append(opts, grpc.Creds(creds))
			}
			srv := grpc.NewServer(opts...)
			service := g.localServer()
			service.Runner.MaxRun = maxRun
			service.Policy = &policy
			labv1.RegisterLabServiceServer(srv, service)
			h := health.NewServer()
			healthpb.RegisterHealthServer(srv, h)
			reflection.Register(srv)
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			go func() {
				<-cmd.Context().Done()
				logger.Print("stopping")
				h.Shutdown()
				t := time.AfterFunc(5*time.Second, srv.Stop)
				srv.GracefulStop()
				t.Stop()
			}()
			mode := "plaintext (loopback only)"
			if cert != "" {
				mode = "TLS"
				if clientCA != "" {
					mode = "mutual TLS"
				}
			}
			logger.Printf("serving LabService on %s, %s, %d tokens from %s; %s", lis.Addr(), mode, len(tokens), tokenFile, describePolicy(&policy))
			return srv.Serve(lis)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:7443", "address to listen on")
	f.StringVar(&cert, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&key, "tls-key", "", "server key (PEM)")
	f.StringVar(&clientCA, "client-ca", "", "CA of client certificates; requires mutual TLS")
	f.DurationVar(&maxRun, "max-run", time.Hour, "refuse runs whose estimated length is above this")
	f.BoolVar(&policy.AllowExec, "allow-exec", false, "let topologies run exec commands (as root, on this host's filesystem)")
	f.BoolVar(&policy.AllowCNI, "allow-cni", false, "let topologies have cni links (their plugins run as root from this host's plugin path, inside the lab)")
	f.StringSliceVar(&policy.AllowHostNICs, "allow-host-nic", nil, "host interfaces that host-nic links may take (IF[,IF...])")
	f.IntVar(&policy.MaxLabs, "max-labs", 0, "labs up at once (0: no bound)")
	f.IntVar(&policy.MaxNodes, "max-nodes", 0, "nodes per lab (0: no bound)")
	f.IntVar(&policy.MaxRuns, "max-concurrent-runs", 0, "experiment runs at once (0: no bound)")
	return cmd
}

// describePolicy says what the server allows, for its first log line.
func describePolicy(p *lab.Policy) string {
	bound := func(n int) string {
		if n == 0 {
			return "unbounded"
		}
		return strconv.Itoa(n)
	}
	nics := "none"
	if len(p.AllowHostNICs) > 0 {
		nics = strings.Join(p.AllowHostNICs, ",")
	}
	allowed := map[bool]string{true: "allowed", false: "refused"}
	return fmt.Sprintf("exec %s, cni %s, host NICs %s, labs %s, nodes per lab %s, runs at once %s",
		allowed[p.AllowExec], allowed[p.AllowCNI], nics, bound(p.MaxLabs), bound(p.MaxNodes), bound(p.MaxRuns))
}

func serverTLS(cert, key, clientCA string) (credentials.TransportCredentials, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--tls-cert/--tls-key: %v", err)}
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--client-ca: %v", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--client-ca %s holds no PEM certificate", clientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}
