package peercred

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// TestPeerCredentialsGRPC serves the health service with PeerCredentials on a Unix socket and
// checks that a handler sees this process as the peer.
func TestPeerCredentialsGRPC(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		got      Info
		gotOK    bool
		levelErr error
	)
	capture := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mu.Lock()
		got, gotOK = FromContext(ctx)
		if p, ok := peer.FromContext(ctx); ok {
			levelErr = credentials.CheckSecurityLevel(p.AuthInfo, credentials.NoSecurity)
		}
		mu.Unlock()
		return handler(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(Credentials()), grpc.UnaryInterceptor(capture))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-serveErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check status = %v, want SERVING", resp.GetStatus())
	}

	mu.Lock()
	defer mu.Unlock()
	if !gotOK {
		t.Fatal("FromContext found no Info in the handler's context")
	}
	if got.PID != int32(os.Getpid()) || got.UID != uint32(os.Getuid()) || got.GID != uint32(os.Getgid()) {
		t.Errorf("peer = pid %d uid %d gid %d, want pid %d uid %d gid %d",
			got.PID, got.UID, got.GID, os.Getpid(), os.Getuid(), os.Getgid())
	}
	if got.SecurityLevel != credentials.NoSecurity {
		t.Errorf("security level = %v, want NoSecurity", got.SecurityLevel)
	}
	if levelErr != nil {
		t.Errorf("CheckSecurityLevel(NoSecurity) = %v, want nil", levelErr)
	}
}

func TestPeerCredentialsNeedUnixConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := Credentials().ServerHandshake(a); err == nil {
		t.Error("ServerHandshake on a pipe succeeded, want an error")
	}
}

func TestPeerCredentialsClientHandshake(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := Credentials().ClientHandshake(context.Background(), "x", a); err == nil {
		t.Error("ClientHandshake succeeded, want an error: the credentials are server-only")
	}
}

func TestPeerCredentialsInfo(t *testing.T) {
	c := Credentials()
	if got := c.Info().SecurityProtocol; got != "signet-peercred" {
		t.Errorf("SecurityProtocol = %q", got)
	}
	if got := c.Clone().Info(); got != c.Info() {
		t.Errorf("Clone().Info() = %+v, want %+v", got, c.Info())
	}
	if err := c.OverrideServerName("example"); err != nil {
		t.Errorf("OverrideServerName: %v", err)
	}
	if got := (Info{}).AuthType(); got != "signet-peercred" {
		t.Errorf("AuthType = %q", got)
	}
}

func TestPeerInfoSecurityLevel(t *testing.T) {
	info := Info{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}
	if err := credentials.CheckSecurityLevel(info, credentials.NoSecurity); err != nil {
		t.Errorf("CheckSecurityLevel(NoSecurity) = %v", err)
	}
	if err := credentials.CheckSecurityLevel(info, credentials.PrivacyAndIntegrity); err == nil {
		t.Error("CheckSecurityLevel(PrivacyAndIntegrity) passed on a connection without transport security")
	}
}

func TestFromContextWithoutPeer(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Error("FromContext found a peer in an empty context")
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: nil})
	if _, ok := FromContext(ctx); ok {
		t.Error("FromContext found a Info in a peer without AuthInfo")
	}
	want := Info{PID: 7, UID: 8, GID: 9}
	ctx = peer.NewContext(context.Background(), &peer.Peer{AuthInfo: want})
	if got, ok := FromContext(ctx); !ok || got != want {
		t.Errorf("FromContext = %+v, %v, want %+v, true", got, ok, want)
	}
}
