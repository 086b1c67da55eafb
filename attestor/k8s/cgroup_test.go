package k8s

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fixturePodUID      = "2c48913c-b29f-11e7-9350-020968147796"
	fixtureContainerID = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
)

// TestParseCgroup reads /proc/<pid>/cgroup files as each runtime (containerd, CRI-O, Docker) and
// cgroup driver (cgroupfs, systemd) writes them, on cgroup v1 and v2; each fixture in
// testdata/cgroup is named after its case.
func TestParseCgroup(t *testing.T) {
	inPod := []string{
		"v1-cgroupfs-docker-burstable",
		"v1-cgroupfs-containerd-guaranteed",
		"v1-cgroupfs-crio-besteffort",
		"v1-systemd-docker-burstable",
		"v1-systemd-crio-guaranteed",
		"v1-kind-nested-cgroupfs",
		"v2-systemd-containerd-besteffort",
		"v2-systemd-crio-burstable",
		"v2-cgroupfs-containerd-burstable",
		"v2-kind-nested-containerd",
	}
	notInPod := []string{"v2-host-user-session", "v1-host-systemd-service", "v2-plain-docker-container", "v2-root"}
	refused := map[string]string{
		"v2-systemd-pod-sandbox-level": "in pod " + fixturePodUID + " but in none of its containers",
		"v2-systemd-crio-conmon":       "CRI-O's container monitor (conmon), not a container",
		"v1-two-pods":                  "cgroup names more than one pod or container",
		"v2-container-id-not-hex":      `"not-a-container" does not name a container`,
		"no-colons":                    "want hierarchy-ID:controllers:path",
	}
	seen := map[string]bool{}
	for _, name := range inPod {
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			ref, found, err := parseCgroup(fixture(t, name))
			if err != nil || !found {
				t.Fatalf("parseCgroup: found %v, %v", found, err)
			}
			if ref.podUID != fixturePodUID || ref.containerID != fixtureContainerID {
				t.Fatalf("parseCgroup: pod %q container %q, want %s and %s", ref.podUID, ref.containerID, fixturePodUID, fixtureContainerID)
			}
		})
	}
	for _, name := range notInPod {
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			if ref, found, err := parseCgroup(fixture(t, name)); err != nil || found {
				t.Fatalf("parseCgroup: %+v found %v, %v; want not found and no error", ref, found, err)
			}
		})
	}
	for name, want := range refused {
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			_, found, err := parseCgroup(fixture(t, name))
			if err == nil || found || !strings.Contains(err.Error(), want) {
				t.Fatalf("parseCgroup: found %v, %v; want an error saying %q", found, err, want)
			}
			if name == "v1-two-pods" && !errors.Is(err, errAmbiguous) {
				t.Fatalf("parseCgroup: %v, want errAmbiguous", err)
			}
		})
	}
	// Every fixture is one of the cases above.
	all, err := filepath.Glob(filepath.Join("testdata", "cgroup", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if !seen[filepath.Base(f)] {
			t.Errorf("fixture %s is in no case of this test", f)
		}
	}
}

// TestParseCgroupOfThisProcess: the test's own cgroup (on a CI runner or a container) parses without
// error.
func TestParseCgroupOfThisProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseCgroup(b); err != nil {
		t.Fatalf("parseCgroup(/proc/self/cgroup = %q): %v", b, err)
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cgroup", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
