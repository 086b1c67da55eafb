package main

import (
	"crypto/tls"
	"time"

	"github.com/signet-id/signet/server/oidc"
)

// oidcFileConfig is the server's oidc section: the OIDC discovery provider (server/oidc) and the iss
// claim of JWT-SVIDs (docs/oidc.md).
type oidcFileConfig struct {
	// ListenAddress is where the provider serves (host:port); empty: not served by this server.
	ListenAddress string `yaml:"listen_address"`
	// Issuer is the issuer URL: the iss of every JWT-SVID this server signs, and the provider's base.
	Issuer string `yaml:"issuer"`
	// InsecureHTTP serves plain HTTP (behind a TLS-terminating proxy) instead of tls.
	InsecureHTTP bool `yaml:"insecure_http"`
	// CacheMaxAge is the documents' Cache-Control max-age (oidc.Config.MaxAge).
	CacheMaxAge time.Duration `yaml:"cache_max_age"`
	TLS         struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
	} `yaml:"tls"`
	// setup is the checked section, filled by check.
	setup oidcSetup
}

// oidcSetup is what a server node runs of the oidc section (zero: off).
type oidcSetup struct {
	// Issuer is the iss of JWT-SVIDs; empty with Listen set (dev only): http://<the bound address>.
	Issuer string
	// Listen is the provider's address; empty: no provider on this node. ListenKey names where it
	// was set (a config key or a flag), for errors.
	Listen, ListenKey string
	AllowHTTP         bool
	MaxAge            time.Duration
	// TLS serves HTTPS; nil: plain HTTP.
	TLS *tls.Config
}

// check validates the oidc section (errors name the key) and fills setup; the TLS files are read now,
// so a key others can read or a certificate that does not match it stops the server at start.
func (f *oidcFileConfig) check(path string) error {
	const key = "oidc"
	if f.CacheMaxAge == 0 {
		f.CacheMaxAge = oidc.DefaultMaxAge
	}
	if f.CacheMaxAge < oidc.MinMaxAge || f.CacheMaxAge > oidc.MaxMaxAge {
		return configError(path, key+".cache_max_age", "%s: want between %s and %s (default %s)", f.CacheMaxAge, oidc.MinMaxAge, oidc.MaxMaxAge, oidc.DefaultMaxAge)
	}
	tlsSet := f.TLS.CertFile != "" || f.TLS.KeyFile != ""
	if f.Issuer == "" {
		if f.ListenAddress != "" || f.InsecureHTTP || tlsSet {
			return configError(path, key+".issuer", "is required with the other oidc keys: the https URL relying parties reach the provider at, e.g. https://oidc.example.org")
		}
		return nil
	}
	if _, err := oidc.ParseIssuer(f.Issuer, f.InsecureHTTP); err != nil {
		return configError(path, key+".issuer", "%v", err)
	}
	f.setup = oidcSetup{Issuer: f.Issuer, AllowHTTP: f.InsecureHTTP}
	if f.ListenAddress == "" {
		// JWT-SVIDs carry iss; another server of the cluster serves the documents.
		if tlsSet || f.InsecureHTTP {
			return configError(path, key+".listen_address", "is required to serve the provider (tls and insecure_http configure it); or remove them to only set the iss of JWT-SVIDs")
		}
		return nil
	}
	if err := checkHostPort(path, key+".listen_address", f.ListenAddress, true); err != nil {
		return err
	}
	f.setup.Listen, f.setup.ListenKey, f.setup.MaxAge = f.ListenAddress, key+".listen_address", f.CacheMaxAge
	if f.InsecureHTTP {
		if tlsSet {
			return configError(path, key+".tls", "set together with insecure_http: true; choose one (HTTPS here, or plain HTTP behind a TLS-terminating proxy)")
		}
		return nil
	}
	if f.TLS.CertFile == "" {
		return configError(path, key+".tls.cert_file", "is required to serve HTTPS (a certificate relying parties trust, with its chain), or set insecure_http: true behind a TLS-terminating proxy")
	}
	if err := requireAbs(path, key+".tls.cert_file", f.TLS.CertFile); err != nil {
		return err
	}
	if err := requireAbs(path, key+".tls.key_file", f.TLS.KeyFile); err != nil {
		return err
	}
	cfg, err := oidc.TLSConfig(f.TLS.CertFile, f.TLS.KeyFile)
	if err != nil {
		return configError(path, key+".tls", "%v", err)
	}
	f.setup.TLS = cfg
	return nil
}
