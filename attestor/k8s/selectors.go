package k8s

import (
	"fmt"
	"strings"

	"github.com/signet-id/signet/selector"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// podSelectors are the selectors of one container of a pod:
//
//	k8s:ns:<namespace>                  k8s:sa:<service account>
//	k8s:pod-name:<name>                 k8s:pod-uid:<uid>
//	k8s:pod-label:<key>:<value>         (each label)
//	k8s:pod-owner:<kind>:<name>         (each owner reference: ReplicaSet, StatefulSet, DaemonSet, Job, …)
//	k8s:container-name:<name>
//	k8s:container-image:<image>         (the image the pod spec names, and the kubelet's resolved image
//	                                     and image ID, which names the digest: each that differs)
//	k8s:node-name:<node>
func podSelectors(pod *corev1.Pod, st *corev1.ContainerStatus) []selector.Selector {
	sels := make([]selector.Selector, 0, 8+len(pod.Labels)+len(pod.OwnerReferences))
	add := func(key, value string) {
		if value != "" {
			sels = append(sels, selector.Selector{Type: selectorType, Value: key + ":" + value})
		}
	}
	add("ns", pod.Namespace)
	add("sa", pod.Spec.ServiceAccountName)
	add("pod-name", pod.Name)
	add("pod-uid", string(pod.UID))
	for k, v := range pod.Labels {
		add("pod-label", k+":"+v)
	}
	for _, o := range pod.OwnerReferences {
		add("pod-owner", o.Kind+":"+o.Name)
	}
	add("container-name", st.Name)
	add("container-image", specImage(pod, st.Name))
	add("container-image", st.Image)
	add("container-image", st.ImageID)
	add("node-name", pod.Spec.NodeName)
	return sels
}

// specImage is the image the pod spec gives container name.
func specImage(pod *corev1.Pod, name string) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return c.Image
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

func errs(what, v string, msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("value %q is not %s: %s", v, what, strings.Join(msgs, "; "))
}

// dnsLabelValue: a namespace or container name (RFC 1123 label).
func dnsLabelValue(v string) error {
	return errs("a DNS label (a namespace or container name)", v, validation.IsDNS1123Label(v))
}

// dnsSubdomainValue: a pod, service account or node name (RFC 1123 subdomain).
func dnsSubdomainValue(v string) error {
	return errs("a DNS subdomain (a pod, service account or node name)", v, validation.IsDNS1123Subdomain(v))
}

// uidValue: a pod UID, 8-4-4-4-12 lowercase hex.
func uidValue(v string) error {
	if !isUID(v) {
		return fmt.Errorf("value %q is not a pod UID (8-4-4-4-12 lowercase hex digits)", v)
	}
	return nil
}

// labelValue: "<label key>:<label value>" (app.kubernetes.io/name:web); the value may be empty.
func labelValue(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("value %q is not <label key>:<label value>", v)
	}
	if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
		return errs("a label key", k, msgs)
	}
	return errs("a label value", val, validation.IsValidLabelValue(val))
}

// ownerValue: "<kind>:<name>" (ReplicaSet:web-5d4f8b7c9).
func ownerValue(v string) error {
	kind, name, ok := strings.Cut(v, ":")
	if !ok || kind == "" || strings.Trim(kind, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		return fmt.Errorf("value %q is not <owner kind>:<owner name>, e.g. ReplicaSet:web-5d4f8b7c9", v)
	}
	return dnsSubdomainValue(name)
}

// imageValue: an image reference (registry/name:tag, name@sha256:…): printable, no spaces.
func imageValue(v string) error {
	if v == "" || len(v) > 512 || strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("value %q is not an image reference (e.g. registry.example/app:1.2 or app@sha256:…)", v)
	}
	return nil
}
