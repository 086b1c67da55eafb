package server

import (
	"crypto/x509"
	"testing"

	"github.com/signet-id/signet/cluster"
	"github.com/signet-id/signet/server/issuer"
)

// A server SVID signed for a joining node (ClusterIdentity.NewCertificate) is not recorded by signing:
// the leader's RegisterNode commits its ledger record, owned by signet, before the node may use it.
func TestRegisterNodeRecordsTheServerSVID(t *testing.T) {
	e := newEnv(t)
	ident, err := e.srv.ClusterIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ident.NewCertificate()
	if err != nil {
		t.Fatalf("NewCertificate: %v", err)
	}
	serial := cert.Leaf.SerialNumber.Text(16)
	if _, err := e.st.LookupIssuance(serial); err == nil {
		t.Fatal("the server SVID is in the ledger before the node registered")
	}
	root, jwtKey, kid := ident.Authorities()
	rootCert, err := x509.ParseCertificate(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := ident.RegisterNode(testCtx(t), cluster.NodeCredentials{NodeID: e.st.NodeID(), X509Authorities: []*x509.Certificate{rootCert}, X509NotAfter: rootCert.NotAfter,
		JWTKey: jwtKey, JWTKeyID: kid, SVID: cert.Leaf}); err != nil {
		t.Fatalf("RegisterNode: %v", err)
	}
	rec, err := e.st.LookupIssuance(serial)
	if err != nil {
		t.Fatalf("the server SVID of a registered node is not in the ledger: %v", err)
	}
	if rec.Owner != issuer.SystemOwner || rec.Node != e.st.NodeID() || rec.SPIFFEID != "spiffe://example.org/signet/server/"+e.st.NodeID() {
		t.Fatalf("ledger record %+v", rec)
	}
}
