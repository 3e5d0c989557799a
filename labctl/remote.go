package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	labv1 "github.com/labctl/labctl/proto/labctl/lab/v1"
	"github.com/labctl/labctl/services/lab"
)

// remoteFlags reach a LabService served by `labctl serve`.
type remoteFlags struct {
	tokenFile string
	tlsCA     string // CA that signed the server's certificate; enables TLS
	tlsCert   string // client certificate for mTLS
	tlsKey    string
}

// bearer sends the token with every call. It may travel without TLS only to
// a loopback address, which remote() checks before using it.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// readToken reads the secret a client sends: a file of one token, either a
// bare secret or one NAME ROLE SECRET line as serve's token file has them.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tokens, err := lab.ParseTokens(path, b)
	if err != nil {
		return "", err
	}
	if len(tokens) > 1 {
		return "", fmt.Errorf("token file %s holds %d tokens; a client sends one: give it a file with its own line", path, len(tokens))
	}
	return tokens[0].Secret(), nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// remote connects to the LabService at --server.
func (g *globals) remote(context.Context) (labv1.LabServiceClient, func(), error) {
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)), clientTracing()}
	if g.remoteFlags.tokenFile != "" {
		tok, err := readToken(g.remoteFlags.tokenFile)
		if err != nil {
			return nil, nil, usageError{err.Error()}
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(tok)))
	}
	if g.remoteFlags.tlsCA != "" || g.remoteFlags.tlsCert != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13}
		if g.remoteFlags.tlsCA != "" {
			pem, err := os.ReadFile(g.remoteFlags.tlsCA)
			if err != nil {
				return nil, nil, usageError{fmt.Sprintf("--server-ca: %v", err)}
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, nil, usagef("--server-ca %s holds no PEM certificate", g.remoteFlags.tlsCA)
			}
			cfg.RootCAs = pool
		}
		if g.remoteFlags.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(g.remoteFlags.tlsCert, g.remoteFlags.tlsKey)
			if err != nil {
				return nil, nil, usageError{fmt.Sprintf("--client-cert/--client-key: %v", err)}
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		if !isLoopback(g.server) && g.remoteFlags.tokenFile != "" {
			return nil, nil, usagef("refusing to send the token in clear text to %s: use --server-ca (the server needs TLS off loopback)", g.server)
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	cc, err := grpc.NewClient(g.server, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("--server %s: %w", g.server, err)
	}
	return labv1.NewLabServiceClient(cc), func() { cc.Close() }, nil
}
