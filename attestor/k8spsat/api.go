package k8spsat

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/signet-id/signet/attestor/nodeattest"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// The extra fields of a TokenReview's user that name the pod and node a projected token is bound to.
const (
	extraPodName  = "authentication.kubernetes.io/pod-name"
	extraPodUID   = "authentication.kubernetes.io/pod-uid"
	extraNodeName = "authentication.kubernetes.io/node-name"
	extraNodeUID  = "authentication.kubernetes.io/node-uid"
)

// apiClient is a cluster's Kubernetes API: TokenReview, pods and nodes, with the server's credentials.
// It is two client-go REST clients over a scheme of the two API groups used: the typed clientsets
// would link client-go's scheme of every built-in group (docs/performance.md).
type apiClient struct {
	authn, core rest.Interface
}

func newAPIClient(cfg *rest.Config) (*apiClient, error) {
	scheme := runtime.NewScheme()
	if err := authnv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		if c.Timeout == 0 {
			c.Timeout = DefaultAPITimeout
		}
		// JSON, which every API server speaks (and the test API server, with the k8s.io/api types).
		c.ContentType, c.AcceptContentTypes = "application/json", "application/json"
		c.GroupVersion, c.APIPath, c.NegotiatedSerializer = &gv, apiPath, codecs
		if c.UserAgent == "" {
			c.UserAgent = "signet-server"
		}
		return rest.RESTClientFor(c)
	}
	authn, err := client(authnv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	core, err := client(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	return &apiClient{authn: authn, core: core}, nil
}

// unavailable wraps an API failure that is no answer about the token (the API is down, the server's
// credentials lack a permission): the agent retries, and the message says what failed.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", nodeattest.ErrUnavailable, what, err)
}

// review asks the cluster's TokenReview API whether the token is valid for audience, and reads the
// service account and the pod (and node) it is bound to.
func (a *apiClient) review(ctx context.Context, token, audience string) (identity, error) {
	tr := &authnv1.TokenReview{}
	err := a.authn.Post().Resource("tokenreviews").Body(&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{audience}}}).
		Do(ctx).Into(tr)
	if err != nil {
		return identity{}, unavailable("TokenReview (does the server's service account may create tokenreviews?)", err)
	}
	st := tr.Status
	if !st.Authenticated {
		reason := st.Error
		if reason == "" {
			reason = "not authenticated"
		}
		return identity{}, fmt.Errorf("%w: TokenReview: %s", nodeattest.ErrRefused, reason)
	}
	if !slices.Contains(st.Audiences, audience) {
		return identity{}, fmt.Errorf("%w: TokenReview: token audiences %q do not include %q", nodeattest.ErrRefused, st.Audiences, audience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return identity{}, fmt.Errorf("%w: TokenReview: user %q is not a service account", nodeattest.ErrRefused, st.User.Username)
	}
	extra := func(k string) string {
		if v := st.User.Extra[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	id := identity{namespace: ns, serviceAccount: sa, podName: extra(extraPodName), podUID: extra(extraPodUID),
		nodeName: extra(extraNodeName), nodeUID: extra(extraNodeUID)}
	if id.podName == "" {
		return identity{}, fmt.Errorf("%w: token of %s:%s is not bound to a pod (want a projected service account token)", nodeattest.ErrRefused, ns, sa)
	}
	return id, nil
}

// confirmPod reads the token's pod and its node: the pod must still exist with the token's UID, run as
// the token's service account, on the token's node (when it names one), and the node must exist. It
// completes id with the node and returns the pod's and node's labels.
func (a *apiClient) confirmPod(ctx context.Context, id *identity) (podLabels, nodeLabels map[string]string, err error) {
	pod := &corev1.Pod{}
	err = a.core.Get().Namespace(id.namespace).Resource("pods").Name(id.podName).Do(ctx).Into(pod)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil, fmt.Errorf("%w: pod %s/%s no longer exists (the token outlived its pod)", nodeattest.ErrRefused, id.namespace, id.podName)
	case err != nil:
		return nil, nil, unavailable(fmt.Sprintf("get pod %s/%s (may the server's service account get pods?)", id.namespace, id.podName), err)
	}
	if id.podUID != "" && string(pod.UID) != id.podUID {
		return nil, nil, fmt.Errorf("%w: pod %s/%s is now uid %s; the token is for the deleted pod %s", nodeattest.ErrRefused, id.namespace, id.podName, pod.UID, id.podUID)
	}
	if pod.Spec.ServiceAccountName != id.serviceAccount {
		return nil, nil, fmt.Errorf("%w: pod %s/%s runs as service account %q, the token is of %q", nodeattest.ErrRefused, id.namespace, id.podName, pod.Spec.ServiceAccountName, id.serviceAccount)
	}
	if pod.Spec.NodeName == "" || (id.nodeName != "" && pod.Spec.NodeName != id.nodeName) {
		return nil, nil, fmt.Errorf("%w: pod %s/%s runs on node %q, the token names node %q", nodeattest.ErrRefused, id.namespace, id.podName, pod.Spec.NodeName, id.nodeName)
	}
	id.podUID, id.nodeName = string(pod.UID), pod.Spec.NodeName
	node := &corev1.Node{}
	err = a.core.Get().Resource("nodes").Name(id.nodeName).Do(ctx).Into(node)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil, fmt.Errorf("%w: node %s of pod %s/%s no longer exists", nodeattest.ErrRefused, id.nodeName, id.namespace, id.podName)
	case err != nil:
		return nil, nil, unavailable(fmt.Sprintf("get node %s (may the server's service account get nodes?)", id.nodeName), err)
	}
	if id.nodeUID != "" && string(node.UID) != id.nodeUID {
		return nil, nil, fmt.Errorf("%w: node %s is now uid %s; the token is for the node %s", nodeattest.ErrRefused, id.nodeName, node.UID, id.nodeUID)
	}
	id.nodeUID = string(node.UID)
	return pod.Labels, node.Labels, nil
}
