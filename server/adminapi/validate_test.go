package adminapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/selector"
	"github.com/signet-id/signet/storage"
	"google.golang.org/grpc/codes"
)

var validateNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testRules() entryRules {
	return entryRules{TrustDomain: testTD, Now: validateNow, Selectors: testSelectors()}
}

func validEntry() storage.Entry {
	return storage.Entry{
		SPIFFEID: "spiffe://example.org/ns/prod/web", ParentID: agentA.String(), Owner: "alice@example.org",
		Purpose: "serves the web front end", Selectors: []selector.Selector{{Type: "unix", Value: "uid:1000"}},
	}
}

func manySelectors(n int) []selector.Selector {
	out := make([]selector.Selector, n)
	for i := range out {
		out[i] = selector.Selector{Type: "unix", Value: fmt.Sprintf("uid:%d", i)}
	}
	return out
}

func TestValidateEntryRejects(t *testing.T) {
	tests := []struct {
		name    string
		rules   entryRules // zero means testRules()
		mod     func(*storage.Entry)
		wantErr error
		field   string // must appear in the message
	}{
		{"missing spiffe_id", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "" }, ErrInvalidArgument, "spiffe_id is required"},
		{"malformed spiffe_id", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "not a spiffe id" }, ErrInvalidArgument, "spiffe_id"},
		{"https scheme", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "https://example.org/web" }, ErrInvalidArgument, "spiffe_id"},
		{"query in spiffe_id", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "spiffe://example.org/web?x=1" }, ErrInvalidArgument, "spiffe_id"},
		{"spiffe_id too long", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "spiffe://example.org/" + strings.Repeat("a", maxIDLen) }, ErrInvalidArgument, "spiffe_id"},
		{"spiffe_id in other trust domain", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "spiffe://other.org/web" }, ErrInvalidArgument, "spiffe_id"},
		{"root ID without path", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "spiffe://example.org" }, ErrInvalidArgument, "spiffe_id"},
		{"reserved /signet/ path", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "spiffe://example.org/signet/agent/x" }, ErrInvalidArgument, "spiffe_id"},
		{"reserved /signet itself", entryRules{}, func(e *storage.Entry) { e.SPIFFEID = "spiffe://example.org/signet" }, ErrInvalidArgument, "reserved"},
		{"missing parent_id", entryRules{}, func(e *storage.Entry) { e.ParentID = "" }, ErrInvalidArgument, "parent_id is required"},
		{"malformed parent_id", entryRules{}, func(e *storage.Entry) { e.ParentID = "agent-a" }, ErrInvalidArgument, "parent_id"},
		{"parent_id in other trust domain", entryRules{}, func(e *storage.Entry) { e.ParentID = "spiffe://other.org/signet/agent/a" }, ErrInvalidArgument, "parent_id"},
		{"missing owner", entryRules{}, func(e *storage.Entry) { e.Owner = "" }, ErrInvalidArgument, "owner is required"},
		{"owner with space", entryRules{}, func(e *storage.Entry) { e.Owner = "alice smith" }, ErrInvalidArgument, "owner"},
		{"owner starting with dash", entryRules{}, func(e *storage.Entry) { e.Owner = "-alice" }, ErrInvalidArgument, "owner"},
		{"owner too long", entryRules{}, func(e *storage.Entry) { e.Owner = strings.Repeat("a", maxNameLen+1) }, ErrInvalidArgument, "owner"},
		{"missing purpose", entryRules{}, func(e *storage.Entry) { e.Purpose = "" }, ErrInvalidArgument, "purpose is required"},
		{"blank purpose", entryRules{}, func(e *storage.Entry) { e.Purpose = " \t " }, ErrInvalidArgument, "purpose is required"},
		{"purpose with newline", entryRules{}, func(e *storage.Entry) { e.Purpose = "line one\nline two" }, ErrInvalidArgument, "purpose"},
		{"purpose with escape", entryRules{}, func(e *storage.Entry) { e.Purpose = "bell \x1b[31m" }, ErrInvalidArgument, "purpose"},
		{"purpose too long", entryRules{}, func(e *storage.Entry) { e.Purpose = strings.Repeat("p", maxPurposeLen+1) }, ErrInvalidArgument, "purpose"},
		{"no selectors", entryRules{}, func(e *storage.Entry) { e.Selectors = nil }, ErrInvalidArgument, "selectors"},
		{"unknown selector type", entryRules{}, func(e *storage.Entry) {
			e.Selectors = append(e.Selectors, selector.Selector{Type: "k8s", Value: "ns:default"})
		}, selector.ErrInvalid, "selectors"},
		{"unknown selector key", entryRules{}, func(e *storage.Entry) { e.Selectors = []selector.Selector{{Type: "unix", Value: "pid:1"}} }, selector.ErrInvalid, "selectors"},
		{"malformed selector value", entryRules{}, func(e *storage.Entry) { e.Selectors = []selector.Selector{{Type: "unix", Value: "uid:root"}} }, selector.ErrInvalid, "selectors"},
		{"too many selectors", entryRules{}, func(e *storage.Entry) { e.Selectors = manySelectors(maxSelectors + 1) }, ErrInvalidArgument, "selectors"},
		{"negative x509 ttl", entryRules{}, func(e *storage.Entry) { e.X509TTL = -time.Hour }, ErrInvalidArgument, "x509_ttl"},
		{"negative jwt ttl", entryRules{}, func(e *storage.Entry) { e.JWTTTL = -time.Second }, ErrInvalidArgument, "jwt_ttl"},
		{"x509 ttl below 1s", entryRules{}, func(e *storage.Entry) { e.X509TTL = 500 * time.Millisecond }, ErrInvalidArgument, "x509_ttl"},
		{"jwt ttl below 1s", entryRules{}, func(e *storage.Entry) { e.JWTTTL = time.Nanosecond }, ErrInvalidArgument, "jwt_ttl"},
		{"x509 ttl below its minimum", entryRules{}, func(e *storage.Entry) { e.X509TTL = MinX509SVIDTTL - time.Second }, ErrInvalidArgument, "x509_ttl 59s: invalid argument: at least 1m0s"},
		{"jwt ttl below its minimum", entryRules{}, func(e *storage.Entry) { e.JWTTTL = MinJWTSVIDTTL - time.Second }, ErrInvalidArgument, "jwt_ttl 29s: invalid argument: at least 30s"},
		{"x509 ttl above 30 days", entryRules{}, func(e *storage.Entry) { e.X509TTL = maxTTL + time.Second }, ErrInvalidArgument, "x509_ttl"},
		{"jwt ttl above 30 days", entryRules{}, func(e *storage.Entry) { e.JWTTTL = 31 * 24 * time.Hour }, ErrInvalidArgument, "jwt_ttl"},
		{"dns name with underscore", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{"bad_name.example.org"} }, ErrInvalidArgument, "dns_name"},
		{"dns name with leading dash", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{"-web.example.org"} }, ErrInvalidArgument, "dns_name"},
		{"dns name with empty label", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{"web..example.org"} }, ErrInvalidArgument, "dns_name"},
		{"empty dns name", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{""} }, ErrInvalidArgument, "dns_name"},
		{"bare wildcard", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{"*."} }, ErrInvalidArgument, "dns_name"},
		{"inner wildcard", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{"web.*.example.org"} }, ErrInvalidArgument, "dns_name"},
		{"dns label too long", entryRules{}, func(e *storage.Entry) { e.DNSNames = []string{strings.Repeat("a", 64) + ".example.org"} }, ErrInvalidArgument, "dns_name"},
		{"too many dns names", entryRules{}, func(e *storage.Entry) {
			for i := range maxDNSNames + 1 {
				e.DNSNames = append(e.DNSNames, fmt.Sprintf("h%d.example.org", i))
			}
		}, ErrInvalidArgument, "dns_names"},
		{"expires_at in the past", entryRules{}, func(e *storage.Entry) { e.ExpiresAt = validateNow.Add(-time.Minute) }, ErrInvalidArgument, "expires_at"},
		{"expires_at now", entryRules{}, func(e *storage.Entry) { e.ExpiresAt = validateNow }, ErrInvalidArgument, "expires_at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules := tc.rules
			if rules.TrustDomain.IsZero() {
				rules = testRules()
			}
			e := validEntry()
			if tc.mod != nil {
				tc.mod(&e)
			}
			err := rules.validateEntry(&e)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("validateEntry: got %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q", err, tc.field)
			}
			if codeOf(err) != codes.InvalidArgument {
				t.Fatalf("codeOf(%v) = %s, want InvalidArgument", err, codeOf(err))
			}
		})
	}

}

func TestValidateEntryAccepts(t *testing.T) {
	t.Run("defaults and normalization", func(t *testing.T) {
		e := validEntry()
		e.Selectors = []selector.Selector{
			{Type: "unix", Value: "user:www"}, {Type: "unix", Value: "gid:33"}, {Type: "unix", Value: "uid:1000"}, {Type: "unix", Value: "gid:33"},
		}
		if err := testRules().validateEntry(&e); err != nil {
			t.Fatalf("validateEntry: %v", err)
		}
		if e.X509TTL != DefaultSVIDTTL || e.JWTTTL != DefaultSVIDTTL {
			t.Fatalf("TTLs = %s/%s, want defaults %s", e.X509TTL, e.JWTTTL, DefaultSVIDTTL)
		}
		want := []string{"unix:gid:33", "unix:uid:1000", "unix:user:www"}
		if got := selector.Strings(e.Selectors); !slices.Equal(got, want) {
			t.Fatalf("selectors = %v, want sorted and deduplicated %v", got, want)
		}
	})

	tests := []struct {
		name  string
		rules entryRules
		mod   func(*storage.Entry)
		check func(t *testing.T, e *storage.Entry)
	}{
		{"explicit ttls kept", testRules(), func(e *storage.Entry) { e.X509TTL, e.JWTTTL = 10*time.Minute, 45*time.Second }, func(t *testing.T, e *storage.Entry) {
			if e.X509TTL != 10*time.Minute || e.JWTTTL != 45*time.Second {
				t.Fatalf("TTLs changed to %s/%s", e.X509TTL, e.JWTTTL)
			}
		}},
		{"ttls of exactly the minimums", testRules(), func(e *storage.Entry) { e.X509TTL, e.JWTTTL = MinX509SVIDTTL, MinJWTSVIDTTL }, nil},
		{"ttl of exactly 30 days", testRules(), func(e *storage.Entry) { e.X509TTL = maxTTL }, nil},
		{"dns names and wildcard", testRules(), func(e *storage.Entry) { e.DNSNames = []string{"web.example.org", "*.svc.example.org", "a-1.B2"} }, nil},
		{"path starting with signet but not reserved", testRules(), func(e *storage.Entry) { e.SPIFFEID = "spiffe://example.org/signetx/web" }, nil},
		{"expires in the future", testRules(), func(e *storage.Entry) { e.ExpiresAt = validateNow.Add(time.Second) }, nil},
		{"64 selectors", testRules(), func(e *storage.Entry) { e.Selectors = manySelectors(maxSelectors) }, func(t *testing.T, e *storage.Entry) {
			if len(e.Selectors) != maxSelectors {
				t.Fatalf("%d selectors kept", len(e.Selectors))
			}
		}},
		{"unicode purpose", testRules(), func(e *storage.Entry) { e.Purpose = "paie des salariés — équipe RH" }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := validEntry()
			tc.mod(&e)
			if err := tc.rules.validateEntry(&e); err != nil {
				t.Fatalf("validateEntry: %v", err)
			}
			if tc.check != nil {
				tc.check(t, &e)
			}
		})
	}
}

func TestValidateOwner(t *testing.T) {
	tests := []struct {
		name  string
		owner storage.Owner
		field string // empty: valid
	}{
		{"person", storage.Owner{Name: "alice@example.org", Kind: "person", DisplayName: "Alice Liddell"}, ""},
		{"team with dots and plus", storage.Owner{Name: "team.payments+ops", Kind: "team"}, ""},
		{"no kind", storage.Owner{Name: "bob"}, ""},
		{"member of team", storage.Owner{Name: "carol", Kind: "person", Team: "payments"}, ""},
		{"empty name", storage.Owner{}, "owner name is required"},
		{"name with space", storage.Owner{Name: "alice smith"}, "owner name"},
		{"name starting with dot", storage.Owner{Name: ".alice"}, "owner name"},
		{"name with slash", storage.Owner{Name: "a/b"}, "owner name"},
		{"name too long", storage.Owner{Name: strings.Repeat("n", maxNameLen+1)}, "owner name"},
		{"unknown kind", storage.Owner{Name: "dave", Kind: "robot"}, "kind"},
		{"bad team name", storage.Owner{Name: "erin", Team: "pay ments"}, "team"},
		{"display name with control character", storage.Owner{Name: "frank", DisplayName: "Frank\x00"}, "display_name"},
		{"display name too long", storage.Owner{Name: "gina", DisplayName: strings.Repeat("g", maxNameLen+1)}, "display_name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.owner
			err := validateOwner(&o)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("validateOwner: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("validateOwner: got %v, want ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q", err, tc.field)
			}
		})
	}
}
