package storage

import (
	"time"

	"github.com/signet-id/signet/selector"
)

// AppendNodeAliases appends to dst the SPIFFE IDs of the node aliases of an agent with node selectors
// have: the entries parented to serverID that are active at now and whose selectors are all among have.
// It matches under the registry's read lock and copies no entry, for the issuance path, which asks on
// every request; the IDs come in no particular order.
func (s *Store) AppendNodeAliases(dst []string, serverID string, have []selector.Selector, now time.Time) []string {
	if len(have) == 0 {
		return dst
	}
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	for _, e := range s.reg.byParent[serverID] {
		if e.Active(now) && selector.Subset(e.Selectors, have) {
			dst = append(dst, e.SPIFFEID)
		}
	}
	return dst
}
