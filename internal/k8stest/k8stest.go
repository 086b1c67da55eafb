// Package k8stest is test support only: a Kubernetes service-account issuer that signs projected tokens
// as the API server does (RS256 or ES256, the kubernetes.io claim with namespace, service account, pod
// and node), and a local HTTPS API server that speaks the real wire format with the k8s.io/api types
// (TokenReview, Pod, Node). Tests of attestor/k8spsat and the end-to-end tests of cmd/signet use them.
package k8stest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// Issuer signs service-account tokens for one cluster.
type Issuer struct {
	URL    string // the tokens' "iss"
	key    crypto.Signer
	alg    jose.SignatureAlgorithm
	keyID  string
	signer jose.Signer
}

// NewIssuer returns an issuer with a new RSA (RS256) or P-256 (ES256) key.
func NewIssuer(tb testing.TB, url string, alg jose.SignatureAlgorithm) *Issuer {
	tb.Helper()
	var key crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		tb.Fatalf("k8stest: algorithm %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	kid := fmt.Sprintf("%s-%d", strings.ToLower(string(alg)), time.Now().UnixNano())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatal(err)
	}
	return &Issuer{URL: url, key: key, alg: alg, keyID: kid, signer: signer}
}

// JWKS returns the issuer's public keys as a JWKS document.
func (is *Issuer) JWKS() []byte {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: is.key.Public(), KeyID: is.keyID, Algorithm: string(is.alg), Use: "sig"}}})
	return b
}

// Pod is what a token is bound to.
type Pod struct {
	Namespace, ServiceAccount string
	Name, UID                 string
	NodeName, NodeUID         string
}

// ref names an object in the kubernetes.io claim.
type ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Token signs a projected token for pod with audience, valid from now for ttl (negative: expired).
func (is *Issuer) Token(tb testing.TB, pod Pod, audience string, now time.Time, ttl time.Duration) string {
	tb.Helper()
	k8s := map[string]any{"namespace": pod.Namespace, "serviceaccount": ref{Name: pod.ServiceAccount, UID: "sa-uid"},
		"pod": ref{Name: pod.Name, UID: pod.UID}}
	if pod.NodeName != "" {
		k8s["node"] = ref{Name: pod.NodeName, UID: pod.NodeUID}
	}
	iat := now
	if ttl < 0 {
		iat = now.Add(2 * ttl)
	}
	claims := jwt.Claims{Issuer: is.URL, Subject: "system:serviceaccount:" + pod.Namespace + ":" + pod.ServiceAccount,
		Audience: jwt.Audience{audience}, IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat),
		Expiry: jwt.NewNumericDate(now.Add(ttl))}
	tok, err := jwt.Signed(is.signer).Claims(claims).Claims(map[string]any{"kubernetes.io": k8s}).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// verify checks a token as the API server's TokenReview does: signature, expiry and audience.
func (is *Issuer) verify(token string, audiences []string, now time.Time) (Pod, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{is.alg})
	if err != nil {
		return Pod{}, err
	}
	var c jwt.Claims
	var priv struct {
		K8s struct {
			Namespace      string `json:"namespace"`
			ServiceAccount ref    `json:"serviceaccount"`
			Pod            ref    `json:"pod"`
			Node           ref    `json:"node"`
		} `json:"kubernetes.io"`
	}
	if err := tok.Claims(is.key.Public(), &c, &priv); err != nil {
		return Pod{}, fmt.Errorf("invalid bearer token")
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: is.URL, AnyAudience: audiences, Time: now}, 0); err != nil {
		return Pod{}, fmt.Errorf("invalid bearer token, %v", err)
	}
	k := priv.K8s
	return Pod{Namespace: k.Namespace, ServiceAccount: k.ServiceAccount.Name, Name: k.Pod.Name, UID: k.Pod.UID,
		NodeName: k.Node.Name, NodeUID: k.Node.UID}, nil
}

// APIServer is a local HTTPS Kubernetes API server: TokenReview (checking tokens with its Issuer),
// and pods and nodes to get. Every request must carry the server's bearer token (RESTConfig,
// WriteKubeconfig; SetBearerToken changes the one accepted).
type APIServer struct {
	Issuer *Issuer
	srv    *httptest.Server

	mu          sync.Mutex
	bearerToken string
	pods        map[string]*corev1.Pod // "ns/name"
	nodes       map[string]*corev1.Node
}

// NewAPIServer starts an API server for issuer's cluster; it stops when the test ends.
func NewAPIServer(tb testing.TB, issuer *Issuer) *APIServer {
	a := &APIServer{Issuer: issuer, bearerToken: "signet-server-credentials", pods: map[string]*corev1.Pod{}, nodes: map[string]*corev1.Node{}}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	tb.Cleanup(a.srv.Close)
	return a
}

// AddPod adds (or replaces) a pod, and its node if the node does not exist yet.
func (a *APIServer) AddPod(p Pod, podLabels, nodeLabels map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pods[p.Namespace+"/"+p.Name] = &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: types.UID(p.UID), Labels: podLabels},
		Spec:       corev1.PodSpec{NodeName: p.NodeName, ServiceAccountName: p.ServiceAccount}}
	if a.nodes[p.NodeName] == nil {
		a.nodes[p.NodeName] = &corev1.Node{TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: p.NodeName, UID: types.UID(p.NodeUID), Labels: nodeLabels}}
	}
}

// SetBearerToken changes the bearer token the server accepts (clients holding the old one are refused).
func (a *APIServer) SetBearerToken(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bearerToken = tok
}

func (a *APIServer) token() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bearerToken
}

// DeletePod deletes a pod.
func (a *APIServer) DeletePod(namespace, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pods, namespace+"/"+name)
}

// RESTConfig is a client configuration for this server.
func (a *APIServer) RESTConfig() *rest.Config {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	return &rest.Config{Host: a.srv.URL, BearerToken: a.token(), TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
}

// WriteKubeconfig writes a kubeconfig for this server to path (0600).
func (a *APIServer) WriteKubeconfig(tb testing.TB, path string) {
	tb.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
	cfg := map[string]any{"apiVersion": "v1", "kind": "Config", "current-context": "test",
		"clusters": []any{map[string]any{"name": "test", "cluster": map[string]any{"server": a.srv.URL, "certificate-authority-data": ca}}},
		"users":    []any{map[string]any{"name": "signet", "user": map[string]any{"token": a.token()}}},
		"contexts": []any{map[string]any{"name": "test", "context": map[string]any{"cluster": "test", "user": "signet"}}}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func (a *APIServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+a.token() {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "")
		return
	}
	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && path == "/apis/authentication.k8s.io/v1/tokenreviews":
		var tr authnv1.TokenReview
		if err := json.NewDecoder(r.Body).Decode(&tr); err != nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "")
			return
		}
		auds := tr.Spec.Audiences
		if len(auds) == 0 {
			auds = []string{a.Issuer.URL}
		}
		p, err := a.Issuer.verify(tr.Spec.Token, auds, time.Now())
		tr.Spec.Token = ""
		tr.TypeMeta = metav1.TypeMeta{Kind: "TokenReview", APIVersion: "authentication.k8s.io/v1"}
		if err != nil {
			tr.Status = authnv1.TokenReviewStatus{Error: "[" + err.Error() + "]"}
		} else {
			extra := map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {p.Name}, "authentication.kubernetes.io/pod-uid": {p.UID}}
			if p.NodeName != "" {
				extra["authentication.kubernetes.io/node-name"] = authnv1.ExtraValue{p.NodeName}
				extra["authentication.kubernetes.io/node-uid"] = authnv1.ExtraValue{p.NodeUID}
			}
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: auds, User: authnv1.UserInfo{
				Username: "system:serviceaccount:" + p.Namespace + ":" + p.ServiceAccount, Extra: extra}}
		}
		writeJSON(w, http.StatusCreated, &tr)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/api/v1/namespaces/"):
		parts := strings.Split(strings.TrimPrefix(path, "/api/v1/namespaces/"), "/")
		if len(parts) != 3 || parts[1] != "pods" {
			writeStatus(w, http.StatusNotFound, "NotFound", "")
			return
		}
		a.mu.Lock()
		p := a.pods[parts[0]+"/"+parts[2]]
		a.mu.Unlock()
		if p == nil {
			writeStatus(w, http.StatusNotFound, "NotFound", "pods")
			return
		}
		writeJSON(w, http.StatusOK, p)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/api/v1/nodes/"):
		a.mu.Lock()
		n := a.nodes[strings.TrimPrefix(path, "/api/v1/nodes/")]
		a.mu.Unlock()
		if n == nil {
			writeStatus(w, http.StatusNotFound, "NotFound", "nodes")
			return
		}
		writeJSON(w, http.StatusOK, n)
	default:
		writeStatus(w, http.StatusNotFound, "NotFound", "")
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason, kind string) {
	writeJSON(w, code, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Code: int32(code), Reason: metav1.StatusReason(reason), Details: &metav1.StatusDetails{Kind: kind},
		Message: strings.ToLower(reason)})
}
