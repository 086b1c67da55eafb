package ca_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
)

// TestSignStatement: a statement verifies against the signing root only, for its own purpose and
// message only.
func TestSignStatement(t *testing.T) {
	now := testNow()
	a := newCA(t, now, 24*time.Hour, fixedClock(now))
	other := newCA(t, now, 24*time.Hour, fixedClock(now))
	msg := []byte(`{"seq":7,"head_hash":"ab"}`)
	sig, err := a.SignStatement("audit-checkpoint", msg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.VerifyStatement([]*x509.Certificate{other.X509Authority(), a.X509Authority()}, "audit-checkpoint", msg, sig)
	if err != nil || root != a.X509Authority() {
		t.Fatalf("verify: root %v, %v", root, err)
	}
	for _, tc := range []struct {
		name    string
		roots   []*x509.Certificate
		purpose string
		msg     []byte
	}{
		{"another root", []*x509.Certificate{other.X509Authority()}, "audit-checkpoint", msg},
		{"another purpose", []*x509.Certificate{a.X509Authority()}, "other", msg},
		{"another message", []*x509.Certificate{a.X509Authority()}, "audit-checkpoint", []byte(`{"seq":8,"head_hash":"ab"}`)},
	} {
		if _, err := ca.VerifyStatement(tc.roots, tc.purpose, tc.msg, sig); !errors.Is(err, ca.ErrBadStatementSignature) {
			t.Errorf("%s: %v, want ErrBadStatementSignature", tc.name, err)
		}
	}
	if _, err := a.SignStatement("", msg); !errors.Is(err, ca.ErrInvalidParams) {
		t.Errorf("empty purpose: %v", err)
	}
}
