package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/signet-id/signet/proto/raftv1"
	bolt "go.etcd.io/bbolt"
)

// RotationRequest is an admin's request that one server node rotate its CA keys now (signet ca rotate
// --node N). Seq increases with every request, cluster-wide; the node remembers the last one it handled.
type RotationRequest struct {
	Seq    uint64    `json:"seq"`
	Node   string    `json:"node"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// MaxRotationReason bounds a rotation request's reason.
const MaxRotationReason = 1024

var (
	keyRotationSeq        = []byte("rotation_request_seq") // meta: the last request's Seq
	keyRotationNodePrefix = "rotation_request/"            // meta: + node ID -> JSON of the node's latest RotationRequest
)

type rotationRequestCmd struct {
	Node string
	Meta auditMeta // Meta.Reason is the request's reason
}

func (c rotationRequestCmd) wire() *raftv1.RotationRequest {
	return &raftv1.RotationRequest{Node: c.Node, Meta: metaToWire(c.Meta)}
}

func rotationRequestFromWire(m *raftv1.RotationRequest) rotationRequestCmd {
	return rotationRequestCmd{Node: m.GetNode(), Meta: metaFromWire(m.GetMeta())}
}

func applyRotationRequest(tx *bolt.Tx, c rotationRequestCmd) (applied, error) {
	switch {
	case len(c.Meta.Reason) > MaxRotationReason:
		return applied{}, fmt.Errorf("rotation request: %w: reason of %d bytes, at most %d", ErrInvalid, len(c.Meta.Reason), MaxRotationReason)
	case c.Node == "" || tx.Bucket(bucketNodeVersions).Get([]byte(c.Node)) == nil:
		return applied{}, fmt.Errorf("rotation request: %w: node %q is not a server of this cluster (see signet cluster status)", ErrInvalid, c.Node)
	}
	meta := tx.Bucket(bucketMeta)
	seq := getUint64(meta, keyRotationSeq) + 1
	if err := putUint64(meta, keyRotationSeq, seq); err != nil {
		panic(fmt.Sprintf("storage: put rotation request sequence: %v", err))
	}
	r := RotationRequest{Seq: seq, Node: c.Node, By: c.Meta.Actor, At: c.Meta.Time, Reason: c.Meta.Reason}
	mustPut(meta, []byte(keyRotationNodePrefix+c.Node), mustJSON(&r))
	appendAudit(tx, c.Meta.record("ca.rotate-request", c.Node), nil, &r)
	return applied{resp: r, publish: func(reg *registry) { reg.mu.Lock(); reg.wakeLocked(); reg.mu.Unlock() }}, nil
}

// RequestRotation asks node to rotate its CA keys now, through Raft (audited as ca.rotate-request): the
// node rotates once it has applied the request. An unknown node is ErrInvalid.
func (s *Store) RequestRotation(ctx context.Context, node, reason string) (RotationRequest, error) {
	resp, err := s.propose(ctx, cmdRotationRequest, rotationRequestCmd{Node: node, Meta: s.newMeta(ctx, reason)}.wire())
	if err != nil {
		return RotationRequest{}, fmt.Errorf("storage: request a key rotation of node %s: %w", node, err)
	}
	return resp.(RotationRequest), nil
}

// LatestRotationRequest returns the latest rotation request for node as this server has applied it (zero
// if there was none). Changed wakes when one is applied.
func (s *Store) LatestRotationRequest(node string) (RotationRequest, error) {
	var r RotationRequest
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get([]byte(keyRotationNodePrefix + node))
		if v == nil {
			return nil
		}
		return decodeStored("rotation request", node, v, &r)
	})
	return r, err
}
