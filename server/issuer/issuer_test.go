package issuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/internal/testkit"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/server/apierr"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var oidBasicConstraintsTest = asn1.ObjectIdentifier{2, 5, 29, 19}

// issuerFixture is a node with owner "alice" and an entry parented by agent A.
type issuerFixture struct {
	*env
	ent    storage.Entry
	caller Caller
}

func newIssuerFixture(tb testing.TB) issuerFixture {
	tb.Helper()
	e := newEnv(tb)
	e.owner(tb, "alice")
	ent := e.entry(tb, "spiffe://example.org/ns/prod/web", agentA, "alice", func(en *storage.Entry) {
		en.Selectors = []selector.Selector{{Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:33"}}
		en.DNSNames = []string{"web.example.org"}
		en.X509TTL, en.JWTTTL = 20*time.Minute, 5*time.Minute
	})
	return issuerFixture{env: e, ent: ent, caller: Caller{AgentID: agentA, NodeAttestation: "join_token"}}
}

func TestSignX509SVIDsIssuesAndRecords(t *testing.T) {
	f := newIssuerFixture(t)
	key := newP256(t)
	before := time.Now().UTC()
	results, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, []X509Request{{EntryID: f.ent.ID, CSR: csrFor(t, key, nil)}})
	if err != nil {
		t.Fatalf("SignX509SVIDs: %v", err)
	}
	if len(results) != 1 || results[0].Err != nil || len(results[0].Chain) != 1 || results[0].EntryID != f.ent.ID {
		t.Fatalf("results = %+v", results)
	}
	cert := results[0].Chain[0]
	if len(cert.URIs) != 1 || cert.URIs[0].String() != f.ent.SPIFFEID {
		t.Fatalf("certificate URIs = %v, want [%s]", cert.URIs, f.ent.SPIFFEID)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("certificate public key is not the CSR's")
	}
	if !slices.Equal(cert.DNSNames, f.ent.DNSNames) {
		t.Fatalf("DNS names = %v, want %v", cert.DNSNames, f.ent.DNSNames)
	}
	if got := cert.NotAfter.Sub(before.Truncate(time.Second)); got < f.ent.X509TTL-time.Second || got > f.ent.X509TTL+time.Second {
		t.Fatalf("certificate lives %s, entry TTL is %s", got, f.ent.X509TTL)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.X509Authority())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("certificate does not chain to the CA root: %v", err)
	}

	rec, err := f.st.LookupIssuance(cert.SerialNumber.Text(16))
	if err != nil {
		t.Fatalf("no ledger record for the issued certificate: %v", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	want := storage.Issuance{ID: cert.SerialNumber.Text(16), Kind: storage.KindX509SVID, SPIFFEID: f.ent.SPIFFEID,
		EntryID: f.ent.ID, Owner: "alice", Selectors: []string{"unix:gid:33", "unix:uid:1000"},
		PublicKeySHA256: hex.EncodeToString(sum[:]), Node: f.st.NodeID(), Agent: agentA.String(), NodeAttestation: "join_token",
		SignedBy: f.ca.X509KeyID()}
	if rec.ID != want.ID || rec.Kind != want.Kind || rec.SPIFFEID != want.SPIFFEID || rec.EntryID != want.EntryID ||
		rec.Owner != want.Owner || !slices.Equal(rec.Selectors, want.Selectors) || rec.PublicKeySHA256 != want.PublicKeySHA256 ||
		rec.Node != want.Node || rec.Agent != want.Agent || rec.NodeAttestation != want.NodeAttestation || len(rec.Audience) != 0 ||
		rec.SignedBy != want.SignedBy {
		t.Fatalf("ledger record\n got %+v\nwant %+v", rec, want)
	}
	if !rec.ExpiresAt.Equal(cert.NotAfter) {
		t.Fatalf("record expires %s, certificate %s", rec.ExpiresAt, cert.NotAfter)
	}
	// IssuedAt is the real issuance time, not the backdated NotBefore.
	if rec.IssuedAt.Before(before) || rec.IssuedAt.After(time.Now()) {
		t.Fatalf("record issued_at %s not within the call (started %s)", rec.IssuedAt, before)
	}

	t.Run("CSR naming the entry's own ID", func(t *testing.T) {
		csr := csrFor(t, newP256(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, f.ent.SPIFFEID)}})
		res, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, []X509Request{{EntryID: f.ent.ID, CSR: csr}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("SignX509SVIDs: %v / %v", err, res[0].Err)
		}
	})
	t.Run("RSA 2048 and P-384 keys", func(t *testing.T) {
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, []X509Request{
			{EntryID: f.ent.ID, CSR: csrFor(t, rsaKey, nil)}, {EntryID: f.ent.ID, CSR: csrFor(t, p384, nil)},
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Err != nil || len(r.Chain) != 1 {
				t.Fatalf("result %d: %+v", i, r)
			}
		}
	})
}

func TestSignX509SVIDsDenied(t *testing.T) {
	f := newIssuerFixture(t)
	expiring := f.entry(t, "spiffe://example.org/ns/prod/batch", agentA, "alice", func(en *storage.Entry) {
		en.ExpiresAt = time.Now().Add(time.Hour).Truncate(time.Second)
	})
	// An issuer whose clock reads a given time, sharing the node's store, CA and recorder.
	issuerAt := func(t *testing.T, now time.Time) *Issuer {
		iss, err := NewIssuer(IssuerConfig{Store: f.st, CA: f.ca, Recorder: f.srv.Recorder, NodeID: f.st.NodeID(),
			Clock: func() time.Time { return now }, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}

	tests := []struct {
		name   string
		iss    func(t *testing.T) *Issuer
		caller Caller
		entry  string
	}{
		{"another agent's entry", nil, Caller{AgentID: agentB, NodeAttestation: "join_token"}, f.ent.ID},
		{"unknown entry", nil, f.caller, "0123456789abcdef0123456789abcdef"},
		{"empty entry ID", nil, f.caller, ""},
		{"expired entry", func(t *testing.T) *Issuer { return issuerAt(t, expiring.ExpiresAt.Add(time.Minute)) }, f.caller, expiring.ID},
		{"entry expiring right now", func(t *testing.T) *Issuer { return issuerAt(t, expiring.ExpiresAt) }, f.caller, expiring.ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := f.srv.Issuer
			if tc.iss != nil {
				iss = tc.iss(t)
			}
			total := ledgerCount(t, f.st, storage.LedgerQuery{})
			res, err := iss.SignX509SVIDs(testCtx(t), tc.caller, []X509Request{{EntryID: tc.entry, CSR: csrFor(t, newP256(t), nil)}})
			if err != nil {
				t.Fatalf("SignX509SVIDs: %v (a denied request fails its result, not the batch)", err)
			}
			if !errors.Is(res[0].Err, apierr.ErrPermissionDenied) || res[0].Chain != nil {
				t.Fatalf("result = %+v, want apierr.ErrPermissionDenied and no chain", res[0])
			}
			if n := ledgerCount(t, f.st, storage.LedgerQuery{}); n != total {
				t.Fatalf("ledger grew from %d to %d records on a denied request", total, n)
			}
			_, err = iss.SignJWTSVID(testCtx(t), tc.caller, tc.entry, []string{"aud"})
			if !errors.Is(err, apierr.ErrPermissionDenied) {
				t.Fatalf("SignJWTSVID: got %v, want apierr.ErrPermissionDenied", err)
			}
			if n := ledgerCount(t, f.st, storage.LedgerQuery{}); n != total {
				t.Fatalf("ledger grew from %d to %d records on a denied JWT request", total, n)
			}
		})
	}
	// The same expiring entry is still issuable before its expiry.
	res, err := issuerAt(t, expiring.ExpiresAt.Add(-time.Minute)).SignX509SVIDs(testCtx(t), f.caller,
		[]X509Request{{EntryID: expiring.ID, CSR: csrFor(t, newP256(t), nil)}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("before expiry: %v / %v", err, res[0].Err)
	}
}

func TestSignX509SVIDsBadCSRs(t *testing.T) {
	f := newIssuerFixture(t)
	good := csrFor(t, newP256(t), nil)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 0x01 // the last byte is inside the signature

	caExt, err := asn1.Marshal(struct{ IsCA bool }{true})
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		csr    func(t *testing.T) []byte
		reason string // in the message: the check that refused it
	}{
		{"empty", func(*testing.T) []byte { return nil }, "csr is required"},
		{"garbage", func(*testing.T) []byte { return []byte("this is not a certificate request") }, "asn1"},
		{"truncated", func(*testing.T) []byte { return good[:len(good)/2] }, "asn1"},
		{"larger than 16 KiB", func(*testing.T) []byte { return append(bytes.Clone(good), make([]byte, MaxCSRSize)...) }, "larger than"},
		{"bad signature", func(*testing.T) []byte { return flipped }, "signature does not verify"},
		{"URI SAN of another SPIFFE ID", func(t *testing.T) []byte {
			return csrFor(t, newP256(t), &x509.CertificateRequest{URIs: []*url.URL{mustURL(t, "spiffe://example.org/ns/prod/db")}})
		}, "asks for"},
		{"URI SAN of the entry and another", func(t *testing.T) []byte {
			return csrFor(t, newP256(t), &x509.CertificateRequest{URIs: []*url.URL{
				mustURL(t, f.ent.SPIFFEID), mustURL(t, "spiffe://example.org/signet/agent/a")}})
		}, "asks for"},
		{"requests a CA certificate", func(t *testing.T) []byte {
			return csrFor(t, newP256(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil CA"},
				ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraintsTest, Critical: true, Value: caExt}}})
		}, "CA certificate"},
		{"malformed basic constraints", func(t *testing.T) []byte {
			return csrFor(t, newP256(t), &x509.CertificateRequest{
				ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraintsTest, Value: []byte{0x01, 0x02}}}})
		}, "CA certificate"},
		{"RSA 1024 key", func(t *testing.T) []byte { return csrFor(t, rsa1024, nil) }, "1024 bits"},
		{"P-224 key", func(t *testing.T) []byte { return csrFor(t, p224, nil) }, "P-224"},
		{"Ed25519 key", func(t *testing.T) []byte { return csrFor(t, ed, nil) }, "ed25519"},
	}
	before := ledgerCount(t, f.st, storage.LedgerQuery{EntryID: f.ent.ID})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, []X509Request{{EntryID: f.ent.ID, CSR: tc.csr(t)}})
			if err != nil {
				t.Fatalf("SignX509SVIDs: %v (a bad CSR fails its result, not the batch)", err)
			}
			if !errors.Is(res[0].Err, apierr.ErrInvalidArgument) {
				t.Fatalf("result error = %v, want apierr.ErrInvalidArgument", res[0].Err)
			}
			if msg := res[0].Err.Error(); !strings.Contains(msg, "csr") || !strings.Contains(msg, tc.reason) {
				t.Fatalf("error %q does not name the csr and %q", msg, tc.reason)
			}
			if res[0].Chain != nil {
				t.Fatal("a chain came back with the error")
			}
		})
	}
	if after := ledgerCount(t, f.st, storage.LedgerQuery{EntryID: f.ent.ID}); after != before {
		t.Fatalf("ledger grew from %d to %d records for rejected CSRs", before, after)
	}
}

func TestSignX509SVIDsBatch(t *testing.T) {
	f := newIssuerFixture(t)
	other := f.entry(t, "spiffe://example.org/ns/prod/other", agentB, "alice", nil)

	t.Run("mixed batch", func(t *testing.T) {
		before := ledgerCount(t, f.st, storage.LedgerQuery{})
		reqs := []X509Request{
			{EntryID: f.ent.ID, CSR: csrFor(t, newP256(t), nil)},
			{EntryID: f.ent.ID, CSR: []byte("junk")},
			{EntryID: other.ID, CSR: csrFor(t, newP256(t), nil)},
			{EntryID: f.ent.ID, CSR: csrFor(t, newP256(t), nil)},
		}
		res, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, reqs)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != len(reqs) {
			t.Fatalf("%d results for %d requests", len(res), len(reqs))
		}
		for i, want := range []error{nil, apierr.ErrInvalidArgument, apierr.ErrPermissionDenied, nil} {
			if res[i].EntryID != reqs[i].EntryID {
				t.Fatalf("result %d is for entry %q, want %q", i, res[i].EntryID, reqs[i].EntryID)
			}
			if want == nil {
				if res[i].Err != nil || len(res[i].Chain) != 1 {
					t.Fatalf("result %d = %+v, want a certificate", i, res[i])
				}
				if _, err := f.st.LookupIssuance(res[i].Chain[0].SerialNumber.Text(16)); err != nil {
					t.Fatalf("result %d not in the ledger: %v", i, err)
				}
			} else if !errors.Is(res[i].Err, want) {
				t.Fatalf("result %d error = %v, want %v", i, res[i].Err, want)
			}
		}
		if after := ledgerCount(t, f.st, storage.LedgerQuery{}); after != before+2 {
			t.Fatalf("ledger grew by %d, want 2", after-before)
		}
		if n := ledgerCount(t, f.st, storage.LedgerQuery{EntryID: other.ID}); n != 0 {
			t.Fatalf("%d records for the other agent's entry", n)
		}
	})
	t.Run("at most MaxCSRBatch", func(t *testing.T) {
		reqs := make([]X509Request, MaxCSRBatch+1)
		res, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, reqs)
		if !errors.Is(err, apierr.ErrInvalidArgument) || res != nil {
			t.Fatalf("batch of %d: results %d, err %v; want apierr.ErrInvalidArgument", len(reqs), len(res), err)
		}
		res, err = f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, reqs[:MaxCSRBatch])
		if err != nil || len(res) != MaxCSRBatch {
			t.Fatalf("batch of exactly %d: %d results, %v", MaxCSRBatch, len(res), err)
		}
	})
	t.Run("empty batch", func(t *testing.T) {
		res, err := f.srv.Issuer.SignX509SVIDs(testCtx(t), f.caller, nil)
		if err != nil || len(res) != 0 {
			t.Fatalf("empty batch: %v %v", res, err)
		}
	})
}

func TestIssuerWithoutRecorderHandsOutNothing(t *testing.T) {
	f := newIssuerFixture(t)
	rec, err := NewRecorder(RecorderConfig{Appender: f.st})
	if err != nil {
		t.Fatal(err)
	}
	startRecorder(t, rec)() // started and stopped: every Record fails
	iss, err := NewIssuer(IssuerConfig{Store: f.st, CA: f.ca, Recorder: rec, NodeID: "n", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := iss.SignX509SVIDs(testCtx(t), f.caller, []X509Request{{EntryID: f.ent.ID, CSR: csrFor(t, newP256(t), nil)}})
	if !errors.Is(err, ErrRecorderStopped) || res != nil {
		t.Fatalf("SignX509SVIDs with a stopped recorder: %v, %v; want no results and ErrRecorderStopped", res, err)
	}
	svid, err := iss.SignJWTSVID(testCtx(t), f.caller, f.ent.ID, []string{"aud"})
	if !errors.Is(err, ErrRecorderStopped) || svid != nil {
		t.Fatalf("SignJWTSVID with a stopped recorder: %v, %v; want no token and ErrRecorderStopped", svid, err)
	}
	if n := ledgerCount(t, f.st, storage.LedgerQuery{EntryID: f.ent.ID}); n != 0 {
		t.Fatalf("%d ledger records", n)
	}
}

func TestSignJWTSVID(t *testing.T) {
	f := newIssuerFixture(t)
	aud := []string{"https://api.example.org", "spiffe://example.org/ns/prod/db"}
	svid, err := f.srv.Issuer.SignJWTSVID(testCtx(t), f.caller, f.ent.ID, aud)
	if err != nil {
		t.Fatalf("SignJWTSVID: %v", err)
	}
	bundle := jwtbundle.FromJWTAuthorities(testTD, map[string]crypto.PublicKey{f.ca.JWTKeyID(): f.ca.JWTPublicKey()})
	parsed, err := jwtsvid.ParseAndValidate(svid.Token, bundle, aud[:1])
	if err != nil {
		t.Fatalf("token does not validate against the CA's JWT key: %v", err)
	}
	if parsed.ID.String() != f.ent.SPIFFEID || !slices.Equal(parsed.Audience, aud) {
		t.Fatalf("token is for %s / %v, want %s / %v", parsed.ID, parsed.Audience, f.ent.SPIFFEID, aud)
	}
	if got := parsed.Expiry.Sub(svid.IssuedAt); got != f.ent.JWTTTL {
		t.Fatalf("token lives %s, entry JWT TTL is %s", got, f.ent.JWTTTL)
	}
	other := jwtbundle.FromJWTAuthorities(testTD, map[string]crypto.PublicKey{f.ca.JWTKeyID(): newP256(t).Public()})
	if _, err := jwtsvid.ParseAndValidate(svid.Token, other, aud[:1]); err == nil {
		t.Fatal("token validates against a different key")
	}

	rec, err := f.st.LookupIssuance(svid.ID)
	if err != nil {
		t.Fatalf("no ledger record for jti %s: %v", svid.ID, err)
	}
	if rec.Kind != storage.KindJWTSVID || !slices.Equal(rec.Audience, aud) || rec.SPIFFEID != f.ent.SPIFFEID ||
		rec.EntryID != f.ent.ID || rec.Owner != "alice" || rec.Agent != agentA.String() || rec.NodeAttestation != "join_token" ||
		rec.Node != f.st.NodeID() || rec.PublicKeySHA256 != "" || !rec.ExpiresAt.Equal(svid.ExpiresAt) || rec.SignedBy != f.ca.JWTKeyID() ||
		!slices.Equal(rec.Selectors, []string{"unix:gid:33", "unix:uid:1000"}) {
		t.Fatalf("ledger record = %+v", rec)
	}

	t.Run("audience", func(t *testing.T) {
		tests := []struct {
			name string
			aud  []string
		}{
			{"nil", nil},
			{"empty list", []string{}},
			{"empty element", []string{"a", ""}},
			{"17 audiences", slices.Repeat([]string{"a"}, MaxAudiences+1)},
			{"audience too long", []string{strings.Repeat("a", MaxAudienceLen+1)}},
			{"too many audience bytes in all", append(slices.Repeat([]string{strings.Repeat("a", MaxAudienceLen)}, MaxAudienceTotal/MaxAudienceLen), "b")},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := ledgerCount(t, f.st, storage.LedgerQuery{EntryID: f.ent.ID})
				svid, err := f.srv.Issuer.SignJWTSVID(testCtx(t), f.caller, f.ent.ID, tc.aud)
				if !errors.Is(err, apierr.ErrInvalidArgument) || svid != nil {
					t.Fatalf("SignJWTSVID(%d audiences): %v, %v; want apierr.ErrInvalidArgument", len(tc.aud), svid, err)
				}
				if !strings.Contains(err.Error(), "audience") {
					t.Fatalf("error %q does not name the audience", err)
				}
				if after := ledgerCount(t, f.st, storage.LedgerQuery{EntryID: f.ent.ID}); after != before {
					t.Fatal("a rejected request was recorded")
				}
			})
		}
		if _, err := f.srv.Issuer.SignJWTSVID(testCtx(t), f.caller, f.ent.ID, slices.Repeat([]string{"a"}, MaxAudiences)); err != nil {
			t.Fatalf("%d audiences: %v", MaxAudiences, err)
		}
	})
}

func TestSignCappedAtCAExpiry(t *testing.T) {
	// An entry may ask for more than the CA has left: its SVIDs are issued, expire with the CA (never
	// after it), and are recorded with that expiry.
	st := openStore(t)
	shortCA := testkit.NewCA(t, testTD, 2*time.Hour)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	startRecorder(t, rec)
	iss, err := NewIssuer(IssuerConfig{Store: st, CA: shortCA, Recorder: rec, NodeID: st.NodeID(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOwner(testCtx(t), storage.Owner{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	ent, err := st.CreateEntry(testCtx(t), storage.Entry{ID: "e-long", SPIFFEID: "spiffe://example.org/long", ParentID: agentA.String(),
		Owner: "alice", Purpose: "p", Selectors: []selector.Selector{{Type: "unix", Value: "uid:1"}}, X509TTL: 3 * time.Hour, JWTTTL: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	caller := Caller{AgentID: agentA}
	res, err := iss.SignX509SVIDs(testCtx(t), caller, []X509Request{{EntryID: ent.ID, CSR: csrFor(t, newP256(t), nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || len(res[0].Chain) == 0 {
		t.Fatalf("X.509 result = %+v, want an SVID capped at the CA's expiry", res[0])
	}
	caNotAfter := shortCA.NotAfter()
	leaf := res[0].Chain[0]
	if !leaf.NotAfter.Equal(caNotAfter) {
		t.Errorf("X.509-SVID NotAfter %s, want the CA's %s", leaf.NotAfter, caNotAfter)
	}
	bundle := x509bundle.FromX509Authorities(testTD, []*x509.Certificate{shortCA.X509Authority()})
	if _, _, err := x509svid.Verify([]*x509.Certificate{leaf}, bundle); err != nil {
		t.Errorf("capped X.509-SVID does not verify: %v", err)
	}
	jwt, err := iss.SignJWTSVID(testCtx(t), caller, ent.ID, []string{"aud"})
	if err != nil {
		t.Fatalf("SignJWTSVID: %v, want a token capped at the CA's expiry", err)
	}
	if !jwt.ExpiresAt.Equal(caNotAfter) {
		t.Errorf("JWT-SVID exp %s, want the CA's %s", jwt.ExpiresAt, caNotAfter)
	}
	page, err := st.QueryLedger(storage.LedgerQuery{EntryID: ent.ID, Limit: storage.MaxLedgerLimit})
	if err != nil {
		t.Fatal(err)
	}
	recs := page.Issuances
	if len(recs) != 2 {
		t.Fatalf("%d ledger records, want 2", len(recs))
	}
	for _, r := range recs {
		if !r.ExpiresAt.Equal(caNotAfter) {
			t.Errorf("ledger record %s expires %s, want the CA's %s", r.ID, r.ExpiresAt, caNotAfter)
		}
	}
}

func TestNewIssuerRequiresConfig(t *testing.T) {
	st := openStore(t)
	authority := newCA(t)
	rec, err := NewRecorder(RecorderConfig{Appender: st})
	if err != nil {
		t.Fatal(err)
	}
	full := IssuerConfig{Store: st, CA: authority, Recorder: rec, NodeID: "n1"}
	tests := []struct {
		name  string
		mod   func(*IssuerConfig)
		field string
	}{
		{"no store", func(c *IssuerConfig) { c.Store = nil }, "Store"},
		{"no CA", func(c *IssuerConfig) { c.CA = nil }, "CA"},
		{"no recorder", func(c *IssuerConfig) { c.Recorder = nil }, "Recorder"},
		{"no node ID", func(c *IssuerConfig) { c.NodeID = "" }, "NodeID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := full
			tc.mod(&cfg)
			if _, err := NewIssuer(cfg); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("NewIssuer: %v, want an error naming %s", err, tc.field)
			}
		})
	}
	if _, err := NewIssuer(full); err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
}

// TestSignJWTSVIDRecordsRealIssuanceTime: a JWT-SVID's ledger record carries the time it was recorded,
// not the whole-second iat of the token.
func TestSignJWTSVIDRecordsRealIssuanceTime(t *testing.T) {
	f := newIssuerFixture(t)
	before := time.Now()
	for before.Nanosecond() == 0 { // a whole second would hide the truncation
		before = time.Now()
	}
	svid, err := f.srv.Issuer.SignJWTSVID(testCtx(t), f.caller, f.ent.ID, []string{"aud"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.st.LookupIssuance(svid.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.IssuedAt.Before(before) {
		t.Fatalf("JWT-SVID recorded as issued at %s, before the call started at %s", rec.IssuedAt, before.UTC())
	}
	page, err := f.st.QueryLedger(storage.LedgerQuery{Since: before})
	if err != nil || !slices.ContainsFunc(page.Issuances, func(r storage.Issuance) bool { return r.ID == svid.ID }) {
		t.Fatalf("a ledger query since %s does not find the JWT-SVID issued after it (%v)", before.UTC(), err)
	}
}

// The records of the credentials Signet issues itself name the signing key too: agent SVIDs and the
// node's server SVID.
func TestAgentAndServerSVIDRecordsNameTheSigningKey(t *testing.T) {
	f := newIssuerFixture(t)
	_, rec, err := f.srv.Issuer.SignAgentSVID(AgentSVIDRequest{ID: agentA, CSR: csrFor(t, newP256(t), nil), TTL: time.Hour, Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.SignedBy != f.ca.X509KeyID() {
		t.Fatalf("agent SVID record signed by %q, want the CA's key %q", rec.SignedBy, f.ca.X509KeyID())
	}
	tc, err := f.srv.Issuer.ServerCertificate(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	srec, err := f.st.LookupIssuance(tc.Leaf.SerialNumber.Text(16))
	if err != nil || srec.SignedBy != f.ca.X509KeyID() {
		t.Fatalf("server SVID record %+v, %v; want signed by %q", srec, err, f.ca.X509KeyID())
	}
}
