package ca_test

import (
	"crypto/ecdsa"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
)

func keyStoreConfig(dir string, now time.Time) ca.KeyStoreConfig {
	return ca.KeyStoreConfig{Dir: dir, TrustDomain: td, Clock: fixedClock(now)}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func TestLoadOrCreateCreatesThenLoads(t *testing.T) {
	now := testNow()
	dir := filepath.Join(t.TempDir(), "nested", "ca")
	x1, j1, err := ca.LoadOrCreate(keyStoreConfig(dir, now))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("dir mode %04o, want 0700", got)
	}
	for _, name := range []string{ca.X509KeyFile, ca.X509CertFile, ca.JWTKeyFile, ca.JWTKeyIDFile} {
		if got := mode(t, filepath.Join(dir, name)); got != 0o600 {
			t.Errorf("%s mode %04o, want 0600", name, got)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("dir holds %d entries, want exactly the 4 key files (no temporaries)", len(entries))
	}
	if got := x1.Certificate.NotAfter.Sub(now); got != ca.DefaultCATTL {
		t.Errorf("default root lifetime %s, want %s", got, ca.DefaultCATTL)
	}
	if len(j1.KeyID) != 32 {
		t.Errorf("kid %q has %d characters, want 32", j1.KeyID, len(j1.KeyID))
	}

	x2, j2, err := ca.LoadOrCreate(keyStoreConfig(dir, now.Add(time.Hour)))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if x2.Certificate.SerialNumber.Cmp(x1.Certificate.SerialNumber) != 0 || !x2.Certificate.Equal(x1.Certificate) {
		t.Error("second call returned a different certificate")
	}
	if !x2.Signer.Public().(*ecdsa.PublicKey).Equal(x1.Signer.Public()) {
		t.Error("second call returned a different X.509 key")
	}
	if j2.KeyID != j1.KeyID || !j2.Signer.Public().(*ecdsa.PublicKey).Equal(j1.Signer.Public()) || !j2.NotAfter.Equal(j1.NotAfter) {
		t.Error("second call returned a different JWT authority")
	}
	if _, err := ca.New(ca.Config{TrustDomain: td, X509: x2, JWT: j2}); err != nil {
		t.Errorf("New on loaded authorities: %v", err)
	}
}

func TestLoadOrCreateOptions(t *testing.T) {
	now := testNow()
	subject := pkix.Name{Organization: []string{"Acme"}, CommonName: "node-1 CA"}
	x, _, err := ca.LoadOrCreate(ca.KeyStoreConfig{Dir: t.TempDir(), TrustDomain: td, TTL: 72 * time.Hour, Clock: fixedClock(now), Subject: subject})
	if err != nil {
		t.Fatal(err)
	}
	if x.Certificate.Subject.CommonName != "node-1 CA" || x.Certificate.Subject.Organization[0] != "Acme" {
		t.Errorf("Subject = %q", x.Certificate.Subject)
	}
	if got := x.Certificate.NotAfter.Sub(now); got != 72*time.Hour {
		t.Errorf("root lifetime %s, want 72h", got)
	}

	for _, tt := range []struct {
		name string
		cfg  ca.KeyStoreConfig
		want string
	}{
		{"no dir", ca.KeyStoreConfig{TrustDomain: td}, "Dir is required"},
		{"no trust domain", ca.KeyStoreConfig{Dir: t.TempDir()}, "TrustDomain is required"},
		{"negative TTL", ca.KeyStoreConfig{Dir: t.TempDir(), TrustDomain: td, TTL: -time.Hour}, "TTL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ca.LoadOrCreate(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestLoadOrCreateRefusesBadState(t *testing.T) {
	now := testNow()
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string)
		cfg     func(dir string) ca.KeyStoreConfig
		wantMsg func(dir string) []string
	}{
		{
			name:   "x509 key readable by others",
			tamper: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, ca.X509KeyFile), 0o644) },
			wantMsg: func(dir string) []string {
				p := filepath.Join(dir, ca.X509KeyFile)
				return []string{p, "chmod 600 " + p, "0644"}
			},
		},
		{
			name:    "jwt key readable by group",
			tamper:  func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, ca.JWTKeyFile), 0o640) },
			wantMsg: func(dir string) []string { p := filepath.Join(dir, ca.JWTKeyFile); return []string{"chmod 600 " + p} },
		},
		{
			name: "trust domain mismatch",
			cfg:  func(dir string) ca.KeyStoreConfig { c := keyStoreConfig(dir, now); c.TrustDomain = otherTD; return c },
			wantMsg: func(dir string) []string {
				return []string{filepath.Join(dir, ca.X509CertFile), `"example.org"`, `"other.example"`}
			},
		},
		{
			name: "corrupted certificate",
			tamper: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, ca.X509CertFile), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
			},
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.X509CertFile)} },
		},
		{
			name:    "certificate not PEM",
			tamper:  func(t *testing.T, dir string) { write(t, filepath.Join(dir, ca.X509CertFile), "garbage") },
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.X509CertFile), "PEM"} },
		},
		{
			name: "corrupted key",
			tamper: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, ca.X509KeyFile), "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
			},
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.X509KeyFile), "PKCS#8"} },
		},
		{
			name: "key does not match certificate",
			tamper: func(t *testing.T, dir string) {
				data, err := os.ReadFile(filepath.Join(dir, ca.JWTKeyFile))
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, ca.X509KeyFile), string(data))
			},
			wantMsg: func(dir string) []string { return []string{"does not match", filepath.Join(dir, ca.X509CertFile)} },
		},
		{
			name:    "certificate without key",
			tamper:  func(t *testing.T, dir string) { remove(t, filepath.Join(dir, ca.X509KeyFile)) },
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.X509KeyFile), "missing"} },
		},
		{
			name:    "kid without key",
			tamper:  func(t *testing.T, dir string) { remove(t, filepath.Join(dir, ca.JWTKeyFile)) },
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.JWTKeyFile), "missing"} },
		},
		{
			name:    "bad kid",
			tamper:  func(t *testing.T, dir string) { write(t, filepath.Join(dir, ca.JWTKeyIDFile), "has space\n") },
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.JWTKeyIDFile)} },
		},
		{
			name:    "expired certificate",
			cfg:     func(dir string) ca.KeyStoreConfig { return keyStoreConfig(dir, now.Add(ca.DefaultCATTL+time.Second)) },
			wantMsg: func(dir string) []string { return []string{filepath.Join(dir, ca.X509CertFile), "expired"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := ca.LoadOrCreate(keyStoreConfig(dir, now)); err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				tt.tamper(t, dir)
			}
			cfg := keyStoreConfig(dir, now)
			if tt.cfg != nil {
				cfg = tt.cfg(dir)
			}
			_, _, err := ca.LoadOrCreate(cfg)
			if err == nil {
				t.Fatal("LoadOrCreate succeeded, want error")
			}
			for _, m := range tt.wantMsg(dir) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("error %q lacks the \"ca: \" prefix", err)
			}
			if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error %q leaks file contents", err)
			}
		})
	}
}

func TestLoadOrCreateRecoversInterruptedCreation(t *testing.T) {
	now := testNow()
	dir := t.TempDir()
	x1, j1, err := ca.LoadOrCreate(keyStoreConfig(dir, now))
	if err != nil {
		t.Fatal(err)
	}
	// A crash between writing the key and the certificate (or the kid) leaves only the key.
	remove(t, filepath.Join(dir, ca.X509CertFile))
	remove(t, filepath.Join(dir, ca.JWTKeyIDFile))
	x2, j2, err := ca.LoadOrCreate(keyStoreConfig(dir, now))
	if err != nil {
		t.Fatal(err)
	}
	if !x2.Certificate.PublicKey.(*ecdsa.PublicKey).Equal(x1.Signer.Public()) {
		t.Error("regenerated certificate is not for the existing key")
	}
	if !j2.Signer.Public().(*ecdsa.PublicKey).Equal(j1.Signer.Public()) || j2.KeyID == "" {
		t.Error("JWT key was not kept")
	}
}

func chmod(t *testing.T, path string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
