package agent

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/agentv1"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bundleState is the trust bundle in the forms the Workload API hands out, computed once per change.
type bundleState struct {
	received       bool // false until the first bundle arrives
	sequence       uint64
	x509DER        []byte            // concatenated DER of the X.509 authorities
	jwks           []byte            // JWK Set of the JWT authorities
	jwtAuthorities *jwtbundle.Bundle // the same, to validate tokens with
	// x509Signers are the X.509 authorities' key IDs (SKI in hex), jwtKids the JWT keys' kids: an SVID
	// signed by a key not among them no longer verifies.
	x509Signers map[string]bool
	jwtKids     map[string]bool
}

// Reconnect backoff bounds.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// backoff returns the wait before attempt n (0-based): exponential with full jitter, so agents that
// lost the same server do not all come back at once.
func backoff(n int) time.Duration {
	d := minBackoff << min(n, 10)
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// syncLoop keeps a SyncEntries stream open, reconnecting with backoff, and applies every update.
func (a *Agent) syncLoop(ctx context.Context) {
	for attempt := 0; ; {
		err := a.syncOnce(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return
		}
		if isRevocation(err) {
			a.revoke(err)
			return
		}
		wait := backoff(attempt)
		attempt++
		a.log.Warn("entry sync interrupted; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

// syncOnce runs one SyncEntries stream until it fails. onProgress is called after each applied update.
func (a *Agent) syncOnce(ctx context.Context, onProgress func()) error {
	a.mu.RLock()
	known := a.revision
	a.mu.RUnlock()
	stream, err := a.cfg.Client.SyncEntries(ctx, &agentv1.SyncEntriesRequest{KnownRevision: known})
	if err != nil {
		return fmt.Errorf("agent: open entry sync: %w", err)
	}
	var pending []*agentv1.SyncEntriesResponse
	for {
		msg, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("agent: entry sync: server closed the stream")
			}
			if status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("agent: entry sync: %w", err)
		}
		if msg.Bundle != nil {
			if err := a.applyBundle(msg.Bundle); err != nil {
				return err
			}
		}
		if err := a.applyFederated(msg); err != nil {
			return err
		}
		pending = append(pending, msg)
		if msg.More {
			continue
		}
		if err := a.applyUpdate(pending); err != nil {
			return err
		}
		pending = pending[:0]
		onProgress()
	}
}

// applyBundle installs a new trust bundle.
func (a *Agent) applyBundle(b *agentv1.Bundle) error {
	if b.TrustDomain != a.cfg.TrustDomain.Name() {
		return fmt.Errorf("agent: bundle for trust domain %q, this agent is in %q", b.TrustDomain, a.cfg.TrustDomain.Name())
	}
	// Every new stream starts with the current bundle: after a reconnect it is usually the one the agent
	// already has, and nothing needs to change (nor be written to disk by OnBundle).
	a.mu.RLock()
	have := a.bundle.received && a.bundle.sequence == b.Sequence
	a.mu.RUnlock()
	if have {
		return nil
	}
	st := bundleState{received: true, sequence: b.Sequence, x509Signers: map[string]bool{}, jwtKids: map[string]bool{}}
	jwtKeys := make(map[string]crypto.PublicKey, len(b.JwtAuthorities))
	roots := make([]*x509.Certificate, 0, len(b.X509Authorities)) // for OnBundle
	for i, der := range b.X509Authorities {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("agent: bundle X.509 authority %d: %w", i, err)
		}
		roots = append(roots, c)
		st.x509DER = append(st.x509DER, der...)
		st.x509Signers[ca.X509KeyID(c)] = true
	}
	for _, k := range b.JwtAuthorities {
		pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
		if err != nil {
			return fmt.Errorf("agent: bundle JWT authority %q: %w", k.KeyId, err)
		}
		jwtKeys[k.KeyId] = pub
		st.jwtKids[k.KeyId] = true
	}
	jwks, err := ca.MarshalJWTBundle(jwtKeys)
	if err != nil {
		return fmt.Errorf("agent: bundle: %w", err)
	}
	st.jwks = jwks
	revokedSigners := b.RevokedSigners
	if len(revokedSigners) > maxRemovedKeys {
		revokedSigners = revokedSigners[len(revokedSigners)-maxRemovedKeys:]
	}
	for _, k := range revokedSigners {
		if len(k) > maxKeyIDLen {
			return fmt.Errorf("agent: bundle: revoked signer ID of %d bytes: want at most %d", len(k), maxKeyIDLen)
		}
	}
	st.jwtAuthorities = jwtbundle.FromJWTAuthorities(a.cfg.TrustDomain, jwtKeys)
	a.mu.Lock()
	old := a.bundle
	a.bundle = st
	for k := range old.x509Signers {
		if !st.x509Signers[k] {
			a.removedKeys.add(k)
		}
	}
	for k := range old.jwtKids {
		if !st.jwtKids[k] {
			a.removedKeys.add(k)
		}
	}
	for _, k := range revokedSigners {
		a.removedKeys.add(k)
	}
	dropped := a.dropUnverifiedLocked(roots)
	a.notifyLocked()
	a.mu.Unlock()
	if n := a.jwts.dropSignedBy(st.jwtKids); n > 0 {
		a.log.Warn("JWT-SVIDs signed by a key no longer in the bundle dropped from the cache", "tokens", n, "bundle_sequence", st.sequence)
	}
	if dropped > 0 {
		// A key left the bundle (revoked after a compromise): what it signed is minted again at once.
		a.log.Warn("X.509-SVIDs signed by a key no longer in the bundle dropped; minting them again", "svids", dropped, "bundle_sequence", st.sequence)
		a.wakeMinter()
	}
	if a.cfg.OnBundle != nil {
		a.cfg.OnBundle(roots, revokedSigners)
	}
	return nil
}

// dropUnverifiedLocked drops every SVID whose signer is not an authority of the bundle just installed
// (roots): it would not verify; and every SVID a revoked upstream intermediate signed. Those still in use
// are minted again by the mint loop.
func (a *Agent) dropUnverifiedLocked(roots []*x509.Certificate) int {
	n := 0
	for _, e := range a.entries {
		if e.svid != nil && (!e.svid.verifiesTo(a.bundle.x509Signers, roots) || e.svid.signedByRemoved(&a.removedKeys)) {
			e.svid = nil
			n++
		}
	}
	return n
}

// applyUpdate applies one complete update (one or more messages).
func (a *Agent) applyUpdate(msgs []*agentv1.SyncEntriesResponse) error {
	last := msgs[len(msgs)-1]
	full := msgs[0].Full
	upserts := map[string]*entryState{}
	var deleted []string
	for _, m := range msgs {
		for _, pe := range m.Entries {
			es, err := a.parseEntry(pe)
			if err != nil {
				// One bad entry must not stop the others; the server validated it, so this is a bug.
				a.log.Error("ignoring entry the agent cannot use", "entry", pe.Id, "error", err)
				continue
			}
			upserts[pe.Id] = es
		}
		deleted = append(deleted, m.Deleted...)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if full {
		for id, old := range a.entries {
			if _, keep := upserts[id]; !keep {
				a.removeEntryLocked(old)
			}
		}
	}
	for _, id := range deleted {
		if old, ok := a.entries[id]; ok {
			a.removeEntryLocked(old)
		}
	}
	for id, es := range upserts {
		if old, ok := a.entries[id]; ok {
			if old.svid != nil && old.svid.mintedFor(es.entry) {
				es.svid = old.svid // still valid for the changed entry: keep it
			}
			es.lastUsed.Store(old.lastUsed.Load())
			a.indexRemoveLocked(old)
		}
		a.entries[id] = es
		a.indexAddLocked(es)
	}
	a.revision = last.Revision
	a.synced = true
	a.notifyLocked()
	a.wakeMinter()
	return nil
}

func (a *Agent) removeEntryLocked(e *entryState) {
	a.indexRemoveLocked(e)
	delete(a.entries, e.entry.Id)
	a.jwts.dropEntry(e.entry.Id)
}

func (a *Agent) parseEntry(pe *agentv1.Entry) (*entryState, error) {
	id, err := spiffeid.FromString(pe.SpiffeId)
	if err != nil {
		return nil, fmt.Errorf("spiffe_id %q: %w", pe.SpiffeId, err)
	}
	if id.TrustDomain() != a.cfg.TrustDomain {
		return nil, fmt.Errorf("spiffe_id %q: not in trust domain %q", pe.SpiffeId, a.cfg.TrustDomain.Name())
	}
	sels := make([]selector.Selector, 0, len(pe.Selectors))
	for _, s := range pe.Selectors {
		sel, err := selector.Parse(s)
		if err != nil {
			return nil, err
		}
		sels = append(sels, sel)
	}
	if len(sels) == 0 {
		return nil, errors.New("no selectors")
	}
	es := &entryState{entry: pe, selectors: selector.Normalize(sels)}
	if pe.ExpiresAt != 0 {
		es.expiresAt = time.Unix(pe.ExpiresAt, 0)
	}
	return es, nil
}
