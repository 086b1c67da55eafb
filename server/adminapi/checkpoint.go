package adminapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/storage"
)

// CheckpointPurpose is the statement purpose (ca.SignStatement) of audit checkpoints.
const CheckpointPurpose = "signet-audit-checkpoint/v1"

// MaxCheckpointFileSize bounds a checkpoint file read by ParseCheckpoint.
const MaxCheckpointFileSize = 64 << 10

// ErrBadCheckpoint marks a checkpoint file that is malformed, signed by no root of the bundle, or of
// another trust domain.
var ErrBadCheckpoint = errors.New("bad audit checkpoint")

// AuditCheckpoint is the statement a node signs: the audit chain's head at a moment.
type AuditCheckpoint struct {
	TrustDomain string    `json:"trust_domain"`
	Node        string    `json:"node"`
	Seq         uint64    `json:"seq"`
	HeadHash    string    `json:"head_hash"`
	Time        time.Time `json:"time"`
	// RestoreID names the snapshot restore the chain comes from (storage.Store.RestoreID), if any.
	RestoreID string `json:"restore_id,omitempty"`
}

// CheckpointFile is what `signet audit checkpoint` writes: the statement as signed (compact JSON,
// embedded), the signature and the signing root.
type CheckpointFile struct {
	Statement json.RawMessage `json:"statement"`
	Signature []byte          `json:"signature"`
	Signer    []byte          `json:"signer_certificate"` // DER
}

// DefaultAuditCheckpointEvery is how often a node renews its automatic audit checkpoint by default.
const DefaultAuditCheckpointEvery = 10 * time.Minute

// AuditCheckpoint verifies the audit chain and signs its head with this node's X.509 root key. A broken
// chain, or one that no longer holds the node's automatic checkpoint, is not signed: the checkpoint
// would vouch for the tampering. The new checkpoint also becomes the automatic one.
func (s *AdminService) AuditCheckpoint(ctx context.Context, _ *adminv1.AuditCheckpointRequest) (*adminv1.AuditCheckpointResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	prev, err := s.StoredCheckpoint()
	if err != nil {
		return nil, toStatus(err)
	}
	f, err := SignCheckpoint(s.cfg.Store, s.authority(), s.cfg.Clock(), prev)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.writeStoredCheckpoint(f); err != nil {
		s.log.Warn("audit checkpoint signed, but keeping it as the automatic one failed", "file", s.cfg.AuditCheckpointFile, "error", err)
	}
	return &adminv1.AuditCheckpointResponse{Statement: f.Statement, Signature: f.Signature, SignerCertificate: f.Signer}, nil
}

// SignCheckpoint verifies the store's audit chain — against prev too, if given — and signs its head with
// authority.
func SignCheckpoint(st *storage.Store, authority *ca.CA, now time.Time, prev *AuditCheckpoint) (CheckpointFile, error) {
	head, err := st.AuditHead()
	if err != nil {
		return CheckpointFile{}, err
	}
	if head.Seq == 0 {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w: the audit log is empty", storage.ErrAuditEmpty)
	}
	anchor, against := head, ""
	if prev != nil {
		anchor, against = prev.anchor(), fmt.Sprintf(" against the checkpoint of record %d", prev.Seq)
	}
	v, err := st.VerifyAuditAgainst(anchor)
	if err != nil {
		return CheckpointFile{}, err
	}
	if v.BrokenAt != 0 {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w: the chain is broken at record %d%s (%s); refusing to sign it", storage.ErrAuditBroken, v.BrokenAt, against, v.Problem)
	}
	rid, err := st.RestoreID()
	if err != nil {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	stmt, err := json.Marshal(AuditCheckpoint{TrustDomain: authority.TrustDomain().Name(), Node: st.NodeID(), Seq: head.Seq,
		HeadHash: head.Hash, Time: now.UTC(), RestoreID: rid})
	if err != nil {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	sig, err := authority.SignStatement(CheckpointPurpose, stmt)
	if err != nil {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	return CheckpointFile{Statement: stmt, Signature: sig, Signer: authority.X509Authority().Raw}, nil
}

func (c *AuditCheckpoint) anchor() storage.AuditAnchor {
	return storage.AuditAnchor{Seq: c.Seq, Hash: c.HeadHash}
}

// Marshal encodes the file as `signet audit checkpoint` writes it (indented JSON).
func (f CheckpointFile) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("audit checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// StoredCheckpoint reads the node's automatic checkpoint, checked against this node's own root (it
// signed it): nil if there is none. One that does not verify is an error wrapping ErrAuditBroken.
func (s *AdminService) StoredCheckpoint() (*AuditCheckpoint, error) {
	cp, _, err := s.storedCheckpoint()
	return cp, err
}

// storedCheckpoint is StoredCheckpoint, with the root that signed it (one of the node's keys: with
// rotating keys, any still in the bundle).
func (s *AdminService) storedCheckpoint() (*AuditCheckpoint, *x509.Certificate, error) {
	path := s.cfg.AuditCheckpointFile
	if path == "" {
		return nil, nil, nil
	}
	data, err := fsutil.ReadFileMax(path, MaxCheckpointFileSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("automatic audit checkpoint: %w", err)
	}
	cp, signer, err := ParseCheckpoint(data, s.ownRoots(), s.cfg.TrustDomain.Name())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: automatic audit checkpoint %s: %w (verify with a checkpoint kept elsewhere; remove the file to start over)", storage.ErrAuditBroken, path, err)
	}
	rid, err := s.cfg.Store.RestoreID()
	if err != nil {
		return nil, nil, fmt.Errorf("automatic audit checkpoint: %w", err)
	}
	if cp.RestoreID != rid {
		// `signet snapshot restore` replaced the chain (audited as snapshot.restore): the checkpoint is
		// of the chain before it, and the next one starts over.
		s.log.Info("audit log: the automatic checkpoint is of the chain before a snapshot restore; starting over", "file", path, "restore_id", rid)
		return nil, nil, nil
	}
	return &cp, signer, nil
}

func (s *AdminService) writeStoredCheckpoint(f CheckpointFile) error {
	if s.cfg.AuditCheckpointFile == "" {
		return nil
	}
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Dir(s.cfg.AuditCheckpointFile), filepath.Base(s.cfg.AuditCheckpointFile), b, 0o600)
}

// RenewCheckpoint replaces the automatic checkpoint with one of the current head, if the log grew (or a
// rotation retired the key that signed it, which will leave the bundle) and the chain still holds the
// previous one. Otherwise it logs why, and keeps the previous one as evidence.
func (s *AdminService) RenewCheckpoint() {
	prev, signer, err := s.storedCheckpoint()
	if err != nil {
		s.log.Error("audit log: the automatic checkpoint does not verify; not replacing it", "error", err)
		return
	}
	authority := s.authority()
	head, err := s.cfg.Store.AuditHead()
	current := prev != nil && prev.Seq == head.Seq && prev.HeadHash == head.Hash && signer.Equal(authority.X509Authority())
	if err != nil || head.Seq == 0 || current {
		return
	}
	f, err := SignCheckpoint(s.cfg.Store, authority, s.cfg.Clock(), prev)
	if err != nil {
		s.log.Error("audit log: not renewing the automatic checkpoint", "file", s.cfg.AuditCheckpointFile, "error", err)
		return
	}
	if err := s.writeStoredCheckpoint(f); err != nil {
		s.log.Error("audit log: writing the automatic checkpoint failed", "file", s.cfg.AuditCheckpointFile, "error", err)
	}
}

// ParseCheckpoint decodes a checkpoint file and checks that one of roots (the trust bundle's X.509
// authorities) signed it for trustDomain. It returns the statement and the root that signed it.
func ParseCheckpoint(data []byte, roots []*x509.Certificate, trustDomain string) (AuditCheckpoint, *x509.Certificate, error) {
	var cp AuditCheckpoint
	if len(data) > MaxCheckpointFileSize {
		return cp, nil, fmt.Errorf("%w: %d bytes, more than the %d a checkpoint takes", ErrBadCheckpoint, len(data), MaxCheckpointFileSize)
	}
	var f CheckpointFile
	if err := json.Unmarshal(data, &f); err != nil {
		return cp, nil, fmt.Errorf("%w: not a checkpoint file (write one with 'signet audit checkpoint --out FILE'): %v", ErrBadCheckpoint, err)
	}
	// The file may have been re-indented: the signature covers the compact form.
	var stmt bytes.Buffer
	if err := json.Compact(&stmt, f.Statement); err != nil || len(f.Signature) == 0 {
		return cp, nil, fmt.Errorf("%w: statement and signature are required", ErrBadCheckpoint)
	}
	root, err := ca.VerifyStatement(roots, CheckpointPurpose, stmt.Bytes(), f.Signature)
	if err != nil {
		return cp, nil, fmt.Errorf("%w: %w: it was altered, or signed by a node whose root is not in this bundle", ErrBadCheckpoint, err)
	}
	if err := json.Unmarshal(stmt.Bytes(), &cp); err != nil {
		return cp, nil, fmt.Errorf("%w: statement: %v", ErrBadCheckpoint, err)
	}
	switch {
	case cp.TrustDomain != trustDomain:
		return cp, nil, fmt.Errorf("%w: it is for trust domain %q, not %q", ErrBadCheckpoint, cp.TrustDomain, trustDomain)
	case cp.Seq == 0 || !isHexSHA256(cp.HeadHash):
		return cp, nil, fmt.Errorf("%w: statement lacks a record number or a SHA-256 head hash", ErrBadCheckpoint)
	}
	return cp, root, nil
}

// isHexSHA256 reports whether h is a SHA-256 digest in lower-case hex, as audit hashes are stored.
func isHexSHA256(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
