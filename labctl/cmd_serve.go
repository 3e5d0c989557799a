package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"os"
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

// minToken is the shortest token serve accepts (128 bits as hex is 32).
const minToken = 16

func newServeCmd(g *globals) *cobra.Command {
	var listen, cert, key, clientCA string
	var maxRun time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the lab API to other machines (LabService over gRPC)",
		Long: `Serve exposes this host's labs over gRPC (LabService: up, down, status, run,
results), so that any labctl can use them with --server. Every call needs the
bearer token of --token-file. Off loopback, serve refuses to listen without TLS
(--tls-cert and --tls-key); --client-ca also requires client certificates.
Health and reflection are served behind the same token.

Make a token with: head -c 32 /dev/urandom | base64 > token`,
		Example: `  labctl serve --listen 127.0.0.1:7443 --token-file token
  labctl --server 127.0.0.1:7443 --token-file token run rr quickstart
  labctl serve --listen 0.0.0.0:7443 --token-file token --tls-cert srv.pem --tls-key srv.key --client-ca ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tokenFile := g.tokenFile
			if tokenFile == "" {
				return usagef("serve needs --token-file (every call must carry its token)")
			}
			token, err := readToken(tokenFile)
			if err != nil {
				return usageError{err.Error()}
			}
			if len(token) < minToken {
				return usagef("the token in %s is %d characters; use at least %d (head -c 32 /dev/urandom | base64)", tokenFile, len(token), minToken)
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
			unary, stream := lab.TokenAuth(token)
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
			labv1.RegisterLabServiceServer(srv, service)
			h := health.NewServer()
			healthpb.RegisterHealthServer(srv, h)
			reflection.Register(srv)
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			logger := log.New(os.Stderr, "serve: ", log.LstdFlags)
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
			logger.Printf("serving LabService on %s, %s, token from %s", lis.Addr(), mode, tokenFile)
			return srv.Serve(lis)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:7443", "address to listen on")
	f.StringVar(&cert, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&key, "tls-key", "", "server key (PEM)")
	f.StringVar(&clientCA, "client-ca", "", "CA of client certificates; requires mutual TLS")
	f.DurationVar(&maxRun, "max-run", time.Hour, "refuse runs whose estimated length is above this")
	return cmd
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
