package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// tlsEnv is a server node whose agent API is served over TLS on 127.0.0.1, agents authenticated by
// their SVIDs (agentapi.TLSAgentAuth), everything on a clock the test moves.
type tlsEnv struct {
	*env
	clock *manualClock
	addr  string
}

func newTLSEnv(tb testing.TB) *tlsEnv { return newTLSEnvWith(tb, nil) }

// newTLSEnvWith is newTLSEnv with mod, if not nil, applied to the server's configuration.
func newTLSEnvWith(tb testing.TB, mod func(*Config)) *tlsEnv {
	tb.Helper()
	clock := newManualClock()
	e := newEnvConfig(tb, func(c *Config) {
		c.Clock, c.AgentAuth = clock.now, agentapi.TLSAgentAuth(c.Store, clock.now)
		if mod != nil {
			mod(c)
		}
	}, nil)
	conf, err := e.srv.AgentTLSConfig(testCtx(tb))
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(conf)))
	agentv1.RegisterAgentServer(g, e.srv.Agent)
	go func() { _ = g.Serve(lis) }()
	tb.Cleanup(g.Stop)
	return &tlsEnv{env: e, clock: clock, addr: lis.Addr().String()}
}

// clientTLS is an agent's TLS configuration: the server verified against the bundle, and svid (if not
// nil) presented.
func (e *env) clientTLS(svid *x509svid.SVID) *tls.Config {
	bundle := x509bundle.FromX509Authorities(testTD, e.st.Bundle().X509Authorities)
	if svid == nil {
		return tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeAny())
	}
	return tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeAny())
}

// dial returns an agent API client on one connection presenting svid (nil: none).
func (e *tlsEnv) dial(tb testing.TB, svid *x509svid.SVID) agentv1.AgentClient {
	tb.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(e.clientTLS(svid))))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return agentv1.NewAgentClient(conn)
}

// attest attests a new agent of owner alice with a join token and returns its SVID.
func (e *tlsEnv) attest(tb testing.TB) *x509svid.SVID {
	tb.Helper()
	_, tok := e.joinToken(tb, "alice", "")
	key := newP256(tb)
	resp, err := e.dial(tb, nil).AttestAgent(testCtx(tb), &agentv1.AttestAgentRequest{JoinToken: tok, Csr: csrFor(tb, key, nil)})
	if err != nil {
		tb.Fatalf("AttestAgent: %v", err)
	}
	cert, err := x509.ParseCertificate(resp.SvidChain[0])
	if err != nil {
		tb.Fatal(err)
	}
	return &x509svid.SVID{ID: spiffeid.RequireFromString(resp.SpiffeId), Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// A connection opened while the agent SVID was valid is refused on every call, renewal included, and
// on its sync stream's next round, once the SVID has expired by the server's clock.
func TestExpiredAgentSVIDRefusedOnHeldConnection(t *testing.T) {
	e := newTLSEnv(t)
	e.owner(t, "alice")
	svid := e.attest(t)
	ent := e.entry(t, "spiffe://example.org/web", svid.ID, "alice", nil)
	client := e.dial(t, svid)
	if _, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID)); err != nil {
		t.Fatalf("SignJWTSVID with a valid agent SVID: %v", err)
	}
	stream := syncStream(t, client, 0)
	if got := entryIDs(recvUpdate(t, stream)...); len(got) != 1 {
		t.Fatalf("first sync: %v", got)
	}

	e.clock.advance(svid.Certificates[0].NotAfter.Sub(e.clock.now()) + time.Second)
	wantExpired := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired at") {
			t.Fatalf("%s with an expired agent SVID on a held connection: %v; want PermissionDenied, expired", what, err)
		}
	}
	_, err := client.SignJWTSVID(testCtx(t), jwtRequest(ent.ID))
	wantExpired("SignJWTSVID", err)
	_, err = client.SignX509SVIDs(testCtx(t), &agentv1.SignX509SVIDsRequest{Requests: []*agentv1.X509SVIDRequest{{EntryId: ent.ID, Csr: csrFor(t, newP256(t), nil)}}})
	wantExpired("SignX509SVIDs", err)
	_, err = client.RenewAgent(testCtx(t), &agentv1.RenewAgentRequest{Csr: csrFor(t, newP256(t), nil)})
	wantExpired("RenewAgent", err)

	// A change wakes the held stream: its round authenticates again and ends it.
	e.entry(t, "spiffe://example.org/other", svid.ID, "alice", nil)
	for {
		_, err := stream.Recv()
		if err != nil {
			wantExpired("the sync stream's next round", err)
			break
		}
	}
}

// The server refuses renewal from an expired SVID even when the call was authenticated by other means.
func TestRenewalFromExpiredSVIDRefused(t *testing.T) {
	e := newTLSEnv(t)
	e.owner(t, "alice")
	svid := e.attest(t)
	svc, err := agentapi.NewAgentService(agentapi.AgentServiceConfig{Store: e.st, Issuer: e.srv.Issuer, TrustDomain: testTD,
		Authenticate: fixedAgent(agentapi.Caller{AgentID: svid.ID, NodeAttestation: agentapi.AttestationJoinToken}),
		Clock:        func() time.Time { return svid.Certificates[0].NotAfter.Add(time.Second) }, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := peerContext(testCtx(t), svid.Certificates[0])
	_, err = svc.RenewAgent(ctx, &agentv1.RenewAgentRequest{Csr: csrFor(t, newP256(t), nil)})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "renewal refused") {
		t.Fatalf("RenewAgent from an expired SVID: %v; want PermissionDenied", err)
	}
}

// A TLS 1.3 session resumed from a ticket goes through the server's verification again: a client
// certificate that was fine when the ticket was issued, and has expired by the server's clock since, is
// refused on the resumed connection. (crypto/tls skips VerifyPeerCertificate on resumption.)
func TestResumedTLSSessionIsVerifiedAgain(t *testing.T) {
	clock := newManualClock()
	e := newEnvConfig(t, func(c *Config) { c.Clock = clock.now }, nil)
	conf, err := e.srv.AgentTLSConfig(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if c.(*tls.Conn).HandshakeContext(context.Background()) == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()

	key := newP256(t)
	cert, err := e.ca.SignX509SVID(ca.X509SVIDParams{SPIFFEID: agentA, PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	clientConf := e.clientTLS(&x509svid.SVID{ID: agentA, Certificates: []*x509.Certificate{cert}, PrivateKey: key})
	clientConf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	dial := func() (resumed bool, err error) {
		d := tls.Dialer{Config: clientConf}
		c, err := d.DialContext(testCtx(t), "tcp", lis.Addr().String())
		if err != nil {
			return false, err
		}
		defer c.Close()
		_, err = io.ReadFull(c, make([]byte, 2))
		return c.(*tls.Conn).ConnectionState().DidResume, err
	}
	if resumed, err := dial(); err != nil || resumed {
		t.Fatalf("first connection: resumed %v, %v", resumed, err)
	}
	if resumed, err := dial(); err != nil || !resumed {
		t.Fatalf("second connection with a valid certificate: resumed %v, %v; want a resumed session", resumed, err)
	}
	clock.advance(cert.NotAfter.Sub(clock.now()) + time.Second)
	resumed, err := dial()
	if !resumed {
		t.Fatalf("third connection not resumed (%v): the test must exercise resumption", err)
	}
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("resumed session with a certificate expired by the server's clock: %v; want a bad certificate alert", err)
	}
}

// Agent API connections are sent GOAWAY after half the agent SVID lifetime and closed a tenth of it
// later, long-lived sync streams included.
func TestAgentConnectionsHaveAMaximumAge(t *testing.T) {
	if p := agentapi.AgentServerParameters(0); p.MaxConnectionAge != agentapi.DefaultAgentSVIDTTL/2 || p.MaxConnectionAgeGrace != agentapi.DefaultAgentSVIDTTL/10 {
		t.Fatalf("default parameters %+v", p)
	}
	e := newEnv(t)
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(grpc.KeepaliveParams(agentapi.AgentServerParameters(2 * time.Second)))
	agentv1.RegisterAgentServer(g, e.srv.Agent)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream := syncStream(t, agentv1.NewAgentClient(conn), 0)
	recvUpdate(t, stream)
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.Unavailable || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sync stream past the connection's maximum age: %v; want it closed (Unavailable)", err)
	}
}

// peerContext is ctx as seen by a handler whose TLS peer presented cert.
func peerContext(ctx context.Context, cert *x509.Certificate) context.Context {
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}})
}

// The server's own TLS SVID is in the ledger like every credential: a lookup of the certificate an agent
// sees on the wire finds it, owned by Signet itself.
func TestServerTLSCertIsInTheLedger(t *testing.T) {
	e := newTLSEnv(t)
	d := tls.Dialer{Config: e.clientTLS(nil)}
	c, err := d.DialContext(testCtx(t), "tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.(*tls.Conn).ConnectionState().PeerCertificates[0]
	c.Close()
	resp, err := e.srv.Admin.LookupCredential(testCtx(t), &adminv1.LookupCredentialRequest{
		Data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})})
	if err != nil {
		t.Fatal(err)
	}
	want := issuer.ServerID(testTD).String() + "/" + e.st.NodeID()
	if !resp.Known || !resp.ValidNow || resp.Issuance.GetOwner() != issuer.SystemOwner || resp.SpiffeId != want {
		t.Fatalf("lookup of the server's TLS certificate: %+v; want known, valid, %s, owned by %s", resp, want, issuer.SystemOwner)
	}
}

// A server TLS certificate whose ledger record cannot be committed is not used.
func TestServerTLSCertNotUsedUnrecorded(t *testing.T) {
	e := newEnv(t)
	e.stop() // the recorder with it
	if conf, err := e.srv.AgentTLSConfig(testCtx(t)); !errors.Is(err, issuer.ErrRecorderStopped) {
		t.Fatalf("ServerTLSConfig without a recorder: %v, %v; want ErrRecorderStopped", conf, err)
	}
}
