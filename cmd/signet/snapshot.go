package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/signet-id/signet/internal/fsutil"
	"github.com/signet-id/signet/proto/adminv1"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/spf13/cobra"
)

func newSnapshotCmd() *cobra.Command {
	cmd := newGroupCmd("snapshot", "Save the whole cluster state to a file, or restore it from one")
	cmd.AddCommand(newSnapshotSaveCmd(), newSnapshotRestoreCmd())
	return cmd
}

func newSnapshotSaveCmd() *cobra.Command {
	var admin string
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Write the whole cluster state (registry, ledger, audit chain, CA metadata) to FILE",
		Long: `Write the server's replicated state as of one consistent read to FILE (mode 0600): owners, entries,
join tokens (their hashes), agents, the issuance ledger, the audit chain and the CA metadata (public
certificates). CA private keys are not in the state and never in a snapshot. The file starts with a
header (trust domain, schema version, applied Raft index, time, node, size, SHA-256 of the body); the
digest is checked before the file is put in place, and the save is recorded in the audit log
("snapshot.save"). The file holds the ledger and join-token hashes: keep it like a backup of the data dir.`,
		Example: `  signet snapshot save /backup/signet-$(date +%F).snap`,
		Args:    exactArgs(1, "one argument: the file to write"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			h, err := saveSnapshot(cmd, client, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Snapshot of %s (applied index %d, %d bytes, sha256 %s) written to %s.\n",
				h.TrustDomain, h.AppliedIndex, h.Size, h.SHA256, args[0])
			return nil
		},
	}
	adminFlag(save, &admin)
	return save
}

// saveSnapshot streams the state into a temporary file beside path, checks its size and digest against
// the header, and renames it to path.
func saveSnapshot(cmd *cobra.Command, client adminv1.AdminClient, path string) (adminapi.SnapshotFileHeader, error) {
	stream, err := client.SaveSnapshot(cmd.Context(), &adminv1.SaveSnapshotRequest{})
	if err != nil {
		return adminapi.SnapshotFileHeader{}, rpcError("snapshot save", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return adminapi.SnapshotFileHeader{}, rpcError("snapshot save", err)
	}
	hdr := first.GetHeader()
	switch {
	case hdr == nil:
		return adminapi.SnapshotFileHeader{}, errors.New("snapshot save: the server sent no header first")
	case len(hdr.Sha256) != sha256.Size:
		return adminapi.SnapshotFileHeader{}, fmt.Errorf("snapshot save: the server's header has a %d-byte digest, want SHA-256", len(hdr.Sha256))
	case hdr.Size > adminapi.DefaultMaxSnapshotSize:
		return adminapi.SnapshotFileHeader{}, fmt.Errorf("snapshot save: the server announces %d bytes, more than the limit of %d", hdr.Size, uint64(adminapi.DefaultMaxSnapshotSize))
	}
	h := adminapi.SnapshotFileHeader{TrustDomain: hdr.TrustDomain, SchemaVersion: hdr.SchemaVersion, AppliedIndex: hdr.AppliedIndex,
		Time: time.Unix(0, hdr.Time).UTC(), Node: hdr.Node, Size: hdr.Size, SHA256: hex.EncodeToString(hdr.Sha256)}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp") // mode 0600
	if err != nil {
		return h, fmt.Errorf("snapshot save: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := adminapi.WriteSnapshotFileHeader(f, h); err != nil {
		return h, fmt.Errorf("snapshot save: %s: %w", tmp, err)
	}
	sum := sha256.New()
	var got uint64
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return h, rpcError("snapshot save", err)
		}
		chunk := m.GetChunk()
		if got += uint64(len(chunk)); got > hdr.Size {
			return h, fmt.Errorf("snapshot save: the server sent more than the %d bytes its header announced", hdr.Size)
		}
		sum.Write(chunk)
		if _, err := f.Write(chunk); err != nil {
			return h, fmt.Errorf("snapshot save: %s: %w", tmp, err)
		}
	}
	if got != hdr.Size {
		return h, fmt.Errorf("snapshot save: the server sent %d bytes, its header announced %d", got, hdr.Size)
	}
	if d := sum.Sum(nil); !bytes.Equal(d, hdr.Sha256) {
		return h, fmt.Errorf("snapshot save: digest mismatch: the body's SHA-256 is %x, the header says %s", d, h.SHA256)
	}
	if err := f.Sync(); err != nil {
		return h, fmt.Errorf("snapshot save: %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return h, fmt.Errorf("snapshot save: %s: %w", tmp, err)
	}
	f = nil
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return h, fmt.Errorf("snapshot save: %w", err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return h, fmt.Errorf("snapshot save: %s written, but syncing its directory failed: %w", path, err)
	}
	return h, nil
}

func newSnapshotRestoreCmd() *cobra.Command {
	var admin string
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster state with a snapshot from 'signet snapshot save'",
		Long: `Replace the replicated state of the whole cluster (every server) with the snapshot in FILE. Run it on
any server: a follower streams the snapshot to the leader over the cluster connection. The leader checks
the header and the body's SHA-256 and refuses, with nothing changed, a damaged file (digest mismatch), a snapshot of another trust domain,
or one written by a newer signet. The cluster keeps its own servers, their CA keys and authorities (the
snapshot's authorities are added to the bundle). The restore is recorded in the restored audit log
("snapshot.restore"), and each server's automatic audit checkpoint starts over on the restored chain.`,
		Example: `  signet snapshot restore /backup/signet-2026-12-01.snap`,
		Args:    exactArgs(1, "one argument: the snapshot file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("snapshot restore: %w", err)
			}
			defer f.Close()
			r := bufio.NewReaderSize(f, adminapi.SnapshotChunkSize)
			h, err := adminapi.ReadSnapshotFileHeader(r)
			if err != nil {
				return fmt.Errorf("snapshot restore: %s: %w", args[0], err)
			}
			digest, err := hex.DecodeString(h.SHA256)
			if err != nil || len(digest) != sha256.Size {
				return fmt.Errorf("snapshot restore: %s: header sha256 %q: want 64 hex digits", args[0], h.SHA256)
			}
			client, closeFn, err := dialAdmin(admin)
			if err != nil {
				return err
			}
			defer closeFn()
			stream, err := client.RestoreSnapshot(cmd.Context())
			if err != nil {
				return rpcError("snapshot restore", err)
			}
			hdr := &adminv1.SnapshotHeader{TrustDomain: h.TrustDomain, SchemaVersion: h.SchemaVersion, AppliedIndex: h.AppliedIndex,
				Time: h.Time.UnixNano(), Size: h.Size, Sha256: digest, Node: h.Node}
			if err := sendRestore(stream, hdr, r); err != nil {
				return err
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				return rpcError("snapshot restore", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Restored the snapshot of %s (node %s, applied index %d, taken %s) into this cluster at index %d.\n",
				h.TrustDomain, h.Node, h.AppliedIndex, h.Time.Format(time.RFC3339), resp.AppliedIndex)
			return nil
		},
	}
	adminFlag(restore, &admin)
	return restore
}

// sendRestore sends the header, then the body from r in chunks. A send the server ended early is not
// an error here: CloseAndRecv then returns the server's reason.
func sendRestore(stream adminv1.Admin_RestoreSnapshotClient, hdr *adminv1.SnapshotHeader, r io.Reader) error {
	if err := stream.Send(&adminv1.RestoreSnapshotRequest{Part: &adminv1.RestoreSnapshotRequest_Header{Header: hdr}}); err != nil {
		return nil
	}
	buf := make([]byte, adminapi.SnapshotChunkSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if serr := stream.Send(&adminv1.RestoreSnapshotRequest{Part: &adminv1.RestoreSnapshotRequest_Chunk{Chunk: bytes.Clone(buf[:n])}}); serr != nil {
				return nil
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("snapshot restore: read the file: %w", err)
		}
	}
}
