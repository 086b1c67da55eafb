// Package testenv starts a real, in-process Signet server (single-node Raft store on disk, CA, server
// components) for tests and benchmarks of the packages that talk to one: agent, workloadapi, cmd. The
// agent API is served over an in-memory gRPC connection; nothing is mocked.
package testenv

import (
	"context"
	"github.com/signet-id/signet/attestor/jointoken"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/unix"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// TrustDomain is the trust domain of every test server.
var TrustDomain = spiffeid.RequireTrustDomainFromString("example.org")

// Env is a running server.
type Env struct {
	Store  *storage.Store
	CA     *ca.CA
	Server *server.Server
	lis    *bufconn.Listener
}

// agentHeader carries, on the in-memory connection only, which agent a client plays.
const agentHeader = "x-test-agent-id"

// New starts a server; it is stopped when the test ends.
func New(tb testing.TB) *Env { return NewWith(tb, nil) }

// NewWith is New with mod, if not nil, applied to the server's configuration (its issuance limits,
// say) before it starts.
func NewWith(tb testing.TB, mod func(*server.Config)) *Env {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := testkit.OpenStore(tb, log)
	authority := testkit.NewCA(tb, TrustDomain, 0)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	cfg := server.Config{Store: st, CA: authority, TrustDomain: TrustDomain, Logger: log, Selectors: Selectors(),
		AgentAuth: func(ctx context.Context) (agentapi.Caller, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			id := spiffeid.RequireFromString(md.Get(agentHeader)[0])
			return agentapi.Caller{AgentID: id, NodeAttestation: "test"}, nil
		},
		AdminAuth: func(context.Context) (string, error) { return "test", nil },
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Run(runCtx) }()
	if err := srv.PublishAuthorities(ctx); err != nil {
		tb.Fatal(err)
	}
	lis := bufconn.Listen(64 << 10) // allocated per connection and direction: keep it small
	g := grpc.NewServer()
	agentv1.RegisterAgentServer(g, srv.Agent)
	go g.Serve(lis)
	tb.Cleanup(func() {
		g.Stop()
		stop()
		<-done
	})
	return &Env{Store: st, CA: authority, Server: srv, lis: lis}
}

// AgentClient returns an agent API client that the server sees as agent agentID.
func (e *Env) AgentClient(tb testing.TB, agentID string) agentv1.AgentClient {
	tb.Helper()
	conn, err := grpc.NewClient("passthrough:///testenv",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, agentHeader, agentID), method, req, reply, cc, opts...)
		}),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, agentHeader, agentID), desc, cc, method, opts...)
		}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return agentv1.NewAgentClient(conn)
}

// Owner creates an owner.
func (e *Env) Owner(tb testing.TB, name string) {
	tb.Helper()
	if _, err := e.Store.EnsureOwner(context.Background(), storage.Owner{Name: name, CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
}

// Entries creates n entries parented to parentID, owned by owner (which must exist), with SPIFFE IDs
// prefix/<i> and the given selectors (the same for all), in batches; it returns their IDs.
func (e *Env) Entries(tb testing.TB, parentID, owner, prefix string, n int, sels ...string) []string {
	tb.Helper()
	parsed, err := selector.ParseAll(sels)
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for start := 0; start < n; start += 5000 {
		var batch []storage.Entry
		for i := start; i < min(n, start+5000); i++ {
			id, err := adminapi.NewEntryID()
			if err != nil {
				tb.Fatal(err)
			}
			batch = append(batch, storage.Entry{ID: id, SPIFFEID: prefix + "/" + strconv.Itoa(i), ParentID: parentID, Owner: owner,
				Purpose: "test", Selectors: parsed, X509TTL: time.Hour, JWTTTL: time.Hour, CreatedAt: time.Now()})
		}
		res, err := e.Store.CreateEntries(context.Background(), batch)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				tb.Fatal(r.Err)
			}
			ids = append(ids, r.Entry.ID)
		}
	}
	return ids
}

// Selectors is the selector registry of a server built with the unix workload attestor and join
// tokens. A registry of these fixed types cannot fail to build.
func Selectors() *selector.Registry {
	reg, err := selector.NewRegistry(unix.SelectorType(), jointoken.SelectorType())
	if err != nil {
		panic(err)
	}
	return reg
}
