// Package k8spsat is the server side of k8s_psat node attestation: an agent presents its pod's
// projected service account token (audience DefaultAudience by default) with the name of its cluster.
// For that cluster the token is validated either by the cluster's TokenReview API (with the server's
// own credentials) or offline against the cluster's service-account issuer keys (a JWKS file, or a
// URL: the JWKS or the issuer's OIDC discovery document), for servers that cannot reach the API
// server. The service account must be on the cluster's allow-list. When the API is configured the pod
// and the node are read to confirm the pod (the token's, not a deleted or replaced one) runs on that
// node. The agent ID is spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>; the node may attest
// again (each time with a new token). The agent side is package payload.
package k8spsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/attestor/k8spsat/payload"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/internal/ratelimit"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/rest"
)

// Type names the k8s_psat node attestation: in requests, agent records, selectors and the ledger.
const Type = payload.Type

// Defaults and bounds of a cluster's configuration.
const (
	// DefaultAudience is the audience the agent's projected token must carry.
	DefaultAudience = "signet-server"
	// DefaultOwner owns the agent SVIDs of a cluster that names none (the system owner).
	DefaultOwner = "signet"
	// DefaultJWKSRefresh is how often keys fetched from a URL are fetched again.
	DefaultJWKSRefresh = 5 * time.Minute
	// DefaultAPITimeout bounds each call to the Kubernetes API or the JWKS URL.
	DefaultAPITimeout = 10 * time.Second
	// MaxClusters bounds the clusters of one server; MaxAllowList the service accounts of one cluster.
	MaxClusters  = 64
	MaxAllowList = 1024
	// MaxLabels bounds the label selectors taken from one pod or one node (the first, by key).
	MaxLabels = 64
	// MaxJWKSSize bounds a JWKS or discovery document read from a file or URL.
	MaxJWKSSize = 1 << 20
	// DefaultAPIRate and DefaultAPIBurst bound the attestations per second (and at once) that reach a
	// cluster's Kubernetes API (a TokenReview, a pod and a node read each): anyone can send a token, and
	// the API server is not to be flooded through Signet. Over the limit an attestation is Unavailable
	// (the agent retries).
	DefaultAPIRate  = 20
	DefaultAPIBurst = 100
)

// clusterNameRE: a cluster name is a path segment of agent IDs and a selector value.
var clusterNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ClusterConfig configures one cluster.
type ClusterConfig struct {
	// Name is the cluster's name, as agents send it: lowercase letters, digits and '-', at most 63.
	Name string
	// ServiceAccountAllowList lists the service accounts ("namespace:name") whose tokens attest nodes.
	ServiceAccountAllowList []string
	// Audience the token must carry (default DefaultAudience).
	Audience string
	// Owner owns the agent SVIDs' ledger records (default DefaultOwner).
	Owner string
	// API is the cluster's Kubernetes API (from a kubeconfig or in-cluster), or nil: then the token is
	// validated offline and no pod or node is read (and no label selectors are produced).
	API *rest.Config
	// JWKSFile or JWKSURL (exactly one, or neither to use TokenReview through API) hold the cluster's
	// service-account issuer keys; the URL may also be the issuer's OIDC discovery document, whose
	// jwks_uri is followed. Issuer is then required: the tokens' "iss".
	JWKSFile string
	JWKSURL  string
	Issuer   string
	// JWKSRefresh: how often keys from JWKSURL are fetched again (default DefaultJWKSRefresh); an
	// unknown key ID fetches them at once (at most once per refresh/10).
	JWKSRefresh time.Duration
	// HTTPClient fetches JWKSURL (default: a client with DefaultAPITimeout).
	HTTPClient *http.Client
	// APIRate and APIBurst bound the attestations reaching API (default DefaultAPIRate, DefaultAPIBurst).
	APIRate  float64
	APIBurst int
}

// Config configures the attestor.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Clusters    []ClusterConfig
}

// cluster is one configured cluster, ready to validate tokens.
type cluster struct {
	cfg     ClusterConfig
	allowed map[string]bool // "ns:name"
	keys    *keySource      // offline validation, or nil
	api     *apiClient      // TokenReview, pods, nodes, or nil
	// apiLimit bounds the attestations reaching api (one bucket).
	apiLimit *ratelimit.Buckets[struct{}]
}

// Attestor is the server side of k8s_psat attestation.
type Attestor struct {
	td       spiffeid.TrustDomain
	clusters map[string]*cluster
}

// New validates cfg, naming the field at fault, and builds the clients (no network call yet).
func New(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("k8s_psat: trust domain required")
	}
	if len(cfg.Clusters) == 0 || len(cfg.Clusters) > MaxClusters {
		return nil, fmt.Errorf("k8s_psat: clusters: %d configured, want 1 to %d", len(cfg.Clusters), MaxClusters)
	}
	a := &Attestor{td: cfg.TrustDomain, clusters: map[string]*cluster{}}
	for i, cc := range cfg.Clusters {
		c, err := newCluster(cc)
		if err != nil {
			return nil, fmt.Errorf("k8s_psat: clusters[%d]: %w", i, err)
		}
		if a.clusters[cc.Name] != nil {
			return nil, fmt.Errorf("k8s_psat: clusters[%d]: name %q configured twice", i, cc.Name)
		}
		a.clusters[cc.Name] = c
	}
	return a, nil
}

func newCluster(cc ClusterConfig) (*cluster, error) {
	if !clusterNameRE.MatchString(cc.Name) {
		return nil, fmt.Errorf("name %q: want 1 to 63 lowercase letters, digits and '-' (it is part of agent IDs)", cc.Name)
	}
	if cc.Audience == "" {
		cc.Audience = DefaultAudience
	}
	if cc.Owner == "" {
		cc.Owner = DefaultOwner
	}
	if len(cc.ServiceAccountAllowList) == 0 || len(cc.ServiceAccountAllowList) > MaxAllowList {
		return nil, fmt.Errorf("service_account_allow_list: %d entries, want 1 to %d (namespace:name of the agents' service account)", len(cc.ServiceAccountAllowList), MaxAllowList)
	}
	c := &cluster{allowed: map[string]bool{}}
	for _, sa := range cc.ServiceAccountAllowList {
		ns, name, ok := strings.Cut(sa, ":")
		if !ok || selector.NameValue(ns) != nil || selector.NameValue(name) != nil {
			return nil, fmt.Errorf("service_account_allow_list: %q: want namespace:name, e.g. signet:signet-agent", sa)
		}
		c.allowed[sa] = true
	}
	offline := cc.JWKSFile != "" || cc.JWKSURL != ""
	switch {
	case cc.JWKSFile != "" && cc.JWKSURL != "":
		return nil, errors.New("jwks_file and jwks_url: set one, not both")
	case offline && cc.Issuer == "":
		return nil, errors.New("issuer: required with jwks_file or jwks_url (the tokens' \"iss\", e.g. https://kubernetes.default.svc.cluster.local)")
	case !offline && cc.API == nil:
		return nil, errors.New("no way to validate tokens: set kubeconfig (or in_cluster) for TokenReview, or jwks_file or jwks_url with issuer")
	}
	if cc.JWKSRefresh == 0 {
		cc.JWKSRefresh = DefaultJWKSRefresh
	}
	if cc.HTTPClient == nil {
		cc.HTTPClient = &http.Client{Timeout: DefaultAPITimeout}
	}
	if cc.APIRate <= 0 {
		cc.APIRate = DefaultAPIRate
	}
	if cc.APIBurst <= 0 {
		cc.APIBurst = DefaultAPIBurst
	}
	if offline {
		ks, err := newKeySource(cc)
		if err != nil {
			return nil, err
		}
		c.keys = ks
	}
	if cc.API != nil {
		api, err := newAPIClient(cc.API)
		if err != nil {
			return nil, fmt.Errorf("kubernetes API: %w", err)
		}
		c.api = api
		c.apiLimit = ratelimit.NewBuckets[struct{}](cc.APIRate, cc.APIBurst, 1)
	}
	c.cfg = cc
	return c, nil
}

// Type returns "k8s_psat".
func (a *Attestor) Type() string { return Type }

// identity is what a validated token says about its pod.
type identity struct {
	namespace, serviceAccount string
	podName, podUID           string
	nodeName, nodeUID         string
}

// Attest validates the token for the cluster the payload names and builds the agent's attestation.
func (a *Attestor) Attest(ctx context.Context, p []byte, now time.Time) (nodeattest.Attestation, error) {
	var w payload.Wire
	if err := json.Unmarshal(p, &w); err != nil || w.Cluster == "" || w.Token == "" {
		return nodeattest.Attestation{}, fmt.Errorf("k8s_psat: %w: want JSON {\"cluster\": NAME, \"token\": TOKEN}", nodeattest.ErrMalformed)
	}
	if !clusterNameRE.MatchString(w.Cluster) {
		return nodeattest.Attestation{}, fmt.Errorf("k8s_psat: cluster %.64q: %w: not a cluster name", w.Cluster, nodeattest.ErrMalformed)
	}
	out := nodeattest.Attestation{Subject: "k8s_psat/" + w.Cluster}
	c := a.clusters[w.Cluster]
	if c == nil {
		return out, fmt.Errorf("k8s_psat: cluster %q: %w: not configured on this server (configured: %s)", w.Cluster, nodeattest.ErrRefused,
			strings.Join(slices.Sorted(maps.Keys(a.clusters)), ", "))
	}
	var id identity
	var err error
	if c.keys != nil {
		id, err = c.validateOffline(ctx, w.Token, now)
	} else if err = precheck(w.Token, c.cfg.Audience, now); err == nil {
		if err = c.takeAPI(now); err == nil {
			id, err = c.api.review(ctx, w.Token, c.cfg.Audience)
		}
	}
	if err != nil {
		return out, fmt.Errorf("k8s_psat: cluster %q: %w", w.Cluster, err)
	}
	sa := id.namespace + ":" + id.serviceAccount
	out.Subject += "/" + sa
	if !c.allowed[sa] {
		return out, fmt.Errorf("k8s_psat: cluster %q: %w: service account %s is not in the cluster's service_account_allow_list", w.Cluster, nodeattest.ErrRefused, sa)
	}
	var podLabels, nodeLabels map[string]string
	if c.api != nil {
		if c.keys != nil {
			if err := c.takeAPI(now); err != nil {
				return out, fmt.Errorf("k8s_psat: cluster %q: %w", w.Cluster, err)
			}
		}
		if podLabels, nodeLabels, err = c.api.confirmPod(ctx, &id); err != nil {
			return out, fmt.Errorf("k8s_psat: cluster %q: %w", w.Cluster, err)
		}
	}
	if id.nodeUID == "" || selector.NameValue(id.nodeUID) != nil {
		return out, fmt.Errorf("k8s_psat: cluster %q: %w: the token names no node UID and no API is configured to read the node (Kubernetes 1.30+ puts the node in projected tokens, or set kubeconfig)", w.Cluster, nodeattest.ErrRefused)
	}
	agentID, err := spiffeid.FromSegments(a.td, "signet", "agent", Type, w.Cluster, id.nodeUID)
	if err != nil {
		return out, fmt.Errorf("k8s_psat: cluster %q: %w: node UID %q is not a path segment", w.Cluster, nodeattest.ErrRefused, id.nodeUID)
	}
	out.AgentID = agentID
	out.Selectors = selectors(w.Cluster, id, podLabels, nodeLabels)
	out.Owner = c.cfg.Owner
	out.Reattestable = true
	out.Reason = fmt.Sprintf("k8s_psat cluster %s: service account %s, pod %s (%s) on node %s (%s)", w.Cluster, sa, id.podName, id.podUID, id.nodeName, id.nodeUID)
	return out, nil
}

// takeAPI takes one attestation from the cluster's API budget.
func (c *cluster) takeAPI(now time.Time) error {
	if r := c.apiLimit.Take(struct{}{}, 1, now); !r.OK {
		return fmt.Errorf("%w: more than %g attestations per second reach the cluster's API (burst %d); retry in %s", nodeattest.ErrUnavailable,
			c.cfg.APIRate, c.cfg.APIBurst, r.Wait)
	}
	return nil
}

// selectors builds the node's selectors; a value its key's check refuses, or a selector longer than
// selector.MaxLength (a long label), is left out, as are labels beyond MaxLabels.
func selectors(clusterName string, id identity, podLabels, nodeLabels map[string]string) []selector.Selector {
	var out []selector.Selector
	keys := SelectorType().Keys
	add := func(key, value string) bool {
		s := selector.Selector{Type: Type, Value: key + ":" + value}
		if value == "" || len(s.String()) > selector.MaxLength || keys[key](value) != nil {
			return false
		}
		out = append(out, s)
		return true
	}
	add("cluster", clusterName)
	add("agent_ns", id.namespace)
	add("agent_sa", id.serviceAccount)
	add("agent_pod_name", id.podName)
	add("agent_pod_uid", id.podUID)
	add("agent_node_name", id.nodeName)
	add("agent_node_uid", id.nodeUID)
	for key, labels := range map[string]map[string]string{"agent_pod_label": podLabels, "agent_node_label": nodeLabels} {
		n := 0
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			if n == MaxLabels {
				break
			}
			if add(key, k+":"+labels[k]) {
				n++
			}
		}
	}
	return selector.Normalize(out)
}

// SelectorType declares the k8s_psat selector type (all node selectors) for a server's
// selector.Registry: each key with the check of its values.
func SelectorType() selector.Type {
	return selector.Type{Name: Type, Kind: selector.Node, Keys: map[string]selector.ValueCheck{
		"cluster": selector.NameValue, "agent_ns": selector.NameValue, "agent_sa": selector.NameValue,
		"agent_pod_name": selector.NameValue, "agent_pod_uid": selector.NameValue,
		"agent_node_name": selector.NameValue, "agent_node_uid": selector.NameValue,
		"agent_node_label": selector.LabelValue, "agent_pod_label": selector.LabelValue,
	}}
}
