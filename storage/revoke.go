package storage

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
)

// RevokedKey is a CA key revoked after a compromise (signet ca revoke-key): out of the bundle for good.
// A node publishing it again is refused.
type RevokedKey struct {
	Kind AuthorityKind `json:"kind"`
	// ID is the authority's ID in the bundle (Authority.ID); SignerID the ID the ledger records the key
	// under (Issuance.SignedBy: an X.509 root's Subject Key Identifier in hex, a JWT key's kid).
	ID       string    `json:"id"`
	SignerID string    `json:"signer_id"`
	Node     string    `json:"node"`
	NotAfter time.Time `json:"not_after"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Reason   string    `json:"reason"`
	// RequestedBy is the admin who asked, when a second admin (By) approved the revocation.
	RequestedBy string `json:"requested_by,omitempty"`
}

// PendingRevocation is a key revocation that waits for a second admin (the policy asked for it).
type PendingRevocation struct {
	Kind   AuthorityKind `json:"kind"`
	ID     string        `json:"id"`
	By     string        `json:"by"`
	At     time.Time     `json:"at"`
	Reason string        `json:"reason"`
	Rules  []string      `json:"rules"`
}

// MaxRevokeReason bounds a key revocation's reason.
const MaxRevokeReason = 1024

// MaxRevokedSigners bounds the revoked intermediates the bundle lists for agents (Bundle.RevokedSigners):
// the most recent ones. Intermediates live no longer than a CA key (ca.ttl), and revocations are rare.
const MaxRevokedSigners = 64

// maxKeyIDLen bounds an intermediate's key ID (a Subject Key Identifier in hex) and a node ID in a
// revocation.
const maxKeyIDLen = 128

// maxPendingRules bounds the policy rules a pending revocation names (the policy's own bound).
const maxPendingRules = MaxPolicyRules

const (
	keyRevokedPrefix = "revoked_key/"        // meta: + kind/id -> JSON of RevokedKey
	keyPendingPrefix = "revoke_key_pending/" // meta: + kind/id -> JSON of PendingRevocation
)

type keyRevokeCmd struct {
	Kind         AuthorityKind
	ID           string
	Meta         auditMeta // Meta.Reason is the revocation's reason
	PendingRules []string
	Approve      bool
	// Node and NotAfter describe an upstream intermediate (kind x509-intermediate), which is in no bundle.
	Node     string
	NotAfter time.Time
}

func (c keyRevokeCmd) wire() *raftv1.KeyRevoke {
	m := &raftv1.KeyRevoke{Kind: string(c.Kind), Id: c.ID, Meta: metaToWire(c.Meta), PendingRules: c.PendingRules, Approve: c.Approve, Node: c.Node}
	if !c.NotAfter.IsZero() {
		m.NotAfter = c.NotAfter.Unix()
	}
	return m
}

func keyRevokeFromWire(m *raftv1.KeyRevoke) keyRevokeCmd {
	c := keyRevokeCmd{Kind: AuthorityKind(m.GetKind()), ID: m.GetId(), Meta: metaFromWire(m.GetMeta()), PendingRules: m.GetPendingRules(), Approve: m.GetApprove(), Node: m.GetNode()}
	if m.GetNotAfter() != 0 {
		c.NotAfter = time.Unix(m.GetNotAfter(), 0).UTC()
	}
	return c
}

// checkKind checks the kind of a key-revoke command against its type: key-revoke takes the bundle's
// keys (x509, jwt), key-revoke-intermediate an upstream intermediate, named by its Subject Key
// Identifier in lowercase hex, with the node that owns it.
func (c keyRevokeCmd) checkKind(obj string, intermediate bool) error {
	switch {
	case !intermediate && c.Kind != AuthorityX509 && c.Kind != AuthorityJWT:
		return fmt.Errorf("key revocation: %w: kind %q: want x509 or jwt", ErrInvalid, c.Kind)
	case !intermediate && (c.Node != "" || !c.NotAfter.IsZero()):
		return fmt.Errorf("%s: %w: node and not_after describe an upstream intermediate only", obj, ErrInvalid)
	case !intermediate:
		return nil
	case c.Kind != AuthorityX509Intermediate:
		return fmt.Errorf("key revocation: %w: kind %q: want %s", ErrInvalid, c.Kind, AuthorityX509Intermediate)
	case len(c.ID) < 2 || len(c.ID) > maxKeyIDLen || strings.Trim(c.ID, "0123456789abcdef") != "":
		return fmt.Errorf("%s: %w: want its Subject Key Identifier in lowercase hex, at most %d characters", obj, ErrInvalid, maxKeyIDLen)
	case c.Node == "" || len(c.Node) > maxKeyIDLen:
		return fmt.Errorf("%s: %w: node of %d bytes: want 1 to %d", obj, ErrInvalid, len(c.Node), maxKeyIDLen)
	}
	return nil
}

// KeyRevokeResult is what a key-revoke command did: the key revoked, or the revocation left pending.
type KeyRevokeResult struct {
	Revoked *RevokedKey        `json:"revoked,omitempty"`
	Pending *PendingRevocation `json:"pending,omitempty"`
}

// applyKeyRevoke revokes a key, records a revocation pending approval, or approves one. policyChecked
// says whether the command was decided under the current policy (a pending request or a revocation
// needs that; an approval does not).
func applyKeyRevoke(tx *bolt.Tx, c keyRevokeCmd, policyChecked, intermediate bool) (applied, error) {
	obj := string(c.Kind) + " key " + c.ID
	if err := c.checkKind(obj, intermediate); err != nil {
		return applied{}, err
	}
	switch {
	case !c.Approve && (c.Meta.Reason == "" || len(c.Meta.Reason) > MaxRevokeReason):
		return applied{}, fmt.Errorf("%s: %w: reason of %d bytes: want 1 to %d", obj, ErrInvalid, len(c.Meta.Reason), MaxRevokeReason)
	case len(c.PendingRules) > maxPendingRules || (c.Approve && len(c.PendingRules) > 0):
		return applied{}, fmt.Errorf("%s: %w: %d pending rules (approve %v)", obj, ErrInvalid, len(c.PendingRules), c.Approve)
	}
	if !c.Approve && !policyChecked {
		if err := checkPolicyRevision(tx, cmdKeyRevoke, 0); err != nil {
			return applied{}, err
		}
	}
	meta := tx.Bucket(bucketMeta)
	k := c.Kind.key(c.ID)
	if v := meta.Get([]byte(keyRevokedPrefix + k)); v != nil {
		var r RevokedKey
		if err := decodeStored("revoked key", c.ID, v, &r); err != nil {
			return applied{}, err
		}
		return applied{}, fmt.Errorf("%s: %w: already revoked by %s at %s", obj, ErrInvalid, r.By, r.At.Format(time.RFC3339))
	}
	// An intermediate is in no bundle: the command describes it (its node checks that it holds it).
	a := Authority{Kind: c.Kind, ID: c.ID, Node: c.Node, NotAfter: c.NotAfter}
	if !intermediate {
		v := tx.Bucket(bucketAuthorities).Get([]byte(k))
		if v == nil {
			return applied{}, fmt.Errorf("%s: %w: not in the bundle", obj, ErrInvalid)
		}
		if err := decodeStored("authority", c.ID, v, &a); err != nil {
			return applied{}, err
		}
	}
	pendingKey := []byte(keyPendingPrefix + k)
	var pending *PendingRevocation
	if v := meta.Get(pendingKey); v != nil {
		pending = &PendingRevocation{}
		if err := decodeStored("pending revocation", c.ID, v, pending); err != nil {
			return applied{}, err
		}
	}
	if len(c.PendingRules) > 0 {
		if pending != nil {
			return applied{}, fmt.Errorf("%s: %w: a revocation by %s waits for approval already (another admin approves it)", obj, ErrInvalid, pending.By)
		}
		p := PendingRevocation{Kind: c.Kind, ID: c.ID, By: c.Meta.Actor, At: c.Meta.Time, Reason: c.Meta.Reason, Rules: slices.Clone(c.PendingRules)}
		mustPut(meta, pendingKey, mustJSON(&p))
		appendAudit(tx, c.Meta.record("ca.revoke-key.request", obj), nil, &p)
		return applied{resp: KeyRevokeResult{Pending: &p}}, nil
	}
	r := RevokedKey{Kind: c.Kind, ID: c.ID, SignerID: c.ID, Node: a.Node, NotAfter: a.NotAfter, At: c.Meta.Time, By: c.Meta.Actor, Reason: c.Meta.Reason}
	if c.Approve {
		switch {
		case pending == nil:
			return applied{}, fmt.Errorf("%s: %w: no revocation of it waits for approval", obj, ErrNotPending)
		case pending.By == c.Meta.Actor:
			return applied{}, fmt.Errorf("%s: %w: %s asked for the revocation; another admin approves it", obj, ErrSameApprover, pending.By)
		}
		r.Reason, r.RequestedBy = pending.Reason, pending.By
	}
	if c.Kind == AuthorityX509 {
		if cert, err := x509.ParseCertificate(a.DER); err == nil {
			r.SignerID = hex.EncodeToString(cert.SubjectKeyId)
		}
	}
	seq := nextBundleSeq(meta)
	if !intermediate {
		mustDelete(tx.Bucket(bucketAuthorities), []byte(k))
	}
	if pending != nil {
		mustDelete(meta, pendingKey)
	}
	mustPut(meta, []byte(keyRevokedPrefix+k), mustJSON(&r))
	rec := c.Meta.record("ca.revoke-key", obj)
	rec.Reason = r.Reason
	if c.Approve {
		rec.Reason = fmt.Sprintf("approved the request of %s: %s", r.RequestedBy, r.Reason)
	}
	if intermediate {
		appendAudit(tx, rec, nil, &r)
		return applied{resp: KeyRevokeResult{Revoked: &r}, publish: func(reg *registry) { reg.signerRevoke(c.ID, seq) }}, nil
	}
	appendAudit(tx, rec, &a, &r)
	return applied{resp: KeyRevokeResult{Revoked: &r}, publish: func(reg *registry) { reg.authorityRemove(c.Kind, c.ID, seq) }}, nil
}

// readRevokedSigners returns the key IDs of the revoked upstream intermediates, oldest revocation first.
func readRevokedSigners(tx *bolt.Tx) ([]string, error) {
	prefix := keyRevokedPrefix + AuthorityX509Intermediate.key("")
	var rs []RevokedKey
	c := tx.Bucket(bucketMeta).Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		var r RevokedKey
		if err := decodeStored("revoked key", string(k[len(prefix):]), v, &r); err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	slices.SortStableFunc(rs, func(x, y RevokedKey) int { return x.At.Compare(y.At) })
	ids := make([]string, 0, len(rs))
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids, nil
}

// checkNotRevoked refuses to publish an authority that was revoked.
func checkNotRevoked(tx *bolt.Tx, kind AuthorityKind, id string) error {
	if tx.Bucket(bucketMeta).Get([]byte(keyRevokedPrefix+kind.key(id))) != nil {
		return fmt.Errorf("%s authority %s: %w: it was revoked (signet ca revoke-key) and never comes back; the node must use a new key", kind, id, ErrInvalid)
	}
	return nil
}

// RevokeKey revokes the CA key (kind, id) of the bundle, through Raft, audited as ca.revoke-key with
// reason: it leaves the bundle at once and can never be published again; the node that owns it replaces
// it (server.Server's key loop). With pendingRules (the policy asks a second admin), the revocation waits
// instead (ca.revoke-key.request) until another admin approves it (ApproveKeyRevocation). An unknown or
// already revoked key, or an empty reason, is ErrInvalid.
func (s *Store) RevokeKey(ctx context.Context, kind AuthorityKind, id, reason string, pendingRules []string) (KeyRevokeResult, error) {
	return s.proposeKeyRevoke(ctx, keyRevokeCmd{Kind: kind, ID: id, Meta: s.newMeta(ctx, reason), PendingRules: pendingRules})
}

// ApproveKeyRevocation carries out the pending revocation of (kind, id) as the second admin: the one who
// asked cannot (ErrSameApprover); none pending is ErrNotPending.
func (s *Store) ApproveKeyRevocation(ctx context.Context, kind AuthorityKind, id string) (KeyRevokeResult, error) {
	return s.proposeKeyRevoke(ctx, keyRevokeCmd{Kind: kind, ID: id, Meta: s.newMeta(ctx, ""), Approve: true})
}

// Intermediate is an upstream authority's intermediate that signs a node's X.509-SVIDs: in no bundle.
type Intermediate struct {
	// ID is its Subject Key Identifier in lowercase hex (the ledger's signed_by).
	ID   string
	Node string
	// NotAfter is zero when the server proposing the revocation does not know it (another node's).
	NotAfter time.Time
}

// RevokeIntermediate revokes an upstream intermediate (command key-revoke-intermediate, command version
// 11) as RevokeKey revokes a bundle key: recorded for good and audited as ca.revoke-key; the bundle's
// sequence moves and its RevokedSigners lists it, so agents drop what chains through it; the node that
// owns it replaces it. With approve, it carries out a pending revocation as the second admin.
func (s *Store) RevokeIntermediate(ctx context.Context, in Intermediate, reason string, pendingRules []string, approve bool) (KeyRevokeResult, error) {
	c := keyRevokeCmd{Kind: AuthorityX509Intermediate, ID: in.ID, Meta: s.newMeta(ctx, reason), PendingRules: pendingRules, Approve: approve,
		Node: in.Node, NotAfter: in.NotAfter}
	resp, err := s.propose(ctx, cmdKeyRevokeIntermediate, c.wire())
	if err != nil {
		return KeyRevokeResult{}, fmt.Errorf("storage: revoke %s key %s: %w", c.Kind, c.ID, err)
	}
	return resp.(KeyRevokeResult), nil
}

func (s *Store) proposeKeyRevoke(ctx context.Context, c keyRevokeCmd) (KeyRevokeResult, error) {
	resp, err := s.propose(ctx, cmdKeyRevoke, c.wire())
	if err != nil {
		return KeyRevokeResult{}, fmt.Errorf("storage: revoke %s key %s: %w", c.Kind, c.ID, err)
	}
	return resp.(KeyRevokeResult), nil
}

// RevokedKeys returns every revoked CA key, oldest revocation first.
func (s *Store) RevokedKeys() ([]RevokedKey, error) {
	return listMeta[RevokedKey](s, keyRevokedPrefix, "revoked key", func(x, y RevokedKey) int { return x.At.Compare(y.At) })
}

// PendingRevocations returns the key revocations waiting for a second admin, oldest first.
func (s *Store) PendingRevocations() ([]PendingRevocation, error) {
	return listMeta[PendingRevocation](s, keyPendingPrefix, "pending revocation", func(x, y PendingRevocation) int { return x.At.Compare(y.At) })
}

func listMeta[T any](s *Store, prefix, what string, order func(x, y T) int) ([]T, error) {
	var out []T
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMeta).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && len(k) >= len(p) && string(k[:len(p)]) == prefix; k, v = c.Next() {
			var x T
			if err := decodeStored(what, string(k[len(p):]), v, &x); err != nil {
				return err
			}
			out = append(out, x)
		}
		return nil
	})
	slices.SortStableFunc(out, order)
	return out, err
}
