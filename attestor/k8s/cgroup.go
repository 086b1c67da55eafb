package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// containerRef is where a process runs, as its cgroup says: the pod's UID and the container's ID.
type containerRef struct {
	podUID      string // "2c48913c-b29f-11e7-9350-020968147796"
	containerID string // 64 lowercase hex digits
}

// errAmbiguous is returned when the lines of one cgroup file name different pods or containers.
var errAmbiguous = errors.New("cgroup names more than one pod or container")

// parseCgroup finds the pod UID and container ID in the contents of /proc/<pid>/cgroup: one line per
// hierarchy, "hierarchy-ID:controllers:path" (cgroup v1), or the single "0::path" line (v2). The path
// names the pod and container in one of these layouts:
//
//	cgroupfs driver:  /kubepods/burstable/pod<uid>/<id>           (containerd, Docker)
//	                  /kubepods/pod<uid>/crio-<id>                (CRI-O; Guaranteed pods have no QoS level)
//	systemd driver:   /kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/
//	                      cri-containerd-<id>.scope | crio-<id>.scope | docker-<id>.scope
//	containerd's systemd paths seen from a nested node (kind):
//	                  /…/kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>
//
// found is false, with no error, for a process in no pod (a host process, a plain Docker container).
// A process in a pod's cgroup but in none of its containers (the sandbox), or in CRI-O's conmon, is an
// error: it is in a pod, but it is no container the kubelet lists.
func parseCgroup(b []byte) (ref containerRef, found bool, err error) {
	for rest := b; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		// The path is everything after the second colon: containerd's systemd paths hold colons.
		_, after, ok := bytes.Cut(line, []byte{':'})
		if ok {
			_, after, ok = bytes.Cut(after, []byte{':'})
		}
		if !ok {
			return containerRef{}, false, fmt.Errorf("cgroup line %q: want hierarchy-ID:controllers:path", string(line)) // a copy: buf stays on the stack
		}
		r, inPod, err := parseCgroupPath(string(after))
		if err != nil {
			return containerRef{}, false, err
		}
		if !inPod {
			continue
		}
		if found && r != ref {
			return containerRef{}, false, fmt.Errorf("%w: pod %s container %s and pod %s container %s", errAmbiguous, ref.podUID, ref.containerID, r.podUID, r.containerID)
		}
		ref, found = r, true
	}
	return ref, found, nil
}

// parseCgroupPath finds the pod and container in one cgroup path.
func parseCgroupPath(path string) (containerRef, bool, error) {
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		uid, ok := podSegment(seg)
		if !ok {
			continue
		}
		rest := segs[i+1:]
		// containerd's systemd cgroup path "<pod slice>:cri-containerd:<id>" is one segment.
		if _, tail, colon := strings.Cut(seg, ":"); colon {
			rest = []string{tail}
		}
		if len(rest) == 0 || (len(rest) == 1 && rest[0] == "") {
			return containerRef{}, false, fmt.Errorf("cgroup path %q: in pod %s but in none of its containers (a sandbox or pod-level process)", path, uid)
		}
		id, err := containerSegment(rest[len(rest)-1])
		if err != nil {
			return containerRef{}, false, fmt.Errorf("cgroup path %q: pod %s: %w", path, uid, err)
		}
		return containerRef{podUID: uid, containerID: id}, true, nil
	}
	return containerRef{}, false, nil
}

// podSegment returns the pod UID named by a path segment: "pod<uid>" (cgroupfs) or
// "kubepods[-<qos>]-pod<uid with _ for ->.slice" (systemd; possibly followed by ":runtime:id").
func podSegment(seg string) (string, bool) {
	seg, _, _ = strings.Cut(seg, ":")
	var uid string
	switch {
	case strings.HasPrefix(seg, "pod"):
		uid = seg[len("pod"):]
	case strings.HasPrefix(seg, "kubepods-") && strings.HasSuffix(seg, ".slice"):
		i := strings.LastIndex(seg, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(strings.TrimSuffix(seg[i+len("-pod"):], ".slice"), "_", "-")
	default:
		return "", false
	}
	if !isUID(uid) {
		return "", false
	}
	return uid, true
}

// containerSegment returns the container ID in the last segment of a container's cgroup path.
func containerSegment(seg string) (string, error) {
	if i := strings.LastIndexByte(seg, ':'); i >= 0 { // "…slice:cri-containerd:<id>"
		seg = seg[i+1:]
	}
	id := strings.TrimSuffix(seg, ".scope")
	if strings.HasPrefix(id, "crio-conmon-") {
		return "", fmt.Errorf("%q is CRI-O's container monitor (conmon), not a container", seg)
	}
	for _, p := range []string{"cri-containerd-", "crio-", "docker-", "containerd-"} {
		id = strings.TrimPrefix(id, p)
	}
	if !isContainerID(id) {
		return "", fmt.Errorf("%q does not name a container (want 64 hex digits, optionally as <runtime>-<id>.scope)", seg)
	}
	return id, nil
}

// isUID reports whether s is a Kubernetes UID as the kubelet writes it: 8-4-4-4-12 lowercase hex.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case (c < '0' || c > '9') && (c < 'a' || c > 'f'):
			return false
		}
	}
	return true
}

func isContainerID(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}
