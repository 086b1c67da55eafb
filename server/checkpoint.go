package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/ca"
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
}

// CheckpointFile is what `signet audit checkpoint` writes: the statement as signed (compact JSON,
// embedded), the signature and the signing root.
type CheckpointFile struct {
	Statement json.RawMessage `json:"statement"`
	Signature []byte          `json:"signature"`
	Signer    []byte          `json:"signer_certificate"` // DER
}

// AuditCheckpoint verifies the audit chain and signs its head with this node's X.509 root key. A broken
// chain is not signed: the checkpoint would vouch for the tampering.
func (s *AdminService) AuditCheckpoint(ctx context.Context, _ *adminv1.AuditCheckpointRequest) (*adminv1.AuditCheckpointResponse, error) {
	if _, err := s.authenticate(ctx); err != nil {
		return nil, toStatus(err)
	}
	f, err := SignCheckpoint(s.cfg.Store, s.cfg.CA, s.cfg.Clock())
	if err != nil {
		return nil, toStatus(err)
	}
	return &adminv1.AuditCheckpointResponse{Statement: f.Statement, Signature: f.Signature, SignerCertificate: f.Signer}, nil
}

// SignCheckpoint verifies the store's audit chain and signs its head with authority.
func SignCheckpoint(st *storage.Store, authority *ca.CA, now time.Time) (CheckpointFile, error) {
	head, err := st.AuditHead()
	if err != nil {
		return CheckpointFile{}, err
	}
	if head.Seq == 0 {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w: the audit log is empty", storage.ErrAuditEmpty)
	}
	v, err := st.VerifyAuditAgainst(head)
	if err != nil {
		return CheckpointFile{}, err
	}
	if v.BrokenAt != 0 {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w: the chain is broken at record %d (%s); refusing to sign it", storage.ErrAuditBroken, v.BrokenAt, v.Problem)
	}
	stmt, err := json.Marshal(AuditCheckpoint{TrustDomain: authority.TrustDomain().Name(), Node: st.NodeID(), Seq: head.Seq,
		HeadHash: head.Hash, Time: now.UTC()})
	if err != nil {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	sig, err := authority.SignStatement(CheckpointPurpose, stmt)
	if err != nil {
		return CheckpointFile{}, fmt.Errorf("audit checkpoint: %w", err)
	}
	return CheckpointFile{Statement: stmt, Signature: sig, Signer: authority.X509Authority().Raw}, nil
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
