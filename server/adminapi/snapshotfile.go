package adminapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// A snapshot file (`signet snapshot save FILE`) is the line SnapshotFileMagic, the header as one line of
// JSON, then the body: the state database, exactly as SaveSnapshot streamed it.

// SnapshotFileMagic is a snapshot file's first line.
const SnapshotFileMagic = "signet-snapshot v1"

// maxSnapshotHeaderLine bounds the header line of a snapshot file.
const maxSnapshotHeaderLine = 4096

// SnapshotFileHeader describes a snapshot file's body.
type SnapshotFileHeader struct {
	TrustDomain   string    `json:"trust_domain"`
	SchemaVersion uint64    `json:"schema_version"`
	AppliedIndex  uint64    `json:"applied_index"`
	Time          time.Time `json:"time"`
	Node          string    `json:"node"`
	Size          uint64    `json:"size"`
	SHA256        string    `json:"sha256"` // hex
}

// WriteSnapshotFileHeader writes the magic line and h.
func WriteSnapshotFileHeader(w io.Writer, h SnapshotFileHeader) error {
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("snapshot file header: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n%s\n", SnapshotFileMagic, b)
	return err
}

// ReadSnapshotFileHeader reads the magic line and the header from r, leaving r at the body.
func ReadSnapshotFileHeader(r *bufio.Reader) (SnapshotFileHeader, error) {
	var h SnapshotFileHeader
	magic, err := readBoundedLine(r)
	if err != nil || magic != SnapshotFileMagic {
		return h, errors.New("not a signet snapshot file (it does not start with \"" + SnapshotFileMagic + "\")")
	}
	line, err := readBoundedLine(r)
	if err != nil {
		return h, fmt.Errorf("snapshot file header: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("snapshot file header: %w", err)
	}
	return h, nil
}

func readBoundedLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for b.Len() <= maxSnapshotHeaderLine {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return b.String(), nil
		}
		b.WriteByte(c)
	}
	return "", fmt.Errorf("header line longer than %d bytes", maxSnapshotHeaderLine)
}
