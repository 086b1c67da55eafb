package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kubernetesExamples is examples/kubernetes/, from this package's directory.
const kubernetesExamples = "../../examples/kubernetes"

// kubernetesObjects holds every object of the example manifests, decoded strictly, by kind.
type kubernetesObjects struct {
	configMaps   map[string]*corev1.ConfigMap
	statefulSets map[string]*appsv1.StatefulSet
	daemonSets   map[string]*appsv1.DaemonSet
	deployments  map[string]*appsv1.Deployment
	services     map[string]*corev1.Service
	clusterRoles map[string]*rbacv1.ClusterRole
	all          []string // "Kind/namespace/name"
}

// loadKubernetesExamples decodes every YAML document of every manifest in examples/kubernetes/ into
// its k8s.io/api type, in strict mode: an unknown or misspelt field, a duplicate field, or a kind the
// test does not know fails.
func loadKubernetesExamples(t *testing.T) kubernetesObjects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubernetesExamples, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", kubernetesExamples, err)
	}
	objs := kubernetesObjects{configMaps: map[string]*corev1.ConfigMap{}, statefulSets: map[string]*appsv1.StatefulSet{},
		daemonSets: map[string]*appsv1.DaemonSet{}, deployments: map[string]*appsv1.Deployment{},
		services: map[string]*corev1.Service{}, clusterRoles: map[string]*rbacv1.ClusterRole{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if len(bytes.TrimSpace(stripYAMLComments(doc))) == 0 {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			obj, meta := newKubernetesObject(tm)
			if obj == nil {
				t.Fatalf("%s: document %d: %s %s: not a kind this test decodes (add it to newKubernetesObject)", f, i, tm.APIVersion, tm.Kind)
			}
			if err := decodeManifestStrict(doc, obj); err != nil {
				t.Fatalf("%s: document %d (%s): %v", f, i, tm.Kind, err)
			}
			if meta.Name == "" {
				t.Fatalf("%s: document %d (%s): no metadata.name", f, i, tm.Kind)
			}
			objs.add(obj, meta.Name)
			objs.all = append(objs.all, tm.Kind+"/"+meta.Namespace+"/"+meta.Name)
		}
	}
	return objs
}

// newKubernetesObject returns a new object of tm's kind and its metadata; nil for a kind it does not
// know.
func newKubernetesObject(tm metav1.TypeMeta) (any, *metav1.ObjectMeta) {
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		o := &corev1.Namespace{}
		return o, &o.ObjectMeta
	case "v1 ServiceAccount":
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta
	case "v1 Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		return o, &o.ObjectMeta
	case "apps/v1 DaemonSet":
		o := &appsv1.DaemonSet{}
		return o, &o.ObjectMeta
	case "apps/v1 Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		o := &rbacv1.ClusterRole{}
		return o, &o.ObjectMeta
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		o := &rbacv1.ClusterRoleBinding{}
		return o, &o.ObjectMeta
	}
	return nil, nil
}

// add files a decoded object under its name, for the checks across manifests.
func (objs *kubernetesObjects) add(obj any, name string) {
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		objs.configMaps[name] = o
	case *corev1.Service:
		objs.services[name] = o
	case *appsv1.StatefulSet:
		objs.statefulSets[name] = o
	case *appsv1.DaemonSet:
		objs.daemonSets[name] = o
	case *appsv1.Deployment:
		objs.deployments[name] = o
	case *rbacv1.ClusterRole:
		objs.clusterRoles[name] = o
	}
}

// decodeManifestStrict decodes one YAML document into obj as the API server's strict field validation
// does: YAML to JSON (a key given twice is an error), then case-sensitive JSON with unknown and
// duplicate fields refused.
func decodeManifestStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// stripYAMLComments drops comment-only lines, so a document of comments alone counts as empty.
func stripYAMLComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestKubernetesManifests decodes every document of examples/kubernetes/ strictly with the k8s.io/api
// types and checks that the pieces fit: the servers' headless service and StatefulSet, the agents'
// projected token, host PID namespace and socket directory, the workload's socket, and the RBAC rules
// the attestors need.
func TestKubernetesManifests(t *testing.T) {
	objs := loadKubernetesExamples(t)
	for _, want := range []string{"Namespace//signet", "Namespace//demo", "ServiceAccount/signet/signet-server",
		"ServiceAccount/signet/signet-agent", "ServiceAccount/demo/demo-client", "ClusterRoleBinding//signet-server",
		"ClusterRoleBinding//signet-agent", "ConfigMap/signet/signet-server-config", "ConfigMap/signet/signet-agent-config",
		"Service/signet/signet-server-raft", "Service/signet/signet-server", "StatefulSet/signet/signet-server",
		"DaemonSet/signet/signet-agent", "Deployment/demo/demo-client"} {
		if !slices.Contains(objs.all, want) {
			t.Errorf("examples/kubernetes/ has no %s (has %v)", want, objs.all)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	sts := objs.statefulSets["signet-server"]
	peers := objs.services["signet-server-raft"]
	switch {
	case sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3:
		t.Errorf("StatefulSet signet-server: replicas %v, want 3", sts.Spec.Replicas)
	case sts.Spec.ServiceName != peers.Name || peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses:
		t.Errorf("StatefulSet signet-server: serviceName %q, want the headless service %s publishing not-ready pods", sts.Spec.ServiceName, peers.Name)
	case sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement:
		t.Errorf("StatefulSet signet-server: podManagementPolicy %q: with bootstrap_expect no server is ready alone, so the pods must start in parallel", sts.Spec.PodManagementPolicy)
	case len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data":
		t.Errorf("StatefulSet signet-server: want one volumeClaimTemplate, data")
	}
	server := sts.Spec.Template.Spec
	checkPodVolumes(t, objs, "StatefulSet signet-server", server, sts.Spec.VolumeClaimTemplates)
	secret := findVolume(server, "join-secret")
	if secret == nil || secret.Secret == nil || secret.Secret.DefaultMode == nil || *secret.Secret.DefaultMode != 0o400 {
		t.Errorf("StatefulSet signet-server: the join secret volume is not a Secret mounted 0400: %+v", secret)
	}
	if m := findMount(server.Containers[0], "join-secret"); m == nil || m.SubPath != "join.secret" {
		t.Errorf("StatefulSet signet-server: the join secret is not mounted by subPath (a Secret volume's file is a symlink, which the server refuses): %+v", m)
	}

	ds := objs.daemonSets["signet-agent"].Spec.Template.Spec
	checkPodVolumes(t, objs, "DaemonSet signet-agent", ds, nil)
	if !ds.HostPID || !ds.HostNetwork || ds.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("DaemonSet signet-agent: hostPID %v, hostNetwork %v, dnsPolicy %q: the attestors need the host's PIDs and the kubelet at 127.0.0.1, and the servers' service needs cluster DNS",
			ds.HostPID, ds.HostNetwork, ds.DNSPolicy)
	}
	tok := findVolume(ds, "signet-agent-token")
	if tok == nil || tok.Projected == nil || len(tok.Projected.Sources) != 1 || tok.Projected.Sources[0].ServiceAccountToken == nil ||
		tok.Projected.Sources[0].ServiceAccountToken.Audience != "signet-server" {
		t.Errorf("DaemonSet signet-agent: no projected service account token for audience signet-server: %+v", tok)
	}
	agentSock := findVolume(ds, "socket-dir")
	wl := objs.deployments["demo-client"].Spec.Template.Spec
	checkPodVolumes(t, objs, "Deployment demo-client", wl, nil)
	wlSock := findVolume(wl, "signet-socket")
	if agentSock == nil || agentSock.HostPath == nil || wlSock == nil || wlSock.HostPath == nil || agentSock.HostPath.Path != wlSock.HostPath.Path {
		t.Errorf("the agent's socket directory and the workload's are not the same hostPath: %+v, %+v", agentSock, wlSock)
	} else {
		m := findMount(wl.Containers[0], "signet-socket")
		want := "unix://" + m.MountPath + "/agent.sock"
		if got := envValue(wl.Containers[0], "SPIFFE_ENDPOINT_SOCKET"); got != want || !m.ReadOnly {
			t.Errorf("Deployment demo-client: SPIFFE_ENDPOINT_SOCKET %q, want %q on a read-only mount", got, want)
		}
	}

	for role, want := range map[string][]string{
		"signet-server": {"authentication.k8s.io tokenreviews create", " pods get", " nodes get"},
		"signet-agent":  {" nodes/proxy get"},
	} {
		var have []string
		for _, r := range objs.clusterRoles[role].Rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						have = append(have, g+" "+res+" "+v)
					}
				}
			}
		}
		for _, w := range want {
			if !slices.Contains(have, w) {
				t.Errorf("ClusterRole %s does not allow %q (allows %v)", role, w, have)
			}
		}
	}
}

// TestKubernetesManifestsStrict: the decoding above refuses a misspelt field, so a manifest the API
// server would reject (or silently misread) fails the test.
func TestKubernetesManifestsStrict(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(kubernetesExamples, "server.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(b), "\n---\n")
	doc := docs[len(docs)-1]
	if !strings.Contains(doc, "  replicas: 3\n") {
		t.Fatalf("the last document of server.yaml is not the StatefulSet with replicas: 3")
	}
	if err := decodeManifestStrict([]byte(doc), &appsv1.StatefulSet{}); err != nil {
		t.Fatalf("the StatefulSet as written: %v", err)
	}
	for _, tt := range []struct{ from, to, want string }{
		{"  replicas: 3\n", "  replica: 3\n", `unknown field "spec.replica"`},
		{"  replicas: 3\n", "  Replicas: 3\n", `unknown field "spec.Replicas"`}, // the API server is case-sensitive
		{"  replicas: 3\n", "  replicas: 3\n  replicas: 2\n", `"replicas" already set`},
	} {
		bad := strings.Replace(doc, tt.from, tt.to, 1)
		if err := decodeManifestStrict([]byte(bad), &appsv1.StatefulSet{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q decoded with err = %v, want %s", strings.TrimSpace(tt.to), err, tt.want)
		}
	}
}

// checkPodVolumes checks that every mount of every container names a volume of the pod (or a claim
// template), and that every ConfigMap volume names a ConfigMap of the manifests — except signet-bundle,
// which holds the servers' trust bundle and is created in the walk-through (docs/kubernetes.md).
func checkPodVolumes(t *testing.T, objs kubernetesObjects, what string, pod corev1.PodSpec, claims []corev1.PersistentVolumeClaim) {
	t.Helper()
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		for _, m := range c.VolumeMounts {
			if findVolume(pod, m.Name) == nil && !slices.ContainsFunc(claims, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
				t.Errorf("%s: container %s mounts %q, which is no volume of the pod", what, c.Name, m.Name)
			}
		}
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name != "signet-bundle" && objs.configMaps[v.ConfigMap.Name] == nil {
			t.Errorf("%s: volume %s names ConfigMap %q, which no manifest defines", what, v.Name, v.ConfigMap.Name)
		}
	}
}

func findVolume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func findMount(c corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
