package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/attestor/jointoken/payload"
	"github.com/signet-id/signet/attestor/k8spsat"
	psatpayload "github.com/signet-id/signet/attestor/k8spsat/payload"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/signet-id/signet/server/agentapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/rest"
)

// serverNodeAttestors is the server's node_attestors section: the node attestors agents may use
// besides join tokens (always on).
type serverNodeAttestors struct {
	K8sPSAT *struct {
		Clusters []k8sPSATClusterFile `yaml:"clusters"`
	} `yaml:"k8s_psat"`
	// built are the attestors, built by build.
	built []agentapi.NodeAttestor
}

// k8sPSATClusterFile is one cluster of node_attestors.k8s_psat.clusters (k8spsat.ClusterConfig).
type k8sPSATClusterFile struct {
	Name                    string        `yaml:"name"`
	ServiceAccountAllowList []string      `yaml:"service_account_allow_list"`
	Audience                string        `yaml:"audience"`
	Owner                   string        `yaml:"owner"`
	Kubeconfig              string        `yaml:"kubeconfig"`
	InCluster               bool          `yaml:"in_cluster"`
	JWKSFile                string        `yaml:"jwks_file"`
	JWKSURL                 string        `yaml:"jwks_url"`
	Issuer                  string        `yaml:"issuer"`
	JWKSRefresh             time.Duration `yaml:"jwks_refresh"`
}

// build validates the section and builds its attestors; errors name the key.
func (n *serverNodeAttestors) build(path string, td spiffeid.TrustDomain) error {
	if n.K8sPSAT == nil {
		return nil
	}
	const key = "node_attestors.k8s_psat"
	if len(n.K8sPSAT.Clusters) == 0 {
		return configError(path, key+".clusters", "is required: list the clusters whose agents attest (name, service_account_allow_list, and kubeconfig, in_cluster or jwks_file/jwks_url with issuer)")
	}
	var clusters []k8spsat.ClusterConfig
	for i, f := range n.K8sPSAT.Clusters {
		ckey := fmt.Sprintf("%s.clusters[%d]", key, i)
		cc := k8spsat.ClusterConfig{Name: f.Name, ServiceAccountAllowList: f.ServiceAccountAllowList, Audience: f.Audience, Owner: f.Owner,
			JWKSFile: f.JWKSFile, JWKSURL: f.JWKSURL, Issuer: f.Issuer, JWKSRefresh: f.JWKSRefresh}
		if f.Owner != "" {
			if err := adminapi.ValidateOwnerName(f.Owner); err != nil {
				return configError(path, ckey+".owner", "%v", err)
			}
		}
		if f.JWKSRefresh != 0 && (f.JWKSRefresh < time.Minute || f.JWKSRefresh > 24*time.Hour) {
			return configError(path, ckey+".jwks_refresh", "%s: want between 1m and 24h", f.JWKSRefresh)
		}
		if f.JWKSURL != "" && !strings.HasPrefix(f.JWKSURL, "https://") {
			return configError(path, ckey+".jwks_url", "%q: want an https:// URL (the JWKS or the issuer's /.well-known/openid-configuration)", f.JWKSURL)
		}
		if f.JWKSFile != "" {
			if err := requireAbs(path, ckey+".jwks_file", f.JWKSFile); err != nil {
				return err
			}
		}
		switch {
		case f.Kubeconfig != "" && f.InCluster:
			return configError(path, ckey+".in_cluster", "cannot be true together with kubeconfig: choose one")
		case f.Kubeconfig != "":
			if err := requireAbs(path, ckey+".kubeconfig", f.Kubeconfig); err != nil {
				return err
			}
			api, err := k8spsat.LoadKubeconfig(f.Kubeconfig)
			if err != nil {
				return configError(path, ckey+".kubeconfig", "%v", err)
			}
			cc.API = api
		case f.InCluster:
			api, err := rest.InClusterConfig()
			if err != nil {
				return configError(path, ckey+".in_cluster", "%v (is the server running in a pod with a service account?)", err)
			}
			cc.API = api
		}
		clusters = append(clusters, cc)
	}
	a, err := k8spsat.New(k8spsat.Config{TrustDomain: td, Clusters: clusters})
	if err != nil {
		return configError(path, key, "%v", err)
	}
	n.built = append(n.built, a)
	return nil
}

// agentNodeAttestor is the agent's node_attestor section: how the agent attests its node when it has
// no SVID (none yet, or one that expired). Without it, with a join token.
type agentNodeAttestor struct {
	K8sPSAT *struct {
		Cluster   string `yaml:"cluster"`
		TokenPath string `yaml:"token_path"`
	} `yaml:"k8s_psat"`
}

// check validates the section.
func (n *agentNodeAttestor) check(path string) error {
	if n.K8sPSAT == nil {
		return nil
	}
	const key = "node_attestor.k8s_psat"
	if n.K8sPSAT.Cluster == "" {
		return configError(path, key+".cluster", "is required: the cluster's name as the server's node_attestors.k8s_psat.clusters names it")
	}
	if n.K8sPSAT.TokenPath == "" {
		n.K8sPSAT.TokenPath = psatpayload.DefaultTokenPath
	}
	return requireAbs(path, key+".token_path", n.K8sPSAT.TokenPath)
}

// attestor returns the agent's node attestor: k8s_psat if configured (then a join token is refused:
// one way to attest), else the join token, if any. reattest says whether the agent may attest again
// by itself when its SVID could not be renewed.
func (n *agentNodeAttestor) attestor(joinToken string) (a agent.NodeAttestor, reattest bool, err error) {
	if n.K8sPSAT != nil {
		if joinToken != "" {
			return nil, false, usagef("node_attestor.k8s_psat is configured: the agent attests with its service account token, not a join token; drop the join token")
		}
		return psatpayload.PSAT{Cluster: n.K8sPSAT.Cluster, TokenPath: n.K8sPSAT.TokenPath}, true, nil
	}
	if joinToken == "" {
		return nil, false, nil
	}
	return payload.JoinToken{Token: joinToken}, false, nil
}
