package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the state database. Registry buckets hold JSON; ledger buckets hold wire-encoded records
// and index keys (see ledger.go).
var (
	bucketMeta        = []byte("meta")
	bucketOwners      = []byte("owners")
	bucketEntries     = []byte("entries")
	bucketEntryKeys   = []byte("entry_identity") // identity key -> entry ID, for duplicate detection
	bucketAuthorities = []byte("authorities")

	allBuckets = [][]byte{bucketMeta, bucketOwners, bucketEntries, bucketEntryKeys, bucketAuthorities, bucketTokens, bucketAgents, bucketAudit, bucketEntryStats, bucketReviews,
		bucketLedger, bucketLedgerByID, bucketLedgerByOwner, bucketLedgerByEntry, bucketLedgerBySPIFFE, bucketLedgerByAgent, bucketLedgerBySigner,
		bucketNodeVersions, bucketDeliveries, bucketDeliveryStats, bucketFederations}

	keyAppliedIndex = []byte("applied_index")
	keyRevision     = []byte("revision")
	keyBundleSeq    = []byte("bundle_sequence")
)

// State file mapping sizes (Config.StateMmapSize). bbolt maps the file read-only and remaps it when a
// write grows the file past the mapping; a remap waits until every read transaction has ended. A Raft
// snapshot streams the state from one read transaction (fsm.Snapshot, Persist), tens of seconds for a
// large ledger, and writes during it cannot reuse pages it still reads, so the file grows: with a
// mapping that ends near the file's size every apply stalled until the snapshot was written
// (docs/performance.md, "Snapshot of a 10,000,000-record ledger"). The mapping only reserves address
// space (64-bit), so the default leaves room for a ledger several times that size.
const (
	MinStateMmapSize     = 1 << 30
	DefaultStateMmapSize = 64 << 30
	MaxStateMmapSize     = 1 << 40
)

// openStateDB opens (creating if needed) the bbolt state database at path, mapped with mmapSize bytes
// (at least; bbolt maps more when the file is larger). Commits are not fsynced: the file is rebuilt from
// Raft when it cannot be trusted (see guard.go). The applied index stored with each transaction tells a
// restarted node which Raft entries it must replay.
func openStateDB(path string, mmapSize int64) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         2 * time.Second,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: int(mmapSize),
		NoSync:          true,
		NoGrowSync:      true,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("storage: %s is locked: another signet process is using this data dir (stop it or choose another data dir)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: init state %s: %w", path, err)
	}
	return db, nil
}

func getUint64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint64(b *bolt.Bucket, key []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(key, buf[:])
}

func readAppliedIndex(db *bolt.DB) (uint64, error) {
	var idx uint64
	err := db.View(func(tx *bolt.Tx) error {
		idx = getUint64(tx.Bucket(bucketMeta), keyAppliedIndex)
		return nil
	})
	return idx, err
}

// registryState is the registry part of the state, read from a database (see registry.load).
type registryState struct {
	revision, bundleSeq uint64
	owners              []*Owner
	entries             []*Entry
	auths               []*Authority
	tokens              []*JoinToken
	agents              []*Agent
	revokedSigners      []string // oldest revocation first
}

// readRegistry reads the registry part of the state from db. It changes nothing: a state that does not
// decode, or was written by a newer signet (ErrStateTooNew), is refused before anything in memory is
// replaced.
func readRegistry(db *bolt.DB) (registryState, error) {
	var st registryState
	if err := db.View(checkSchemaVersion); err != nil {
		return st, err
	}
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		st.revision, st.bundleSeq = getUint64(meta, keyRevision), getUint64(meta, keyBundleSeq)
		var err error
		if st.owners, err = decodeBucket[Owner](tx, bucketOwners, "owner"); err != nil {
			return err
		}
		if st.entries, err = decodeBucket[Entry](tx, bucketEntries, "entry"); err != nil {
			return err
		}
		if st.auths, err = decodeBucket[Authority](tx, bucketAuthorities, "authority"); err != nil {
			return err
		}
		if st.tokens, err = decodeBucket[JoinToken](tx, bucketTokens, "join token"); err != nil {
			return err
		}
		if st.agents, err = decodeBucket[Agent](tx, bucketAgents, "agent"); err != nil {
			return err
		}
		st.revokedSigners, err = readRevokedSigners(tx)
		return err
	})
	if err != nil {
		return registryState{}, fmt.Errorf("storage: load registry: %w", err)
	}
	return st, nil
}

// decodeBucket decodes every JSON value of a registry bucket; what names the objects in errors.
func decodeBucket[T any](tx *bolt.Tx, bucket []byte, what string) ([]*T, error) {
	var out []*T
	err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		x := new(T)
		if err := json.Unmarshal(v, x); err != nil {
			return fmt.Errorf("%s %q: %w", what, k, err)
		}
		out = append(out, x)
		return nil
	})
	return out, err
}
