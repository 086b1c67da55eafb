package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca/keymanager"
	"github.com/signet-id/signet/internal/p11list"
	"github.com/signet-id/signet/internal/testkit"
)

// This test binary, run with tokenKeysEnv set to a token's label (and SOFTHSM2_CONF and tokenPINEnv),
// prints the labels of the token's private keys (runTokenKeys): a process of its own, since SoftHSM2 reads
// its configuration once per process and parallel tests cannot set the environment.
const (
	tokenKeysEnv = "SIGNET_TEST_TOKEN_KEYS"
	tokenPINEnv  = "SIGNET_TEST_TOKEN_PIN"
)

func runTokenKeys() int {
	objs, err := p11list.Objects(testkit.SoftHSMModule, os.Getenv(tokenKeysEnv), os.Getenv(tokenPINEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, label := range p11list.Labels(objs) {
		fmt.Println(label)
	}
	return 0
}

// tokenKeys lists the labels of the private keys in token of the SoftHSM2 configured by conf, through the
// module, sorted.
func tokenKeys(t *testing.T, conf, token, pin string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf, tokenKeysEnv+"="+token, tokenPINEnv+"="+pin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("list the keys of token %s: %v\n%s", token, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// slotKeyLabels returns the labels (pkcs11 object) of the two keys that dir/kms-keys.json names.
func slotKeyLabels(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, keymanager.SlotKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	var names map[string]string
	if err := json.Unmarshal(b, &names); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range []string{"x509_key", "jwt_key"} {
		_, label, ok := strings.Cut(names[k], "object=")
		if !ok {
			t.Fatalf("%s: %s %q has no object", dir, k, names[k])
		}
		out = append(out, label)
	}
	return out
}

// TestServerPKCS11KeysRotate runs a real server whose CA keys live in a SoftHSM2 token for two minutes
// (ca.ttl 2m: rotations at 1m and 1m45s, the first key pruned at 2m, SVIDs of 15s), with an agent and a
// workload in this process checking every half second (rotationWatch.check): no refusal and no failed
// verification across two rotations and a pruning; every live slot's keys are in the token under names
// of their own (listed through the module), no private key is ever in the data dir, and the pruned
// slot's keys are gone from the token as from the workload's bundles.
func TestServerPKCS11KeysRotate(t *testing.T) {
	t.Parallel() // waits on the keys' wall-clock schedule: overlap it with the rest of the suite
	conf, err := testkit.WriteSoftHSMConf(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const token, pin = "signet-rotate", "2345-signet"
	testkit.NewSoftHSMToken(t, conf, token, pin)
	pinFile := filepath.Join(t.TempDir(), "hsm.pin")
	writeFile(t, pinFile, pin+"\n")
	s := newTestServer(t).withCAKeys(t, `  key_manager: pkcs11
  kms_uri: "pkcs11:module-path=`+testkit.SoftHSMModule+`;token=`+token+`?pin-source=`+pinFile+`"
  ttl: 2m
`)
	s.env = []string{"SOFTHSM2_CONF=" + conf}
	s.start(t)
	s.mustCLI("owner", "add", "alice")
	a := s.newAgent(t, "").start(t, s.token("alice"))
	s.mustCLI("entry", "create", "--spiffe-id", "spiffe://example.org/hsm", "--selector", myUID, "--owner", "alice",
		"--purpose", "hsm", "--parent-id", a.id, "--x509-ttl", "15s", "--jwt-ttl", "15s")
	waitForIDs(t, a.socket, "spiffe://example.org/hsm")

	caDir := filepath.Join(s.dir, "data", "ca")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	w := newRotationWatch(t, ctx, a.socket)
	labels := map[string][]string{} // slot -> its keys' labels, read while it was live
	pruned := w.untilPruned(t, ctx, s.stderr, func(i int, pruned *caKeyView) {
		if i%10 != 0 {
			return
		}
		// Every slot live before and after the listing has its keys in the token; a slot pruned
		// before it has none.
		before := liveSlots(s.statusKeys(), pruned)
		got := tokenKeys(t, conf, token, pin)
		for _, slot := range liveSlots(s.statusKeys(), nil) {
			if labels[slot] == nil {
				labels[slot] = slotKeyLabels(t, filepath.Join(caDir, "slot-"+slot))
			}
			for _, l := range labels[slot] {
				if slices.Contains(before, slot) && !slices.Contains(got, l) {
					t.Fatalf("live slot %s's key %s is not in the token (%q)", slot, l, got)
				}
			}
		}
		for _, l := range labels[pruned.Slot] {
			if slices.Contains(got, l) {
				t.Fatalf("pruned slot %s's key %s is still in the token (%q)", pruned.Slot, l, got)
			}
		}
	})
	if labels[pruned.Slot] == nil {
		t.Fatalf("slot %s was pruned before the test saw its key names", pruned.Slot)
	}
	got := tokenKeys(t, conf, token, pin)
	for _, l := range labels[pruned.Slot] {
		if slices.Contains(got, l) {
			t.Fatalf("the pruned slot %s's key %s is still in the token (%q)", pruned.Slot, l, got)
		}
	}
	if len(labels) < 3 {
		t.Fatalf("saw the keys of %d slots, want at least 3 (two rotations)", len(labels))
	}
	testkit.NoPrivateKeyFiles(t, caDir)
}

// statusKeys is 'signet ca status': the node's key slots.
func (s *testServer) statusKeys() []caKeyView {
	return decodeJSON[caStatusView](s.t, s.mustCLI("ca", "status", "-o", "json")).Keys
}

// liveSlots returns the slots of keys not pruned; the first pruned one goes to *pruned if it is empty.
func liveSlots(keys []caKeyView, pruned *caKeyView) []string {
	var out []string
	for _, k := range keys {
		switch {
		case k.State != "pruned":
			out = append(out, k.Slot)
		case pruned != nil && pruned.X509ID == "":
			*pruned = k
		}
	}
	return out
}
