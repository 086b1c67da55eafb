package agent

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
)

// maxRemovedKeys bounds the key IDs an agent remembers as removed from the bundle: keys leave it a few
// times a year (prunings, revocations), so the oldest are long gone from every server by then.
const maxRemovedKeys = 64

// maxKeyIDLen bounds a key ID the server names as revoked (a Subject Key Identifier in hex).
const maxKeyIDLen = 128

// removedKeys are the key IDs (X.509 authorities' SKIs in hex, JWT kids) that have left the bundle since
// the agent started, the most recent maxRemovedKeys of them: an SVID one of them signed is not installed
// or served (its server has not replaced a revoked key yet). Guarded by Agent.mu.
type removedKeys struct{ ids []string }

func (r *removedKeys) add(id string) {
	if id == "" || slices.Contains(r.ids, id) {
		return
	}
	if len(r.ids) >= maxRemovedKeys {
		r.ids = slices.Delete(r.ids, 0, 1)
	}
	r.ids = append(r.ids, id)
}

func (r *removedKeys) has(id string) bool { return id != "" && slices.Contains(r.ids, id) }

// jwtKeyID returns the kid of a compact JWS's protected header ("" if it cannot be read: the server
// signed it, so this does not happen; the token is then cached as signed by no key the bundle has).
func jwtKeyID(token string) string {
	h, _, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if json.Unmarshal(b, &hdr) != nil {
		return ""
	}
	return hdr.Kid
}
