package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestKubernetesExampleConfigs loads the server and agent configurations of the example ConfigMaps
// with Signet's own loaders, in the environment their pods give them, so a renamed or misspelt key
// fails; and checks them against the manifests: retry_join lists the StatefulSet's pods by their DNS
// names under its headless service, bootstrap_expect is its replica count, data_dir is its volume
// claim's mount, and the agent's socket and data dir are on its mounts.
func TestKubernetesExampleConfigs(t *testing.T) {
	objs := loadKubernetesExamples(t)
	dir := t.TempDir()

	sts := objs.statefulSets["signet-server"]
	server := sts.Spec.Template.Spec.Containers[0]
	// The pod's environment, for signet-server-0: Kubernetes expands $(POD_NAME) in later variables.
	for _, e := range server.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			v = "signet-server-0"
		}
		t.Setenv(e.Name, strings.ReplaceAll(v, "$(POD_NAME)", "signet-server-0"))
	}
	// The join secret is read when the configuration loads: the pod's mount path points at a file here.
	secretMount := findMount(server, "join-secret")
	secret := filepath.Join(dir, "join.secret")
	writeFile(t, secret, "c2lnbmV0LWV4YW1wbGUtam9pbi1zZWNyZXQtMzItYnl0ZXMK\n")
	serverYAML := objs.configMaps["signet-server-config"].Data["server.yaml"]
	if !strings.Contains(serverYAML, "join_secret_file: "+secretMount.MountPath+"\n") {
		t.Fatalf("server.yaml's join_secret_file is not the StatefulSet's mount %s", secretMount.MountPath)
	}
	// in_cluster reads the pod's service account files, which only a pod has: the test points the
	// cluster at a kubeconfig instead (both are node_attestors.k8s_psat.clusters keys).
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, "apiVersion: v1\nkind: Config\ncurrent-context: demo\n"+
		"clusters: [{name: demo, cluster: {server: \"https://127.0.0.1:6443\", insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: signet, user: {token: example}}]\ncontexts: [{name: demo, context: {cluster: demo, user: signet}}]\n")
	if strings.Count(serverYAML, "in_cluster: true\n") != 1 {
		t.Fatalf("server.yaml does not configure one cluster with in_cluster: true")
	}
	serverYAML = strings.Replace(serverYAML, "in_cluster: true\n", "kubeconfig: "+kubeconfig+"\n", 1)
	path := filepath.Join(dir, "server.yaml")
	writeFile(t, path, strings.Replace(serverYAML, secretMount.MountPath, secret, 1))
	c, _, err := loadServerConfig(path)
	if err != nil {
		t.Fatalf("the ConfigMap's server.yaml does not load: %v", err)
	}
	var pods []string
	for i := range int(*sts.Spec.Replicas) {
		pods = append(pods, sts.Name+"-"+string(rune('0'+i))+"."+sts.Spec.ServiceName+"."+sts.Namespace+".svc.cluster.local:8300")
	}
	cfgEq(t, "raft.retry_join", c.Raft.RetryJoin, pods)
	cfgEq(t, "raft.bootstrap_expect", c.Raft.BootstrapExpect, int(*sts.Spec.Replicas))
	cfgEq(t, "raft.advertise_address (from the pod's environment)", c.Raft.AdvertiseAddress, pods[0])
	cfgEq(t, "data_dir", c.DataDir, findMount(server, "data").MountPath)
	cfgEq(t, "SIGNET_ADMIN_SOCKET", envValue(server, "SIGNET_ADMIN_SOCKET"), c.AdminSocket)

	ds := objs.daemonSets["signet-agent"].Spec.Template.Spec
	agentC := ds.Containers[0]
	agentYAML := objs.configMaps["signet-agent-config"].Data["agent.yaml"]
	path = filepath.Join(dir, "agent.yaml")
	writeFile(t, path, agentYAML)
	a, _, _, err := loadAgentConfig(path)
	if err != nil {
		t.Fatalf("the ConfigMap's agent.yaml does not load: %v", err)
	}
	cfgEq(t, "socket_path's directory", filepath.Dir(a.SocketPath), findMount(agentC, "socket-dir").MountPath)
	if !strings.HasPrefix(a.DataDir, findMount(agentC, "data").MountPath+"/") {
		t.Errorf("data_dir %s is not on the agent's data mount", a.DataDir)
	}
	cfgEq(t, "trust_bundle_path's directory", filepath.Dir(a.TrustBundlePath), findMount(agentC, "bundle").MountPath)
	tok := findVolume(ds, "signet-agent-token").Projected.Sources[0].ServiceAccountToken
	tokenPath := findMount(agentC, "signet-agent-token").MountPath + "/" + tok.Path
	if !strings.Contains(agentYAML, "token_path: "+tokenPath+"\n") {
		t.Errorf("agent.yaml's k8s_psat token_path is not the projected token %s", tokenPath)
	}
	if !slices.Contains(a.servers(), objs.services["signet-server"].Name+"."+sts.Namespace+".svc.cluster.local:8081") {
		t.Errorf("server_address %v is not the agent API service", a.servers())
	}
}
