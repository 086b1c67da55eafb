package storage

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Ledger records use the protobuf wire format of raftv1.Issuance, written by hand with protowire:
// compact and fast. The FSM accepts only the fields below (checkRecordFields); reads skip any other.
// Field numbers are fixed forever:
//
//	1 id  2 kind  3 spiffe_id  4 entry_id  5 owner  6 selectors (repeated)  7 audience (repeated)
//	8 public_key_sha256  9 issued_at (unix ns)  10 expires_at (unix ns)  11 node  12 agent
//	13 node_attestation  14 signed_by (only in the commands of command version 4: see signedTypes)
//
// A ledger-append command is itself a message whose field 1 repeats the encoded records, so the FSM stores
// each record's bytes exactly as they arrived, without re-encoding.
const (
	fID protowire.Number = iota + 1
	fKind
	fSPIFFEID
	fEntryID
	fOwner
	fSelectors
	fAudience
	fPublicKeySHA256
	fIssuedAt
	fExpiresAt
	fNode
	fAgent
	fNodeAttestation
	fSignedBy
)

var errBadRecord = errors.New("malformed ledger record")

func appendString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// encodeUnstamped appends the wire form of rec without its issued_at, which the leader adds when it
// proposes the batch (a decoder reads fields in any order).
func encodeUnstamped(b []byte, rec *Issuance) []byte {
	b = appendString(b, fID, rec.ID)
	b = appendVarint(b, fKind, uint64(rec.Kind))
	b = appendString(b, fSPIFFEID, rec.SPIFFEID)
	b = appendString(b, fEntryID, rec.EntryID)
	b = appendString(b, fOwner, rec.Owner)
	for _, s := range rec.Selectors {
		b = protowire.AppendTag(b, fSelectors, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	for _, a := range rec.Audience {
		b = protowire.AppendTag(b, fAudience, protowire.BytesType)
		b = protowire.AppendString(b, a)
	}
	b = appendString(b, fPublicKeySHA256, rec.PublicKeySHA256)
	b = appendVarint(b, fExpiresAt, uint64(rec.ExpiresAt.UnixNano()))
	b = appendString(b, fNode, rec.Node)
	b = appendString(b, fAgent, rec.Agent)
	b = appendString(b, fNodeAttestation, rec.NodeAttestation)
	b = appendString(b, fSignedBy, rec.SignedBy)
	return b
}

func appendIssuedAt(b []byte, t time.Time) []byte {
	return appendVarint(b, fIssuedAt, uint64(t.UnixNano()))
}

// walkRecord calls fn for each field of an encoded record: b holds a length-delimited field's bytes (an
// alias of raw), u a varint field's value. Fields of other wire types are skipped.
func walkRecord(raw []byte, fn func(num protowire.Number, b []byte, u uint64)) error {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return fmt.Errorf("%w: %v", errBadRecord, protowire.ParseError(n))
		}
		raw = raw[n:]
		var b []byte
		var u uint64
		switch typ {
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(raw)
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(raw)
		default:
			n = protowire.ConsumeFieldValue(num, typ, raw)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", errBadRecord, num, protowire.ParseError(n))
		}
		raw = raw[n:]
		if typ == protowire.BytesType || typ == protowire.VarintType {
			fn(num, b, u)
		}
	}
	return nil
}

// decodeIssuance parses one record. Unknown fields are skipped; a field of the wrong wire type reads as empty.
func decodeIssuance(raw []byte) (Issuance, error) {
	var rec Issuance
	err := walkRecord(raw, func(num protowire.Number, b []byte, u uint64) {
		switch num {
		case fID:
			rec.ID = string(b)
		case fKind:
			rec.Kind = IssuanceKind(u)
		case fSPIFFEID:
			rec.SPIFFEID = string(b)
		case fEntryID:
			rec.EntryID = string(b)
		case fOwner:
			rec.Owner = string(b)
		case fSelectors:
			rec.Selectors = append(rec.Selectors, string(b))
		case fAudience:
			rec.Audience = append(rec.Audience, string(b))
		case fPublicKeySHA256:
			rec.PublicKeySHA256 = string(b)
		case fIssuedAt:
			rec.IssuedAt = time.Unix(0, int64(u)).UTC()
		case fExpiresAt:
			rec.ExpiresAt = time.Unix(0, int64(u)).UTC()
		case fNode:
			rec.Node = string(b)
		case fAgent:
			rec.Agent = string(b)
		case fNodeAttestation:
			rec.NodeAttestation = string(b)
		case fSignedBy:
			rec.SignedBy = string(b)
		}
	})
	return rec, err
}

// unstampedBatch is a ledger batch encoded but for the issuance time: the costly part of encoding,
// done before the ledger lock is taken.
type unstampedBatch struct {
	bodies []byte // each record's fields but issued_at, back to back
	ends   []int  // where each record's bodies end
}

func encodeUnstampedBatch(recs []Issuance) unstampedBatch {
	u := unstampedBatch{bodies: make([]byte, 0, len(recs)*320), ends: make([]int, len(recs))}
	for i := range recs {
		u.bodies = encodeUnstamped(u.bodies, &recs[i])
		u.ends[i] = len(u.bodies)
	}
	return u
}

// appendStamped appends to b the wire form of the batch (the payload of a ledger-append command), each
// record with issued_at t: one copy of the bytes.
func (u *unstampedBatch) appendStamped(b []byte, t time.Time) []byte {
	stamp := appendIssuedAt(nil, t)
	b = slices.Grow(b, len(u.bodies)+len(u.ends)*(len(stamp)+4))
	start := 0
	for _, end := range u.ends {
		body := u.bodies[start:end]
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(body)+len(stamp)))
		b = append(append(b, body...), stamp...)
		start = end
	}
	return b
}

// splitLedgerBatch returns the encoded records of a ledger-append payload (without the type byte): a
// raftv1.LedgerBatch, decoded strictly (a field other than records is an error). The returned slices
// alias payload.
func splitLedgerBatch(payload []byte) ([][]byte, error) {
	var out [][]byte
	for len(payload) > 0 {
		num, typ, n := protowire.ConsumeTag(payload)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", errBadRecord, protowire.ParseError(n))
		}
		payload = payload[n:]
		if num != 1 || typ != protowire.BytesType {
			return nil, fmt.Errorf("%w: the batch has field %d (wire type %d), this node knows only field 1 (records)", errBadRecord, num, typ)
		}
		v, n := protowire.ConsumeBytes(payload)
		if n < 0 {
			return nil, fmt.Errorf("%w: %v", errBadRecord, protowire.ParseError(n))
		}
		out = append(out, v)
		payload = payload[n:]
	}
	return out, nil
}

// checkRecordFields refuses a record with a field this node does not know, or a known field of the
// wrong wire type. The FSM checks every record before storing it: records are stored as they arrive,
// and a field one replica indexed and another ignored would make them diverge. signed says the command
// type may carry signed_by (command version 4); the older types are held to the fields they had.
func checkRecordFields(raw []byte, signed bool) error {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return fmt.Errorf("%w: %v", errBadRecord, protowire.ParseError(n))
		}
		raw = raw[n:]
		want := protowire.BytesType
		switch num {
		case fKind, fIssuedAt, fExpiresAt:
			want = protowire.VarintType
		case fID, fSPIFFEID, fEntryID, fOwner, fSelectors, fAudience, fPublicKeySHA256, fNode, fAgent, fNodeAttestation:
		case fSignedBy:
			if !signed {
				return fmt.Errorf("%w: field %d (signed_by) in a command type that predates it", errBadRecord, num)
			}
		default:
			return fmt.Errorf("%w: field %d is unknown to this node: the record is newer than this node, upgrade it", errBadRecord, num)
		}
		if typ != want {
			return fmt.Errorf("%w: field %d has wire type %d, want %d", errBadRecord, num, typ, want)
		}
		if n = protowire.ConsumeFieldValue(num, typ, raw); n < 0 {
			return fmt.Errorf("%w: field %d: %v", errBadRecord, num, protowire.ParseError(n))
		}
		raw = raw[n:]
	}
	return nil
}

// withoutSignedBy returns the batch with signed_by removed from every record: the records as a command
// type that predates it may carry them, proposed while a server of the cluster does not understand
// command version 4.
func (u *unstampedBatch) withoutSignedBy() unstampedBatch {
	out := unstampedBatch{bodies: make([]byte, 0, len(u.bodies)), ends: make([]int, len(u.ends))}
	start := 0
	for i, end := range u.ends {
		body := u.bodies[start:end]
		for len(body) > 0 {
			num, typ, n := protowire.ConsumeTag(body)
			m := -1
			if n >= 0 {
				m = protowire.ConsumeFieldValue(num, typ, body[n:])
			}
			if m < 0 {
				// Malformed (a forwarded record): kept as it is, for the state machine to refuse.
				out.bodies = append(out.bodies, body...)
				break
			}
			if num != fSignedBy {
				out.bodies = append(out.bodies, body[:n+m]...)
			}
			body = body[n+m:]
		}
		out.ends[i] = len(out.bodies)
		start = end
	}
	return out
}
