// Package payload is the agent side of the aws_iid node attestor: it reads the instance identity
// document and its RSA-2048 signature from the EC2 instance metadata service (IMDSv2; IMDSv1 only when
// configured) and encodes them as the attestation payload the server's attestor (package awsiid)
// checks. It is kept apart from the server side so that agents do not link the signature checks.
//
//	c, err := payload.New(payload.Config{})             // http://169.254.169.254, IMDSv2
//	p, err := c.Payload(ctx)                            // {"document": …, "rsa2048": …}
package payload

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Type names the aws_iid node attestation: in requests, agent records, selectors and the ledger.
const Type = "aws_iid"

// Bounds of what the metadata service may answer and of the payload built from it. A real document is
// about 500 bytes and its RSA-2048 signature (base64 PKCS#7) under 2 KiB.
const (
	MaxDocument  = 4 << 10
	MaxSignature = 8 << 10
	MaxPayload   = 14 << 10
)

// Payload is what the agent sends. RSA2048 is the PKCS#7 signature exactly as the metadata service
// serves it at /latest/dynamic/instance-identity/rsa2048 (base64, possibly wrapped over lines); the
// signed document travels inside it, and the server reads the document only from there. Document is the
// document as /latest/dynamic/instance-identity/document serves it: the server refuses a payload whose
// Document differs from the signed bytes, and never parses it.
type Payload struct {
	Document string `json:"document"`
	RSA2048  string `json:"rsa2048"`
}

// Encode returns the wire form of p.
func (p Payload) Encode() ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("aws_iid payload: %w", err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("aws_iid payload: %d bytes, more than %d", len(b), MaxPayload)
	}
	return b, nil
}

// Decode parses a payload strictly: bounded, unknown fields refused, rsa2048 required.
func Decode(b []byte) (Payload, error) {
	var p Payload
	if len(b) > MaxPayload {
		return p, fmt.Errorf("aws_iid payload: %d bytes, more than %d", len(b), MaxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Payload{}, fmt.Errorf("aws_iid payload: not the agent's JSON form {\"document\", \"rsa2048\"}: %w", err)
	}
	if dec.More() {
		return Payload{}, fmt.Errorf("aws_iid payload: data after the JSON object")
	}
	switch {
	case p.RSA2048 == "":
		return Payload{}, fmt.Errorf("aws_iid payload: rsa2048: required (the PKCS#7 signature from the metadata service)")
	case len(p.RSA2048) > MaxSignature:
		return Payload{}, fmt.Errorf("aws_iid payload: rsa2048: %d bytes, more than %d", len(p.RSA2048), MaxSignature)
	case len(p.Document) > MaxDocument:
		return Payload{}, fmt.Errorf("aws_iid payload: document: %d bytes, more than %d", len(p.Document), MaxDocument)
	}
	return p, nil
}
