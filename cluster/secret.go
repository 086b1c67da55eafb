package cluster

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Bounds of the join secret (raft.join_secret_file), after trimming surrounding whitespace.
const (
	MinJoinSecretBytes = 32
	MaxJoinSecretBytes = 4 << 10
)

// joinProofLabel separates the join proof from any other use of the secret.
const joinProofLabel = "signet cluster join v1"

// ReadJoinSecretFile reads a cluster's join secret from path: a regular file (not a symlink) owned by
// this process's user that group and others cannot access, holding MinJoinSecretBytes to
// MaxJoinSecretBytes of secret once surrounding whitespace is trimmed. Errors name the file, never its
// content.
func ReadJoinSecretFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("join secret file %s is a symlink: point raft.join_secret_file at the file itself", path)
	}
	if err != nil {
		return nil, fmt.Errorf("join secret file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("join secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("join secret file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("join secret file %s has mode %04o: group or others can read the cluster's secret; run `chmod 600 %s`", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("join secret file %s is owned by uid %d, not by this server's user (uid %d): chown it", path, st.Uid, os.Geteuid())
	}
	raw, err := io.ReadAll(io.LimitReader(f, MaxJoinSecretBytes+1024+1))
	if err != nil {
		return nil, fmt.Errorf("join secret file %s: %w", path, err)
	}
	defer clear(raw)
	secret := bytes.TrimSpace(raw)
	if err := checkJoinSecret(secret); err != nil {
		return nil, fmt.Errorf("join secret file %s: %w", path, err)
	}
	return bytes.Clone(secret), nil
}

func checkJoinSecret(secret []byte) error {
	switch {
	case len(secret) < MinJoinSecretBytes:
		return fmt.Errorf("the secret is %d bytes, want at least %d (create one with `head -c 32 /dev/urandom | base64`)", len(secret), MinJoinSecretBytes)
	case len(secret) > MaxJoinSecretBytes:
		return fmt.Errorf("the secret is over %d bytes", MaxJoinSecretBytes)
	}
	return nil
}

// joinProof is HMAC-SHA256 under the cluster's join secret of what a Join binds: the joiner's node ID,
// the public key of the server SVID it presents on the connection (SubjectPublicKeyInfo DER), the trust
// domain and the cluster ID, each length-prefixed. A proof seen on the wire is good for that SVID key
// only, whose private key never leaves the joiner.
func joinProof(secret []byte, nodeID string, svidPublicKey []byte, trustDomain, clusterID string) []byte {
	mac := hmac.New(sha256.New, secret)
	for _, field := range [][]byte{[]byte(joinProofLabel), []byte(nodeID), svidPublicKey, []byte(trustDomain), []byte(clusterID)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(field)))
		mac.Write(n[:])
		mac.Write(field)
	}
	return mac.Sum(nil)
}

// certPublicKey returns the SubjectPublicKeyInfo of a certificate's DER.
func certPublicKey(der []byte) ([]byte, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster: server SVID: %w", err)
	}
	return c.RawSubjectPublicKeyInfo, nil
}
