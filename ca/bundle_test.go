package ca_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
)

type rawBundle struct {
	Keys        []map[string]any `json:"keys"`
	Sequence    *uint64          `json:"spiffe_sequence"`
	RefreshHint *int64           `json:"spiffe_refresh_hint"`
}

func TestMarshalBundle(t *testing.T) {
	now := testNow()
	// Two server nodes: the published bundle is the union of their roots and JWT keys.
	a := newCA(t, now, time.Hour, nil)
	b := newCA(t, now, time.Hour, nil)
	roots := []*x509.Certificate{a.X509Authority(), b.X509Authority(), a.X509Authority()} // duplicate dropped
	jwtKeys := map[string]crypto.PublicKey{a.JWTKeyID(): a.JWTPublicKey(), b.JWTKeyID(): b.JWTPublicKey()}

	doc, err := ca.MarshalBundle(td, roots, jwtKeys, 42, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	parsed, err := spiffebundle.Parse(td, doc)
	if err != nil {
		t.Fatalf("spiffebundle.Parse: %v", err)
	}
	gotRoots := parsed.X509Authorities()
	if len(gotRoots) != 2 || !gotRoots[0].Equal(a.X509Authority()) || !gotRoots[1].Equal(b.X509Authority()) {
		t.Errorf("X509Authorities = %d certs, want the two roots in order", len(gotRoots))
	}
	gotJWT := parsed.JWTAuthorities()
	if len(gotJWT) != 2 {
		t.Errorf("JWTAuthorities has %d keys, want 2", len(gotJWT))
	}
	for kid, want := range jwtKeys {
		if got, ok := gotJWT[kid]; !ok || !want.(*ecdsa.PublicKey).Equal(got) {
			t.Errorf("JWT authority %q missing or different", kid)
		}
	}
	if seq, ok := parsed.SequenceNumber(); !ok || seq != 42 {
		t.Errorf("sequence = %d (set %v), want 42", seq, ok)
	}
	if hint, ok := parsed.RefreshHint(); !ok || hint != 5*time.Minute {
		t.Errorf("refresh hint = %s (set %v), want 5m", hint, ok)
	}

	var raw rawBundle
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Sequence == nil || *raw.Sequence != 42 || raw.RefreshHint == nil || *raw.RefreshHint != 300 {
		t.Errorf("spiffe_sequence/spiffe_refresh_hint = %v/%v, want 42/300", raw.Sequence, raw.RefreshHint)
	}
	var nX509, nJWT int
	for _, k := range raw.Keys {
		switch k["use"] {
		case "x509-svid":
			nX509++
			// X509-SVID §6.1: no kid, x5c with exactly one certificate.
			if _, ok := k["kid"]; ok {
				t.Errorf("x509-svid JWK has a kid: %v", k)
			}
			x5c, _ := k["x5c"].([]any)
			if len(x5c) != 1 {
				t.Fatalf("x5c = %v, want one certificate", k["x5c"])
			}
			der, err := base64.StdEncoding.DecodeString(x5c[0].(string))
			if err != nil {
				t.Fatalf("x5c is not standard base64: %v", err)
			}
			if _, err := x509.ParseCertificate(der); err != nil {
				t.Errorf("x5c certificate: %v", err)
			}
		case "jwt-svid":
			nJWT++
			if kid, _ := k["kid"].(string); kid == "" {
				t.Errorf("jwt-svid JWK without kid: %v", k)
			}
			if _, ok := k["x5c"]; ok {
				t.Errorf("jwt-svid JWK has x5c: %v", k)
			}
		default:
			t.Errorf("JWK with use %v", k["use"])
		}
		if k["kty"] != "EC" || k["crv"] != "P-256" {
			t.Errorf("JWK kty/crv = %v/%v, want EC/P-256", k["kty"], k["crv"])
		}
		for name := range k {
			switch name {
			case "kty", "use", "kid", "crv", "x", "y", "x5c":
			default:
				t.Errorf("JWK carries parameter %q not defined for SPIFFE bundles", name)
			}
		}
	}
	if nX509 != 2 || nJWT != 2 {
		t.Errorf("%d x509-svid and %d jwt-svid JWKs, want 2 and 2", nX509, nJWT)
	}

	// Deterministic output.
	again, err := ca.MarshalBundle(td, roots, jwtKeys, 42, 5*time.Minute)
	if err != nil || string(again) != string(doc) {
		t.Error("MarshalBundle output is not deterministic")
	}
}

func TestMarshalBundleEdgeCases(t *testing.T) {
	now := testNow()
	c := newCA(t, now, time.Hour, nil)
	leaf, err := c.SignX509SVID(ca.X509SVIDParams{SPIFFEID: webID, PublicKey: newP256(t).Public(), TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	foreignX, _, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: t.TempDir(), TrustDomain: otherTD})
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("empty bundle keeps keys and omits zero refresh hint", func(t *testing.T) {
		doc, err := ca.MarshalBundle(td, nil, nil, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(doc) != `{"keys":[],"spiffe_sequence":0}` {
			t.Errorf("doc = %s", doc)
		}
		if _, err := spiffebundle.Parse(td, doc); err != nil {
			t.Errorf("spiffebundle.Parse: %v", err)
		}
	})
	t.Run("refresh hint rounds up to seconds", func(t *testing.T) {
		doc, err := ca.MarshalBundle(td, nil, nil, 1, 1500*time.Millisecond)
		if err != nil || !strings.Contains(string(doc), `"spiffe_refresh_hint":2`) {
			t.Errorf("doc = %s, err %v", doc, err)
		}
	})

	for _, tt := range []struct {
		name  string
		roots []*x509.Certificate
		keys  map[string]crypto.PublicKey
		hint  time.Duration
		want  string
	}{
		{"nil root", []*x509.Certificate{nil}, nil, 0, "root 0 is nil"},
		{"leaf as root", []*x509.Certificate{leaf}, nil, 0, "not a CA"},
		{"root of another trust domain", []*x509.Certificate{foreignX.Certificate}, nil, 0, `"other.example"`},
		{"empty kid", nil, map[string]crypto.PublicKey{"": c.JWTPublicKey()}, 0, "empty key ID"},
		{"Ed25519 JWT key", nil, map[string]crypto.PublicKey{"k": edPub}, 0, "Ed25519"},
		{"nil JWT key", nil, map[string]crypto.PublicKey{"k": nil}, 0, "unsupported"},
		{"negative refresh hint", nil, nil, -time.Second, "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.MarshalBundle(td, tt.roots, tt.keys, 1, tt.hint)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// rsaAndP384 are JWT keys of the other types a bundle may hold.
func rsaAndP384(t *testing.T) (*rsa.PrivateKey, *ecdsa.PrivateKey) {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rsaKey, p384
}

func TestMarshalJWTBundle(t *testing.T) {
	c := newCA(t, testNow(), time.Hour, nil)
	rsaKey, p384 := rsaAndP384(t)
	keys := map[string]crypto.PublicKey{c.JWTKeyID(): c.JWTPublicKey(), "rsa": &rsaKey.PublicKey, "p384": &p384.PublicKey}
	doc, err := ca.MarshalJWTBundle(keys)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwtbundle.Parse(td, doc)
	if err != nil {
		t.Fatalf("jwtbundle.Parse: %v", err)
	}
	got := parsed.JWTAuthorities()
	if len(got) != len(keys) {
		t.Fatalf("%d authorities, want %d", len(got), len(keys))
	}
	for kid, want := range keys {
		if !want.(interface{ Equal(crypto.PublicKey) bool }).Equal(got[kid]) {
			t.Errorf("key %q did not round-trip", kid)
		}
	}
	var raw rawBundle
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Sequence != nil || raw.RefreshHint != nil {
		t.Error("JWT bundle carries SPIFFE bundle parameters")
	}
	for _, k := range raw.Keys {
		if k["use"] != "jwt-svid" || k["kid"] == "" {
			t.Errorf("JWK %v, want use jwt-svid with kid", k)
		}
		if _, ok := k["x5c"]; ok {
			t.Errorf("JWK %v has x5c", k)
		}
	}
	if _, err := ca.MarshalJWTBundle(map[string]crypto.PublicKey{"": c.JWTPublicKey()}); err == nil {
		t.Error("empty kid accepted")
	}
	if doc, err := ca.MarshalJWTBundle(nil); err != nil || string(doc) != `{"keys":[]}` {
		t.Errorf("empty JWT bundle = %s, %v", doc, err)
	}
}

// TestMarshalSigningJWKS: the OIDC JWK Set has every key with use sig, its kid and the algorithm of
// its type, go-jose reads it, and the algorithms are listed once each.
func TestMarshalSigningJWKS(t *testing.T) {
	c := newCA(t, testNow(), time.Hour, nil)
	rsaKey, p384 := rsaAndP384(t)
	p256 := newP256(t)
	keys := map[string]crypto.PublicKey{c.JWTKeyID(): c.JWTPublicKey(), "b-p256": p256.Public(), "rsa": &rsaKey.PublicKey, "p384": &p384.PublicKey}
	doc, algs, err := ca.MarshalSigningJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(algs, ",") != "ES256,ES384,RS256" {
		t.Errorf("algs = %q, want ES256, ES384, RS256", algs)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatalf("go-jose cannot read the JWK Set: %v", err)
	}
	wantAlg := map[string]string{c.JWTKeyID(): "ES256", "b-p256": "ES256", "rsa": "RS256", "p384": "ES384"}
	if len(set.Keys) != len(keys) {
		t.Fatalf("%d keys, want %d", len(set.Keys), len(keys))
	}
	for _, k := range set.Keys {
		if k.Use != "sig" || k.Algorithm != wantAlg[k.KeyID] {
			t.Errorf("key %q: use %q alg %q, want sig %s", k.KeyID, k.Use, k.Algorithm, wantAlg[k.KeyID])
		}
		if !keys[k.KeyID].(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Key) {
			t.Errorf("key %q did not round-trip", k.KeyID)
		}
	}
	if doc, algs, err := ca.MarshalSigningJWKS(nil); err != nil || string(doc) != `{"keys":[]}` || len(algs) != 0 {
		t.Errorf("empty JWK Set = %s %q, %v", doc, algs, err)
	}
	// The SPIFFE bundle forms never carry alg.
	bundle, err := ca.MarshalJWTBundle(keys)
	if err != nil || strings.Contains(string(bundle), `"alg"`) {
		t.Errorf("JWT bundle carries alg (%v): %s", err, bundle)
	}
}

func TestCertificatesPEM(t *testing.T) {
	a := newCA(t, testNow(), time.Hour, nil)
	b := newCA(t, testNow(), time.Hour, nil)
	data := ca.CertificatesPEM([]*x509.Certificate{a.X509Authority(), nil, b.X509Authority()})
	var got []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			t.Errorf("block type %q", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, cert)
	}
	if len(got) != 2 || !got[0].Equal(a.X509Authority()) || !got[1].Equal(b.X509Authority()) {
		t.Errorf("round trip gave %d certificates", len(got))
	}
}
