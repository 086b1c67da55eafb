// Package payload is the agent side of k8s_psat node attestation: it reads the agent pod's projected
// service account token and sends it with the cluster's name. It is apart from attestor/k8spsat (the
// server side) so that agents do not link the Kubernetes client.
package payload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/signet-id/signet/internal/fsutil"
)

// Type names the k8s_psat node attestation.
const Type = "k8s_psat"

// DefaultTokenPath is where the agent's DaemonSet mounts the projected token (a projected volume
// "signet-agent-token" at /var/run/secrets/tokens, path signet-agent).
const DefaultTokenPath = "/var/run/secrets/tokens/signet-agent"

// MaxTokenSize bounds the token file read: a projected token is a few KiB.
const MaxTokenSize = 12 << 10

// Wire is the payload: the cluster the agent says it runs in, and its token. The server checks the
// token against that cluster's configuration only.
type Wire struct {
	Cluster string `json:"cluster"`
	Token   string `json:"token"`
}

// PSAT produces k8s_psat payloads. The token is read again for every attestation: the kubelet rotates
// the file, and each attestation needs a token that has not expired.
type PSAT struct {
	Cluster   string
	TokenPath string // default DefaultTokenPath
}

// Type returns "k8s_psat".
func (p PSAT) Type() string { return Type }

// Payload reads the token and returns the JSON payload.
func (p PSAT) Payload(context.Context) ([]byte, error) {
	if p.Cluster == "" {
		return nil, errors.New("k8s_psat: no cluster name (set node_attestor.k8s_psat.cluster)")
	}
	path := p.TokenPath
	if path == "" {
		path = DefaultTokenPath
	}
	b, err := fsutil.ReadFileMax(path, MaxTokenSize)
	if err != nil {
		return nil, fmt.Errorf("k8s_psat: service account token: %w (mount a projected token with the server's audience there, or set node_attestor.k8s_psat.token_path)", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("k8s_psat: service account token %s is empty", path)
	}
	return json.Marshal(Wire{Cluster: p.Cluster, Token: tok})
}
