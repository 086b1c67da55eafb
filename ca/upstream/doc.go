// Package upstream gets a Signet node's CA certificate signed by an existing PKI (an upstream
// authority), so that the node's CA is an intermediate instead of a self-signed root. Each kind
// implements ca.Upstream:
//
//   - Disk: a CA certificate and its private key in files (upstream_authority: disk).
//   - StepCA: a smallstep step-ca authority through its JWK provisioner (upstream_authority: step-ca),
//     in builds with the stepca tag only.
//
// The node's certificate is asked for when a key slot is created (ca.LoadOrCreate with
// KeyStoreConfig.Upstream); nothing is written before the upstream has signed it. Errors name the
// configuration key at fault, for example upstream_authority.disk.cert_file.
package upstream
