package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
)

// Upstream authority roots in the bundle. A root of an upstream authority is one authority of the bundle
// however many keys (of however many servers) chain to it: the first server to publish it owns it, with
// the NotAfter of its key. Every server whose key chains to it raises that NotAfter to its key's
// (RetainAuthority), so the owner, which removes the root once none of its own keys needs it and its
// NotAfter has passed, never removes a root another server's key still chains to.

type authorityRetainCmd struct {
	Kind     AuthorityKind
	ID       string
	NotAfter time.Time
	Meta     auditMeta
}

func (c authorityRetainCmd) wire() *raftv1.AuthorityRetain {
	return &raftv1.AuthorityRetain{Kind: string(c.Kind), Id: c.ID, NotAfter: timeToWire(c.NotAfter), Meta: metaToWire(c.Meta)}
}

func authorityRetainFromWire(m *raftv1.AuthorityRetain) authorityRetainCmd {
	return authorityRetainCmd{Kind: AuthorityKind(m.GetKind()), ID: m.GetId(), NotAfter: timeFromWire(m.GetNotAfter()), Meta: metaFromWire(m.GetMeta())}
}

// RetainAuthority keeps an authority of the bundle at least until notAfter: its NotAfter is raised to it,
// never lowered, and an authority not in the bundle is left alone (a no-op). Audited as
// bundle.retain-<kind>. The leader proposes it once every server understands command version 9; until
// then it fails with ErrUpgradeInProgress.
func (s *Store) RetainAuthority(ctx context.Context, kind AuthorityKind, id string, notAfter time.Time) error {
	if _, err := s.propose(ctx, cmdAuthorityRetain, authorityRetainCmd{Kind: kind, ID: id, NotAfter: notAfter.UTC(), Meta: s.newMeta(ctx, "")}.wire()); err != nil {
		return fmt.Errorf("storage: retain %s authority %s until %s: %w", kind, id, notAfter.UTC().Format(time.RFC3339), err)
	}
	return nil
}

func applyAuthorityRetain(tx *bolt.Tx, c authorityRetainCmd) (applied, error) {
	if c.NotAfter.IsZero() {
		return applied{}, fmt.Errorf("retain %s authority %s: %w: not_after is required", c.Kind, c.ID, ErrInvalid)
	}
	b := tx.Bucket(bucketAuthorities)
	k := []byte(c.Kind.key(c.ID))
	v := b.Get(k)
	if v == nil {
		return applied{}, nil // not in the bundle: nothing to keep
	}
	var old Authority
	if err := decodeStored("authority", c.ID, v, &old); err != nil {
		return applied{}, err
	}
	if !old.NotAfter.Before(c.NotAfter) {
		return applied{}, nil // kept that long already
	}
	a := old
	a.NotAfter = c.NotAfter.UTC()
	mustPut(b, k, mustJSON(&a))
	appendAudit(tx, c.Meta.record("bundle.retain-"+string(a.Kind), a.ID), &old, &a)
	// The bundle's content is unchanged (its sequence too); the registry's view of the authority is not.
	seq := getUint64(tx.Bucket(bucketMeta), keyBundleSeq)
	return applied{resp: nil, publish: func(r *registry) { r.authorityPut(&a, seq) }}, nil
}
