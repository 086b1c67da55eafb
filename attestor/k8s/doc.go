// Package k8s is Signet's Kubernetes workload attestor: given the pid of a process calling the
// Workload API and the start time it had when it connected, it finds the pod and container the process
// runs in and reports them as selectors:
//
//	k8s:ns:<namespace>               k8s:sa:<service account>
//	k8s:pod-name:<name>              k8s:pod-uid:<uid>
//	k8s:pod-label:<key>:<value>      k8s:pod-owner:<kind>:<name>     (one per label, per owner)
//	k8s:container-name:<name>        k8s:container-image:<image>     (spec image, resolved image, image ID)
//	k8s:node-name:<node>
//
// It runs beside attestor/unix in the agent (workloadapi unions their selectors), so an entry can ask
// for both: k8s:ns:payments + k8s:sa:api + unix:uid:1000.
//
// Usage:
//
//	att, err := k8s.New(k8s.Config{NodeName: os.Getenv("MY_NODE_NAME")}) // token and CA: the pod's defaults
//	if err != nil {
//		return err
//	}
//	sels, err := att.Attest(ctx, caller.PID, caller.StartTime)
//	switch {
//	case errors.Is(err, k8s.ErrNotListed): // in a container the kubelet does not list: refuse
//	case err == nil && len(sels) == 0:      // not in a pod: the unix selectors are all there is
//	}
//
// # From pid to container
//
// /proc/<pid>/cgroup (under Config.ProcRoot) names the pod UID and the container ID, in the layout of
// the container runtime (containerd, CRI-O, Docker) and of the kubelet's cgroup driver (cgroupfs,
// systemd), on cgroup v1 or v2; see parseCgroup for the shapes read. The agent must see the host's
// cgroup paths: run it in the host's pid and cgroup namespaces (hostPID: true in its DaemonSet). A
// process in no pod gets no selectors and no error, and costs no kubelet request. A process in a
// pod's cgroup but in none of its containers (the sandbox, CRI-O's conmon) is refused.
//
// The start time is checked before and after the cgroup is read, as attestor/unix does: a pid that
// came to name another process is refused with ErrProcessGone.
//
// # From container to pod
//
// The pod comes from the kubelet's own pod list, GET https://<node>:10250/pods (Config.KubeletURL),
// with the agent's service account token (read again for every request: projected tokens rotate)
// and the kubelet's serving certificate verified against Config.KubeletCAPath, or not at all with
// SkipKubeletVerification. The agent's service account needs "get" on "nodes/proxy". The answer is
// decoded into k8s.io/api's v1.PodList; no API server is involved, and k8s.io/client-go is not used.
//
// A pod list answers every caller for Config.PodListTTL (2 s), and callers that need a new one while a
// request is in flight wait for that request instead of sending their own, so a burst of workloads
// starting costs the kubelet one request.
//
// A container that just started may not be in the kubelet's list (or in its pod's status) yet: the
// attestor asks again, for a list fetched after the miss, up to Config.PollAttempts times
// Config.PollInterval apart (20 × 250 ms), then refuses the call with ErrNotListed: fail closed. A
// caller found only after waiting is checked again by pid and start time before it is answered.
//
// # What is not here
//
// k8s:ns-label (a namespace's labels) needs the Namespace object, which only the API server serves;
// this attestor talks to the kubelet alone, so it does not produce it.
package k8s
