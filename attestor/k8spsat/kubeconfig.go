package k8spsat

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/signet-id/signet/internal/fsutil"
	"go.yaml.in/yaml/v3"
	"k8s.io/client-go/rest"
)

// maxKubeconfigSize bounds a kubeconfig file.
const maxKubeconfigSize = 1 << 20

// kubeconfig is the part of a kubeconfig file LoadKubeconfig reads.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Clusters       []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			TLSServerName            string `yaml:"tls-server-name"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			Token                 string `yaml:"token"`
			TokenFile             string `yaml:"tokenFile"`
			ClientCertificate     string `yaml:"client-certificate"`
			ClientCertificateData string `yaml:"client-certificate-data"`
			ClientKey             string `yaml:"client-key"`
			ClientKeyData         string `yaml:"client-key-data"`
			Exec                  any    `yaml:"exec"`
			AuthProvider          any    `yaml:"auth-provider"`
		} `yaml:"user"`
	} `yaml:"users"`
	Contexts []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
}

// LoadKubeconfig reads the current context of a kubeconfig file: its cluster's server and CA, and its
// user's bearer token (token, tokenFile) or client certificate (files or data). Exec plugins and auth
// providers are not supported (Signet does not link the client's plugin machinery): the error says so.
// Relative file paths are relative to the kubeconfig's directory, as kubectl reads them.
func LoadKubeconfig(path string) (*rest.Config, error) {
	b, err := fsutil.ReadFileMax(path, maxKubeconfigSize)
	if err != nil {
		return nil, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("%s: not a kubeconfig: %w", path, err)
	}
	if kc.CurrentContext == "" {
		return nil, fmt.Errorf("%s: no current-context", path)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for _, c := range kc.Contexts {
		if c.Name != kc.CurrentContext {
			continue
		}
		cfg := &rest.Config{}
		found := false
		for _, cl := range kc.Clusters {
			if cl.Name == c.Context.Cluster {
				found = true
				cfg.Host, cfg.TLSClientConfig.CAFile, cfg.TLSClientConfig.ServerName = cl.Cluster.Server, rel(cl.Cluster.CertificateAuthority), cl.Cluster.TLSServerName
				if cfg.TLSClientConfig.CAData, err = decodeData(cl.Cluster.CertificateAuthorityData); err != nil {
					return nil, fmt.Errorf("%s: cluster %q: certificate-authority-data: %w", path, cl.Name, err)
				}
			}
		}
		if !found || cfg.Host == "" {
			return nil, fmt.Errorf("%s: context %q: cluster %q not found or without server", path, c.Name, c.Context.Cluster)
		}
		for _, u := range kc.Users {
			if u.Name != c.Context.User {
				continue
			}
			if u.User.Exec != nil || u.User.AuthProvider != nil {
				return nil, fmt.Errorf("%s: user %q: exec and auth-provider credentials are not supported; use a token, tokenFile or a client certificate", path, u.Name)
			}
			cfg.BearerToken, cfg.BearerTokenFile = u.User.Token, rel(u.User.TokenFile)
			cfg.TLSClientConfig.CertFile, cfg.TLSClientConfig.KeyFile = rel(u.User.ClientCertificate), rel(u.User.ClientKey)
			if cfg.TLSClientConfig.CertData, err = decodeData(u.User.ClientCertificateData); err != nil {
				return nil, fmt.Errorf("%s: user %q: client-certificate-data: %w", path, u.Name, err)
			}
			if cfg.TLSClientConfig.KeyData, err = decodeData(u.User.ClientKeyData); err != nil {
				return nil, fmt.Errorf("%s: user %q: client-key-data: %w", path, u.Name, err)
			}
			return cfg, nil
		}
		return nil, fmt.Errorf("%s: context %q: user %q not found", path, c.Name, c.Context.User)
	}
	return nil, fmt.Errorf("%s: current-context %q not found", path, kc.CurrentContext)
}

func decodeData(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	return b, nil
}
