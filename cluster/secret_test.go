package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/proto/clusterv1"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestJoinWithoutTheSecretIsRefused: a server with another join secret, one with none, and a bare
// client presenting its own certificate without a proof are all refused by the leader, and the
// cluster's bundle and membership stay as they were; a single server without a secret accepts no one.
func TestJoinWithoutTheSecretIsRefused(t *testing.T) {
	nodes, addrs, _ := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	var leader *testNode
	for _, n := range nodes {
		if n.st.IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	before := len(leader.st.Bundle().X509Authorities)

	wrong := startNode(t, listen(t), "", 0, nil, writeSecret(t))
	_, _, err := wrong.node.Join(ctx, addrs[0])
	if !errors.Is(err, cluster.ErrPeerRefused) || !strings.Contains(err.Error(), "join secret does not match raft.join_secret_file of the cluster") {
		t.Fatalf("join with another secret: %v", err)
	}
	none := startNode(t, listen(t), "", 0, nil, nil)
	if _, _, err := none.node.Join(ctx, addrs[0]); !errors.Is(err, cluster.ErrNoJoinSecret) || !strings.Contains(err.Error(), "raft.join_secret_file") {
		t.Fatalf("join without a secret: %v", err)
	}
	if _, err := none.admin.Join(ctx, &clusterv1.AdminJoinRequest{Address: addrs[0]}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("admin join without a secret: %v", err)
	}

	// A bare client: its own CA's certificate, no proof; the leader says PermissionDenied.
	if _, err := joinWithoutProof(ctx, t, leader.mux.Addr().String()); status.Code(err) != codes.PermissionDenied ||
		!strings.Contains(err.Error(), "join secret does not match raft.join_secret_file of the cluster") {
		t.Fatalf("join without a proof: %v", err)
	}

	if err := leader.st.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	if after := len(leader.st.Bundle().X509Authorities); after != before {
		t.Fatalf("%d X.509 authorities after refused joins, %d before", after, before)
	}
	if m, err := leader.st.Members(); err != nil || len(m) != 3 {
		t.Fatalf("members after refused joins: %v, %v", m, err)
	}

	lone := startNode(t, listen(t), "", 1, nil, nil)
	if err := lone.st.BootstrapCluster([]storage.Member{{ID: lone.st.NodeID(), Address: lone.st.Address(), Voter: true}}); err != nil {
		t.Fatal(err) // raft.bootstrap: true
	}
	waitReady(t, lone)
	joiner := startNode(t, listen(t), "", 0, nil, writeSecret(t))
	if _, _, err := joiner.node.Join(ctx, lone.mux.Addr().String()); err == nil || !strings.Contains(err.Error(), "this server has no raft.join_secret_file: it accepts no servers") {
		t.Fatalf("join of a server without a secret: %v", err)
	}
	if got := len(lone.st.Bundle().X509Authorities); got != 1 {
		t.Fatalf("%d X.509 authorities on the lone server after a refused join, want 1", got)
	}
}

// joinWithoutProof calls Join on addr as a host that reaches the port but lacks the secret would:
// presenting a certificate of its own CA and its authority, with no join proof.
func joinWithoutProof(ctx context.Context, t *testing.T, addr string) (*clusterv1.JoinResponse, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return dialCluster(t, addr, &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}).Join(ctx, &clusterv1.JoinRequest{NodeId: "mallory", Address: "127.0.0.1:1", TrustDomain: td.Name(),
		ClusterId: cluster.DefaultClusterID, X509Authority: der, JwtAuthority: pub, JwtKeyId: "k", CommandVersion: storage.CommandVersion},
		grpc.WaitForReady(true))
}

// TestReadJoinSecretFile: the secret file must be a private regular file with enough secret; each
// refusal names the file (and the fix), never the content.
func TestReadJoinSecretFile(t *testing.T) {
	dir := t.TempDir()
	good := "  " + strings.Repeat("k", cluster.MinJoinSecretBytes) + "\n"
	write := func(name, content string, mode os.FileMode) string {
		return testkit.WriteFileMode(t, dir, name, content, mode)
	}
	ok := write("ok.secret", good, 0o600)
	secret, err := cluster.ReadJoinSecretFile(ok)
	if err != nil || string(secret) != strings.TrimSpace(good) {
		t.Fatalf("good secret file: %q, %v", secret, err)
	}
	link := filepath.Join(dir, "link.secret")
	if err := os.Symlink(ok, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"readable by others", write("open.secret", good, 0o644), []string{"open.secret", "0644", "chmod 600"}},
		{"too short", write("short.secret", "  short secret  \n", 0o600), []string{"short.secret", "at least 32"}},
		{"too long", write("long.secret", strings.Repeat("k", cluster.MaxJoinSecretBytes+1), 0o600), []string{"long.secret", "over 4096"}},
		{"symlink", link, []string{"link.secret", "symlink"}},
		{"directory", dir, []string{dir, "not a regular file"}},
		{"missing", filepath.Join(dir, "nope"), []string{"nope", "no such file"}},
	} {
		_, err := cluster.ReadJoinSecretFile(tc.path)
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", tc.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "kkkk") || strings.Contains(err.Error(), "short secret") {
			t.Errorf("%s: the error shows the secret: %v", tc.name, err)
		}
	}
}

// TestJoinWarnsOfAnotherIssuer: a server that signs JWT-SVIDs with another oidc.issuer than the leader
// still joins (so a rolling restart can change the issuer), and both sides log a warning naming the two
// issuers; a server with the same issuer joins without one.
func TestJoinWarnsOfAnotherIssuer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testkit.Deadline)
	defer cancel()
	secret := writeSecret(t)
	logOf := func(buf *testkit.SyncBuffer) *slog.Logger { return testkit.LoggerTo(t, buf) }
	leaderLog, sameLog, otherLog := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	leader := startNodeWith(t, listen(t), nodeOptions{expect: 1, secret: secret, jwtIssuer: "https://oidc.example.org", log: logOf(leaderLog)})
	if err := leader.st.BootstrapCluster([]storage.Member{{ID: leader.st.NodeID(), Address: leader.st.Address(), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, leader)
	const warning = "another server signs JWT-SVIDs with another oidc.issuer: set the same oidc.issuer on every server"

	same := startNodeWith(t, listen(t), nodeOptions{secret: secret, jwtIssuer: "https://oidc.example.org", log: logOf(sameLog)})
	if _, _, err := same.node.Join(ctx, leader.mux.Addr().String()); err != nil {
		t.Fatalf("join with the same issuer: %v", err)
	}
	waitReady(t, same)
	other := startNodeWith(t, listen(t), nodeOptions{secret: secret, jwtIssuer: "https://other.example.org", log: logOf(otherLog)})
	if _, _, err := other.node.Join(ctx, leader.mux.Addr().String()); err != nil {
		t.Fatalf("join with another issuer: %v, want it joined (with a warning)", err)
	}
	waitReady(t, other)
	if strings.Contains(sameLog.String(), warning) || strings.Count(leaderLog.String(), warning) != 1 {
		t.Errorf("the leader warned %d times (want once, for the other issuer); the server with the same issuer warned: %v\nleader log:\n%s",
			strings.Count(leaderLog.String(), warning), strings.Contains(sameLog.String(), warning), leaderLog)
	}
	for name, buf := range map[string]*testkit.SyncBuffer{"leader": leaderLog, "joiner": otherLog} {
		got := buf.String()
		if !strings.Contains(got, warning) || !strings.Contains(got, "https://oidc.example.org") || !strings.Contains(got, "https://other.example.org") {
			t.Errorf("%s log does not warn naming both issuers:\n%s", name, got)
		}
	}
}
