package peercred

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/procfs"
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
	if start, err := procfs.StartTime("/proc", int32(os.Getpid())); err != nil || got.StartTime != start {
		t.Errorf("peer start time = %d, want %d (%v)", got.StartTime, start, err)
	}
	if got.SecurityLevel != credentials.NoSecurity {
		t.Errorf("security level = %v, want NoSecurity", got.SecurityLevel)
	}
	if levelErr != nil {
		t.Errorf("CheckSecurityLevel(NoSecurity) = %v, want nil", levelErr)
	}
}

// connectEnv makes the test binary a child that connects to the Unix socket it names and exits.
const connectEnv = "SIGNET_PEERCRED_CONNECT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(connectEnv); sock != "" {
		c, err := net.Dial("unix", sock)
		if err != nil {
			os.Exit(3)
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHandshakeRefusesExitedPeer: a process that connected and was reaped before the handshake is
// refused, not reported under a pid that may already name another process.
func TestHandshakeRefusesExitedPeer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^$")
	child.Env = append(os.Environ(), connectEnv+"="+sock, "GORACE=atexit_sleep_ms=0")
	if err := child.Run(); err != nil { // connected, exited and reaped
		t.Fatalf("connecting child: %v", err)
	}
	conn, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, info, err := Credentials().ServerHandshake(conn)
	if err == nil {
		t.Fatalf("handshake with a reaped peer succeeded: %+v", info)
	}
	if want := fmt.Sprintf("pid %d", child.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the peer (%s)", err, want)
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
