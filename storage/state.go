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
		bucketLedger, bucketLedgerByID, bucketLedgerByOwner, bucketLedgerByEntry, bucketLedgerBySPIFFE, bucketLedgerByAgent}

	keyAppliedIndex = []byte("applied_index")
	keyRevision     = []byte("revision")
	keyBundleSeq    = []byte("bundle_sequence")
)

// openStateDB opens (creating if needed) the bbolt state database at path. Commits are not fsynced: the
// file is rebuilt from Raft when it cannot be trusted (see guard.go). The applied index stored with each
// transaction tells a restarted node which Raft entries it must replay.
func openStateDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         2 * time.Second,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 1 << 30,
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

// loadRegistry reads the registry part of the state into r.
func loadRegistry(db *bolt.DB, r *registry) error {
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		var owners []*Owner
		err := tx.Bucket(bucketOwners).ForEach(func(k, v []byte) error {
			o := new(Owner)
			if err := json.Unmarshal(v, o); err != nil {
				return fmt.Errorf("owner %q: %w", k, err)
			}
			owners = append(owners, o)
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: load owners: %w", err)
		}
		var entries []*Entry
		err = tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e := new(Entry)
			if err := json.Unmarshal(v, e); err != nil {
				return fmt.Errorf("entry %q: %w", k, err)
			}
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: load entries: %w", err)
		}
		var auths []*Authority
		err = tx.Bucket(bucketAuthorities).ForEach(func(k, v []byte) error {
			a := new(Authority)
			if err := json.Unmarshal(v, a); err != nil {
				return fmt.Errorf("authority %q: %w", k, err)
			}
			auths = append(auths, a)
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: load authorities: %w", err)
		}
		var tokens []*JoinToken
		err = tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			t := new(JoinToken)
			if err := json.Unmarshal(v, t); err != nil {
				return fmt.Errorf("join token %q: %w", k, err)
			}
			tokens = append(tokens, t)
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: load join tokens: %w", err)
		}
		var agents []*Agent
		err = tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
			a := new(Agent)
			if err := json.Unmarshal(v, a); err != nil {
				return fmt.Errorf("agent %q: %w", k, err)
			}
			agents = append(agents, a)
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: load agents: %w", err)
		}
		r.reset(getUint64(meta, keyRevision), owners, entries, auths, getUint64(meta, keyBundleSeq))
		r.resetAgents(tokens, agents)
		return nil
	})
}
