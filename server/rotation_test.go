package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"github.com/signet-id/signet/internal/waitfor"
	"github.com/signet-id/signet/server/adminapi"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/ca/rotation"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/signet-id/signet/server/issuer"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
)

// rotationSchedule: keys live 10m, SVIDs at most 1m, successors prepared 2m before half life.
var rotationSchedule = rotation.Schedule{TTL: 10 * time.Minute, MaxSVIDTTL: time.Minute, PrepareBefore: 2 * time.Minute}

// newRotatingEnv is a node whose keys rotate on rotationSchedule by clock; mod, if non-nil, adjusts its
// configuration further.
func newRotatingEnv(t *testing.T, clock *manualClock, mod func(*Config)) (*env, *rotation.Manager) {
	t.Helper()
	keys, err := rotation.Open(rotation.Config{Dir: t.TempDir(), Schedule: rotationSchedule,
		New: rotation.DiskFactory(testTD, rotationSchedule.TTL, clock.now), Clock: clock.now, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvConfig(t, func(c *Config) {
		c.CA, c.Keys, c.Clock = nil, keys, clock.now
		c.KeyCheckEvery = time.Hour // the test steps the schedule itself (AdvanceKeys)
		if mod != nil {
			mod(c)
		}
	}, nil)
	return e, keys
}

type issued struct {
	cert *x509.Certificate
	jwt  string
	exp  time.Time
}

// TestRotationWithoutAnOutage issues an X.509- and a JWT-SVID every 20 s of an injected clock across two
// rotations and a pruning: every SVID is signed by a key that was in the bundle at least PrepareBefore,
// and every SVID not yet expired verifies against the bundle of the moment (go-spiffe for X.509, go-jose
// for JWT) — so nothing a pruned key signed is still valid, and no agent needs to re-mint anything
// because of a pruning.
func TestRotationWithoutAnOutage(t *testing.T) {
	clock := newManualClock()
	e, keys := newRotatingEnv(t, clock, nil)
	e.owner(t, "alice")
	en := e.entry(t, "spiffe://example.org/web", agentA, "alice", func(en *storage.Entry) { en.X509TTL, en.JWTTTL = time.Minute, time.Minute })
	caller := agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}

	start, firstKey := clock.now(), keys.Slots()[0].X509ID
	firstSeen := map[string]time.Time{} // X.509 authority ID -> when the bundle first held it
	var live []issued
	activations, prunings := 0, 0
	prevStates := map[string]rotation.State{}
	for step := range 40 { // 13m20s: two rotations (at 5m and 10m), the first key pruned at 10m
		if err := e.srv.AdvanceKeys(testCtx(t)); err != nil {
			t.Fatalf("step %d: AdvanceKeys: %v", step, err)
		}
		now := clock.now()
		b := e.st.Bundle()
		for _, root := range b.X509Authorities {
			sum := sha256.Sum256(root.Raw)
			if id := hex.EncodeToString(sum[:]); firstSeen[id].IsZero() {
				firstSeen[id] = now
			}
		}
		for _, s := range keys.Slots() {
			if prevStates[s.ID] != s.State {
				switch s.State {
				case rotation.Active:
					activations++
				case rotation.Pruned:
					prunings++
					if _, ok := b.JWTAuthorities[s.JWTKeyID]; ok {
						t.Fatalf("step %d: pruned slot %s's JWT key is still in the bundle", step, s.ID)
					}
				}
				prevStates[s.ID] = s.State
			}
		}

		res, err := e.srv.Issuer.SignX509SVIDs(testCtx(t), caller, []issuer.X509Request{{EntryID: en.ID, CSR: csrFor(t, newP256(t), nil)}})
		if err != nil || res[0].Err != nil {
			t.Fatalf("step %d (%s): X.509-SVID refused: %v %v", step, now.Sub(start), err, res[0].Err)
		}
		leaf := res[0].Chain[0]
		// The first key signs from the start (nothing was signed before it); a successor only once it
		// has been in the bundle PrepareBefore.
		signer := ""
		for _, root := range b.X509Authorities {
			if string(root.SubjectKeyId) == string(leaf.AuthorityKeyId) {
				sum := sha256.Sum256(root.Raw)
				signer = hex.EncodeToString(sum[:])
			}
		}
		if since := now.Sub(firstSeen[signer]); signer == "" || (signer != firstKey && since < rotationSchedule.PrepareBefore) {
			t.Fatalf("step %d: signed by key %q, in the bundle for %s", step, signer, since)
		}
		tok, err := e.srv.Issuer.SignJWTSVID(testCtx(t), caller, en.ID, []string{"db"})
		if err != nil {
			t.Fatalf("step %d: JWT-SVID refused: %v", step, err)
		}
		live = append(live, issued{cert: leaf, jwt: tok.Token, exp: leaf.NotAfter})

		kept := live[:0]
		for _, s := range live {
			if !now.Before(s.exp) {
				continue
			}
			if _, _, err := x509svid.Verify([]*x509.Certificate{s.cert}, x509bundle.FromX509Authorities(testTD, b.X509Authorities), x509svid.WithTime(now)); err != nil {
				t.Fatalf("step %d: an X.509-SVID valid until %s does not verify against the bundle: %v", step, s.exp, err)
			}
			verifyJWT(t, s.jwt, b)
			kept = append(kept, s)
		}
		live = kept
		clock.advance(20 * time.Second)
	}
	if activations < 3 || prunings < 1 {
		t.Fatalf("%d activations (first key included), %d prunings; want two rotations and a pruning: %+v", activations, prunings, keys.Slots())
	}
}

func verifyJWT(t *testing.T, token string, b storage.Bundle) {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	key, ok := b.JWTAuthorities[tok.Headers[0].KeyID]
	if !ok {
		t.Fatalf("a JWT-SVID's key %s is not in the bundle", tok.Headers[0].KeyID)
	}
	var claims jwt.Claims
	if err := tok.Claims(key, &claims); err != nil {
		t.Fatalf("a JWT-SVID does not verify with its bundle key: %v", err)
	}
}

// TestRotateKeysEarly: RotateKeys prepares, publishes and activates a successor at once; the old key
// stays in the bundle.
func TestRotateKeysEarly(t *testing.T) {
	clock := newManualClock()
	e, keys := newRotatingEnv(t, clock, nil)
	first := keys.Active()
	s, err := e.srv.RotateKeys(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if keys.Active() == first || s.State != rotation.Active {
		t.Fatalf("after RotateKeys the first key still signs (slot %+v)", s)
	}
	b := e.st.Bundle()
	if len(b.X509Authorities) != 2 || len(b.JWTAuthorities) != 2 {
		t.Fatalf("bundle after an early rotation: %d roots, %d JWT keys; want the old and the new", len(b.X509Authorities), len(b.JWTAuthorities))
	}
}

// TestEntryTTLBoundedByRotation: with rotating keys an entry may not ask an SVID longer than the
// schedule's longest SVID TTL; the error names the configuration key.
func TestEntryTTLBoundedByRotation(t *testing.T) {
	e, _ := newRotatingEnv(t, newManualClock(), nil)
	e.owner(t, "alice")
	long := adminEntry("spiffe://example.org/long", agentA.String(), "alice")
	long.X509TtlSeconds = 2 * 60
	_, err := e.srv.Admin.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: long})
	wantStatus(t, "create with x509_ttl 2m", err, codes.InvalidArgument, "at most 1m0s (the longest SVID TTL of the server, ca.rotation.max_svid_ttl)")
	long.X509TtlSeconds = 0
	if _, err := e.srv.Admin.CreateEntry(testCtx(t), &adminv1.CreateEntryRequest{Entry: long}); err != nil {
		t.Fatalf("an entry without TTLs (the default, capped at the longest): %v", err)
	}
}

// TestCheckpointRenewedWhenItsKeyRetires: the automatic audit checkpoint is signed again by the new
// active key after a rotation even when the audit log did not grow, so it never depends on a key that
// will be pruned.
func TestCheckpointRenewedWhenItsKeyRetires(t *testing.T) {
	file := filepath.Join(t.TempDir(), "checkpoint.json")
	e, keys := newRotatingEnv(t, newManualClock(), func(c *Config) { c.AuditCheckpointFile = file })
	signer := func() *x509.Certificate {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		_, root, err := adminapi.ParseCheckpoint(data, keys.Roots(), testTD.Name())
		if err != nil {
			t.Fatal(err)
		}
		return root
	}
	// A successor prepared and published (the audit log grows), then a checkpoint signed by the first key.
	if _, err := keys.Rotate(e.srv.published); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.PublishAuthorities(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	e.srv.Admin.RenewCheckpoint()
	if first := keys.Active(); !signer().Equal(first.X509Authority()) {
		t.Fatal("the checkpoint is not signed by the active key")
	}
	// The successor becomes active: nothing is audited, but the checkpoint moves to the new key.
	if act, err := keys.Rotate(e.srv.published); err != nil || act == nil {
		t.Fatalf("activation: %v, %v", act, err)
	}
	e.srv.Admin.RenewCheckpoint()
	if !signer().Equal(keys.Active().X509Authority()) {
		t.Fatal("after a rotation the checkpoint is still signed by the retired key")
	}
}

// TestAdminCAStatusAndRotate: ca status lists this node's keys with their states and another node's
// published keys; ca rotate activates a new key, audited; a node whose keys do not rotate refuses it.
func TestAdminCAStatusAndRotate(t *testing.T) {
	clock := newManualClock()
	e, keys := newRotatingEnv(t, clock, nil)
	other := newCA(t)
	if err := e.srv.publish(testCtx(t), "node-other", other.X509Roots(), other.NotAfter(), other.JWTPublicKey(), other.JWTKeyID()); err != nil {
		t.Fatal(err)
	}
	st, err := e.srv.Admin.CAStatus(testCtx(t), &adminv1.CAStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Keys) != 2 || st.Keys[0].State != "active" || st.Keys[0].Node != e.st.NodeID() || !st.Keys[0].InBundle ||
		st.Keys[1].State != "published" || st.Keys[1].Node != "node-other" || st.Keys[1].JwtKeyId != other.JWTKeyID() || st.Keys[1].X509Id == "" {
		t.Fatalf("ca status: %v", st.Keys)
	}
	if st.MaxSvidTtlSeconds != 60 || st.PrepareBeforeSeconds != 120 || st.CaTtlSeconds != 600 {
		t.Fatalf("ca status schedule: %v", st)
	}
	resp, err := e.srv.Admin.RotateCA(testCtx(t), &adminv1.RotateCARequest{Reason: "drill"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Activated.Slot != "2" || resp.Activated.State != "active" || keys.Active().JWTKeyID() != resp.Activated.JwtKeyId {
		t.Fatalf("ca rotate: %v", resp.Activated)
	}
	recs, _, err := e.st.AuditLog(storage.AuditQuery{Action: "ca.rotate", Limit: 10})
	if err != nil || len(recs) != 1 || !strings.HasPrefix(recs[0].Reason, "drill (slot 2 active") {
		t.Fatalf("audit of ca rotate: %+v, %v", recs, err)
	}
	st, err = e.srv.Admin.CAStatus(testCtx(t), &adminv1.CAStatusRequest{})
	if err != nil || len(st.Keys) != 3 || st.Keys[0].State != "old" || st.Keys[1].State != "active" {
		t.Fatalf("ca status after rotate: %v, %v", st.GetKeys(), err)
	}

	plain := newEnv(t)
	_, err = plain.srv.Admin.RotateCA(testCtx(t), &adminv1.RotateCARequest{})
	wantStatus(t, "rotate without rotating keys", err, codes.FailedPrecondition, "do not rotate")
	_, err = plain.srv.Admin.RotateCA(testCtx(t), &adminv1.RotateCARequest{Reason: strings.Repeat("x", 1025)})
	wantStatus(t, "rotate with a long reason", err, codes.InvalidArgument, "reason")
}

// TestRotationRequestThroughRaft: a rotation request for this node (what 'ca rotate --node' proposes for
// another server) is handled by the node's key loop as soon as it is applied: the keys rotate, the
// request is recorded handled, and the rotation is audited by the node; an unknown node is refused.
func TestRotationRequestThroughRaft(t *testing.T) {
	e, keys := newRotatingEnv(t, newManualClock(), nil)
	first := keys.Active()
	_, err := e.srv.Admin.RotateCA(testCtx(t), &adminv1.RotateCARequest{Node: "node-nobody"})
	wantStatus(t, "rotate an unknown node", err, codes.InvalidArgument, `node "node-nobody" is not a server of this cluster`)
	r, err := e.st.RequestRotation(testCtx(t), e.st.NodeID(), "drill")
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Condition(t, testDeadline, "the key loop to handle the request", func() bool { return keys.HandledRequest() == r.Seq })
	if keys.Active() == first {
		t.Fatal("the request was recorded handled but the keys did not rotate")
	}
	waitfor.Condition(t, testDeadline, "the node's audit record of the rotation", func() bool {
		recs, _, err := e.st.AuditLog(storage.AuditQuery{Action: "ca.rotate", Limit: 10})
		return err == nil && len(recs) == 1 && recs[0].Actor == "node:"+e.st.NodeID() && strings.Contains(recs[0].Reason, "request 1 by")
	})
}

// TestRecordsNameTheRotatedKey: after a rotation, the ledger records of new X.509- and JWT-SVIDs name
// the key that signed them (the new active one), so `ledger query --signed-by` finds what each key
// signed across rotations.
func TestRecordsNameTheRotatedKey(t *testing.T) {
	e, keys := newRotatingEnv(t, newManualClock(), nil)
	first := keys.Active()
	if _, err := e.srv.RotateKeys(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	active := keys.Active()
	if active == first {
		t.Fatal("RotateKeys left the first key active")
	}
	e.owner(t, "alice")
	en := e.entry(t, "spiffe://example.org/alice/web", agentA, "alice", nil)
	caller := agentapi.Caller{AgentID: agentA, NodeAttestation: "test"}
	res, err := e.srv.Issuer.SignX509SVIDs(testCtx(t), caller, []issuer.X509Request{{EntryID: en.ID, CSR: csrFor(t, newP256(t), nil)}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("X.509-SVID after a rotation: %v %v", err, res[0].Err)
	}
	jwt, err := e.srv.Issuer.SignJWTSVID(testCtx(t), caller, en.ID, []string{"db"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, id, want, old string }{
		{"X.509-SVID", res[0].Chain[0].SerialNumber.Text(16), active.X509KeyID(), first.X509KeyID()},
		{"JWT-SVID", jwt.ID, active.JWTKeyID(), first.JWTKeyID()},
	} {
		rec, err := e.st.LookupIssuance(c.id)
		if err != nil {
			t.Fatalf("%s %s: %v", c.what, c.id, err)
		}
		if rec.SignedBy != c.want {
			t.Errorf("%s record names signer %q; want the active key %q (the first key is %q)", c.what, rec.SignedBy, c.want, c.old)
		}
	}
}
