package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/proto/agentv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// x509SVID is a minted SVID with its key, kept in the forms the Workload API sends.
type x509SVID struct {
	serial    string
	chainDER  []byte // leaf first, concatenated DER (the parsed certificate is not kept: 100k entries)
	keyDER    []byte // PKCS#8
	notBefore time.Time
	notAfter  time.Time
	// mintedAt is when the agent received it (its clock): a fetch since then asks for its renewal.
	mintedAt time.Time
	// signer is the key ID (hex Authority Key Identifier) of the authority that signed the chain's top
	// certificate: the bundle's root it chains to ("" if the certificate names none).
	signer string
	// issuer is the key ID (hex Authority Key Identifier) of the key that signed the leaf: under an
	// upstream authority, the server's intermediate, which a revocation names (Bundle.revoked_signers).
	issuer string
	// What the SVID was minted for: an entry change to any of these needs a new SVID.
	spiffeID string
	x509TTL  int64
	dnsNames []string
}

// mintedFor reports whether the SVID still fits the entry (same identity, lifetime and DNS names).
func (s *x509SVID) mintedFor(e *agentv1.Entry) bool {
	return s.spiffeID == e.SpiffeId && s.x509TTL == e.X509TtlSeconds && slices.Equal(s.dnsNames, e.DnsNames)
}

// verifiesTo reports whether the SVID chains to an authority of a bundle whose X.509 key IDs are
// signers (roots, parsed): by the signer's key ID, or, for a chain naming none, by signature.
func (s *x509SVID) verifiesTo(signers map[string]bool, roots []*x509.Certificate) bool {
	if s.signer != "" {
		return signers[s.signer]
	}
	chain, err := x509.ParseCertificates(s.chainDER)
	if err != nil || len(chain) == 0 {
		return false
	}
	top := chain[len(chain)-1]
	return slices.ContainsFunc(roots, func(r *x509.Certificate) bool { return top.CheckSignatureFrom(r) == nil })
}

// signedByRemoved reports whether a key that has left the bundle, or a revoked intermediate, signed the
// SVID or its chain's top.
func (s *x509SVID) signedByRemoved(r *removedKeys) bool { return r.has(s.signer) || r.has(s.issuer) }

// rotateAt is half-way through the SVID's life, counted from issuance: NotBefore is backdated for
// clock skew, so the lifetime the entry asked for (x509TTL) is what is halved.
func (s *x509SVID) rotateAt() time.Time { return s.notAfter.Add(-s.life() / 2) }

// life is the SVID's lifetime as the entry asked for it (without the backdating).
func (s *x509SVID) life() time.Duration {
	life := s.notAfter.Sub(s.notBefore)
	if ttl := time.Duration(s.x509TTL) * time.Second; ttl > 0 && ttl < life {
		life = ttl
	}
	return life
}

// signTimeout bounds one signing call to the server (a batch of X.509-SVIDs or one JWT-SVID).
const signTimeout = 30 * time.Second

// mintRetry is how long an entry whose SVID request failed waits before it is tried again.
const mintRetry = 5 * time.Second

// firstMintBatch is the size of the first signing call after start.
const firstMintBatch = 32

// mintLoop mints SVIDs for entries that have none, changed, or passed half life; drops expired ones;
// and sleeps until the next such moment or until an update wakes it.
func (a *Agent) mintLoop(ctx context.Context) {
	failedUntil := map[string]time.Time{}
	attempt := 0
	// Batches start small and double up to MintBatch, so the first SVIDs are served within one short
	// round trip of start, not after a full batch.
	batch := min(firstMintBatch, a.cfg.MintBatch)
	for {
		now := a.cfg.Clock()
		a.expire(now)
		due, next := a.dueForMint(now, failedUntil, batch, a.takeWanted())
		batch = min(batch*2, a.cfg.MintBatch)
		if len(due) > 0 {
			if err := a.mint(ctx, due, failedUntil); err != nil {
				if ctx.Err() != nil {
					return
				}
				wait := backoff(attempt)
				if status.Code(err) == codes.ResourceExhausted {
					// The server's own limit (issuance rate, disk nearly full): its buckets refill in
					// seconds, not in the 200 ms of a first retry.
					wait = max(wait, mintRetry)
				}
				attempt++
				a.log.Warn("minting SVIDs failed; will retry", "entries", len(due), "error", err, "retry_in", wait.Round(time.Millisecond))
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			} else {
				attempt = 0
			}
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(max(next.Sub(now), time.Millisecond))
			fire = timer.C
		}
		select {
		case <-a.mintWake:
		case <-fire:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// expire drops SVIDs that have expired, those of expired entries, so no stream serves them, and those
// no workload used for a whole SVID lifetime, so they stop being renewed.
func (a *Agent) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := false
	streamed := a.streamedLocked()
	for _, e := range a.entries {
		if e.svid != nil && (!now.Before(e.svid.notAfter) || e.expired(now) || !inUse(e, streamed, now)) {
			e.svid = nil
			changed = true
		}
	}
	if changed {
		a.notifyLocked()
	}
}

// dueForMint returns the entries in use that need an SVID now (up to limit, those in wanted first), and
// the next time one will (or an SVID stops being in use).
func (a *Agent) dueForMint(now time.Time, failedUntil map[string]time.Time, limit int, wanted map[string]bool) (due []*agentv1.Entry, next time.Time) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	streamed := a.streamedLocked()
	needs := func(e *entryState) bool {
		if e.svid == nil || !e.svid.mintedFor(e.entry) {
			return inUse(e, streamed, now)
		}
		return !now.Before(e.svid.rotateAt()) && renewable(e, streamed, now)
	}
	taken := map[string]bool{}
	for id := range wanted {
		if e, ok := a.entries[id]; ok && !e.expired(now) && needs(e) && len(due) < limit {
			if until, failed := failedUntil[id]; !failed || !now.Before(until) {
				due = append(due, e.entry)
				taken[id] = true
			}
		}
	}
	for id, e := range a.entries {
		if e.expired(now) || taken[id] {
			continue
		}
		if !e.expiresAt.IsZero() {
			soonest(e.expiresAt)
		}
		if until, ok := failedUntil[id]; ok && now.Before(until) {
			soonest(until)
			continue
		}
		if needs(e) {
			if len(due) < limit {
				due = append(due, e.entry)
			} else {
				soonest(now)
			}
			continue
		}
		if e.svid == nil {
			continue // not in use: minted when a workload asks
		}
		if r := e.svid.rotateAt(); now.Before(r) {
			soonest(r)
		}
		soonest(e.svid.notAfter)
		if u := e.usedUntil(); !e.entry.Prefetch && !streamed[id] && !u.IsZero() {
			soonest(u) // then it is dropped unless fetched again
		}
	}
	for id := range failedUntil {
		if _, ok := a.entries[id]; !ok {
			delete(failedUntil, id)
		}
	}
	return due, next
}

type mintKey struct {
	entry *agentv1.Entry
	key   *ecdsa.PrivateKey
}

// mint generates a key and CSR per entry, has the server sign them in one call, and installs the
// results. It fails as a whole only when the call fails; per-entry refusals are logged and retried later.
func (a *Agent) mint(ctx context.Context, entries []*agentv1.Entry, failedUntil map[string]time.Time) error {
	req := &agentv1.SignX509SVIDsRequest{Requests: make([]*agentv1.X509SVIDRequest, 0, len(entries))}
	keys := make(map[string]mintKey, len(entries))
	for _, e := range entries {
		key, csr, err := newKeyAndCSR(e.SpiffeId)
		if err != nil {
			return err
		}
		keys[e.Id] = mintKey{entry: e, key: key}
		req.Requests = append(req.Requests, &agentv1.X509SVIDRequest{EntryId: e.Id, Csr: csr})
	}
	callCtx, cancel := context.WithTimeout(ctx, signTimeout)
	defer cancel()
	resp, err := a.cfg.Client.SignX509SVIDs(callCtx, req)
	if err != nil {
		if isRevocation(err) {
			a.revoke(err)
		}
		return fmt.Errorf("agent: sign %d X.509-SVIDs: %w", len(entries), err)
	}
	now := a.cfg.Clock()
	minted := map[string]*x509SVID{}
	for _, r := range resp.Results {
		mk, ok := keys[r.EntryId]
		if !ok {
			continue
		}
		if r.ErrorCode != 0 {
			failedUntil[r.EntryId] = now.Add(mintRetry)
			level := a.log.Warn
			if codes.Code(r.ErrorCode) == codes.PermissionDenied {
				level = a.log.Info // typically an entry removed while we asked
			}
			level("server refused an X.509-SVID", "entry", r.EntryId, "code", codes.Code(r.ErrorCode).String(), "error", r.ErrorMessage)
			continue
		}
		s, err := newX509SVID(mk, r.CertChain)
		if err != nil {
			failedUntil[r.EntryId] = now.Add(mintRetry)
			a.log.Error("server returned an unusable X.509-SVID", "entry", r.EntryId, "error", err)
			continue
		}
		s.mintedAt = now
		delete(failedUntil, r.EntryId)
		minted[r.EntryId] = s
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, s := range minted {
		if s.signedByRemoved(&a.removedKeys) {
			// Signed by a key that has left the bundle (revoked): its server has not replaced it yet.
			failedUntil[id] = now.Add(mintRetry)
			a.log.Warn("server returned an X.509-SVID signed by a key no longer in the bundle; asking again", "entry", id, "signer", s.signer)
			continue
		}
		// Install only if the entry still exists and still wants this SVID.
		if cur, ok := a.entries[id]; ok && s.mintedFor(cur.entry) {
			cur.svid = s
		}
	}
	if len(minted) > 0 {
		a.notifyLocked()
	}
	return nil
}

// newKeyAndCSR returns a fresh P-256 key and a CSR for it naming spiffeID, or naming nothing when
// spiffeID is "" (an agent before attestation, whose ID the server chooses).
func newKeyAndCSR(spiffeID string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: generate key: %w", err)
	}
	var tmpl x509.CertificateRequest
	if spiffeID != "" {
		u, err := url.Parse(spiffeID)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: SPIFFE ID %q: %w", spiffeID, err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: create CSR for %q: %w", spiffeID, err)
	}
	return key, csr, nil
}

func newX509SVID(mk mintKey, chain [][]byte) (*x509SVID, error) {
	if len(chain) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&mk.key.PublicKey) {
		return nil, errors.New("certificate is not for the key the agent generated")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != mk.entry.SpiffeId {
		return nil, fmt.Errorf("certificate is not for %s", mk.entry.SpiffeId)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(mk.key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	s := &x509SVID{
		serial: leaf.SerialNumber.Text(16), keyDER: keyDER,
		notBefore: leaf.NotBefore, notAfter: leaf.NotAfter,
		spiffeID: mk.entry.SpiffeId, x509TTL: mk.entry.X509TtlSeconds, dnsNames: mk.entry.DnsNames,
	}
	top := leaf
	for i, c := range chain {
		s.chainDER = append(s.chainDER, c...)
		if i > 0 && i == len(chain)-1 {
			if top, err = x509.ParseCertificate(c); err != nil {
				return nil, fmt.Errorf("parse certificate %d of the chain: %w", i, err)
			}
		}
	}
	s.signer, s.issuer = ca.SignerKeyID(top), ca.SignerKeyID(leaf)
	return s, nil
}
