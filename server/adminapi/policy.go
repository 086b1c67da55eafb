package adminapi

import (
	"time"

	"github.com/signet-id/signet/policy"
	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// policyInput is what policy rules see of a request.
func policyInput(e *storage.Entry, o *storage.Owner, admin, action string, now time.Time) policy.Input {
	in := policy.Input{
		Entry: policy.EntryInput{
			SPIFFEID: e.SPIFFEID, ParentID: e.ParentID, Purpose: e.Purpose, Ticket: e.Ticket,
			Selectors: selector.Strings(e.Selectors), X509TTL: e.X509TTL, JWTTTL: e.JWTTTL, DNSNames: e.DNSNames,
			ExpiresAt: e.ExpiresAt, NeverExpires: e.NeverExpires,
		},
		Owner:  policy.OwnerInput{Name: o.Name, Kind: o.Kind, Team: o.Team},
		Admin:  admin,
		Action: action,
		Now:    now,
	}
	if id, err := spiffeid.FromString(e.SPIFFEID); err == nil {
		in.Entry.TrustDomain, in.Entry.Path = id.TrustDomain().Name(), id.Path()
	}
	return in
}
