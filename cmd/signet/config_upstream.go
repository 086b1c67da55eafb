package main

import (
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/upstream"
)

// Upstream authority (upstream_authority): an existing PKI signs each node's CA as an intermediate
// (package ca/upstream; docs/configuration.md "Upstream authority").

// upstreamAuthorityFile is the server's upstream_authority section.
type upstreamAuthorityFile struct {
	// Type is disk or step-ca.
	Type string `yaml:"type"`
	Disk *struct {
		CertFile   string `yaml:"cert_file"`
		KeyFile    string `yaml:"key_file"`
		BundleFile string `yaml:"bundle_file"`
	} `yaml:"disk"`
	StepCA *struct {
		URL             string `yaml:"url"`
		Provisioner     string `yaml:"provisioner"`
		PasswordFile    string `yaml:"password_file"`
		RootFingerprint string `yaml:"root_fingerprint"`
		RootFile        string `yaml:"root_file"`
	} `yaml:"step_ca"`
}

// build validates the section and returns the upstream authority (nil without a section). The disk
// upstream's files are read and checked now; the step-ca authority is first contacted when a key needs
// signing.
func (f *upstreamAuthorityFile) build(path string, c *serverFileConfig) (ca.Upstream, error) {
	if f == nil {
		return nil, nil
	}
	const key = "upstream_authority"
	if c.CA.KeyManager != "" && c.CA.KeyManager != "disk" {
		return nil, configError(path, key, "needs ca.key_manager disk (keys in an HSM or KMS do not rotate, and each key slot asks the upstream for its certificate)")
	}
	switch f.Type {
	case "disk":
		if f.StepCA != nil {
			return nil, configError(path, key+".step_ca", "is set but upstream_authority.type is disk: remove it")
		}
		if f.Disk == nil {
			return nil, configError(path, key+".disk", "is required with type disk (cert_file and key_file)")
		}
		for _, kv := range []struct{ k, v string }{{"cert_file", f.Disk.CertFile}, {"key_file", f.Disk.KeyFile}} {
			if err := requireAbs(path, key+".disk."+kv.k, kv.v); err != nil {
				return nil, err
			}
		}
		if f.Disk.BundleFile != "" {
			if err := requireAbs(path, key+".disk.bundle_file", f.Disk.BundleFile); err != nil {
				return nil, err
			}
		}
		up, err := upstream.NewDisk(upstream.DiskConfig{CertFile: f.Disk.CertFile, KeyFile: f.Disk.KeyFile, BundleFile: f.Disk.BundleFile})
		if err != nil {
			return nil, configError(path, key, "%v", err)
		}
		return up, nil
	case "step-ca":
		if f.Disk != nil {
			return nil, configError(path, key+".disk", "is set but upstream_authority.type is step-ca: remove it")
		}
		if f.StepCA == nil {
			return nil, configError(path, key+".step_ca", "is required with type step-ca (url, provisioner, password_file, root_fingerprint or root_file)")
		}
		s := f.StepCA
		for _, kv := range []struct{ k, v string }{{"password_file", s.PasswordFile}, {"root_file", s.RootFile}} {
			if kv.v != "" {
				if err := requireAbs(path, key+".step_ca."+kv.k, kv.v); err != nil {
					return nil, err
				}
			}
		}
		up, err := upstream.NewStepCA(upstream.StepCAConfig{URL: s.URL, Provisioner: s.Provisioner, PasswordFile: s.PasswordFile,
			RootFingerprint: s.RootFingerprint, RootFile: s.RootFile})
		if err != nil {
			return nil, configError(path, key, "%v", err)
		}
		return up, nil
	case "":
		return nil, configError(path, key+".type", "is required: disk or step-ca")
	default:
		return nil, configError(path, key+".type", "%q: want disk or step-ca", f.Type)
	}
}
