package payload_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/attestor/k8spsat/payload"
)

// The payload carries the cluster and the token file's content, read again each time (the kubelet
// rotates it); a missing, empty or oversized file, or no cluster, is an error naming what to fix.
func TestPayloadReadsTheTokenEachTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signet-agent")
	p := payload.PSAT{Cluster: "prod", TokenPath: path}
	for _, tok := range []string{"first.token.jwt", "rotated.token.jwt"} {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := p.Payload(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var w payload.Wire
		if err := json.Unmarshal(b, &w); err != nil || w.Cluster != "prod" || w.Token != tok {
			t.Fatalf("payload %s (%v), want cluster prod and token %s", b, err, tok)
		}
	}
	for name, tc := range map[string]struct {
		p       payload.PSAT
		content string
		want    string
	}{
		"no cluster": {payload.PSAT{TokenPath: path}, "x", "cluster"},
		"missing":    {payload.PSAT{Cluster: "prod", TokenPath: path + ".missing"}, "x", "token_path"},
		"empty":      {payload.PSAT{Cluster: "prod", TokenPath: path}, "\n", "empty"},
		"oversized":  {payload.PSAT{Cluster: "prod", TokenPath: path}, strings.Repeat("a", payload.MaxTokenSize+1), "more than"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := tc.p.Payload(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Payload: %v; want an error saying %q", err, tc.want)
			}
		})
	}
}
