package main

import (
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/signet-id/signet/attestor/awsiid"
	awspayload "github.com/signet-id/signet/attestor/awsiid/payload"
	"github.com/signet-id/signet/server/adminapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// awsIIDServerFile is the server's node_attestors.aws_iid (awsiid.Config).
type awsIIDServerFile struct {
	Accounts           []string          `yaml:"accounts"`
	MaxDocumentAge     time.Duration     `yaml:"max_document_age"`
	AllowReattestation bool              `yaml:"allow_reattestation"`
	Certificates       map[string]string `yaml:"certificates"`
	Owner              string            `yaml:"owner"`
	AgentIDTemplate    string            `yaml:"agent_id_template"`
	EC2                *struct {
		Endpoint    string        `yaml:"endpoint"`
		IAMEndpoint string        `yaml:"iam_endpoint"`
		Timeout     time.Duration `yaml:"timeout"`
	} `yaml:"ec2"`
}

// build validates the section and builds the attestor; errors name the key. Trust on first use is
// decided by the replicated store (no instance log: awsiid.Node marks the attestation first-use only).
func (f *awsIIDServerFile) build(path string, td spiffeid.TrustDomain) (awsiid.Node, error) {
	const key = "node_attestors.aws_iid"
	if len(f.Accounts) == 0 {
		return awsiid.Node{}, configError(path, key+".accounts", "is required: the AWS account IDs whose instances may attest (without an allow-list any AWS customer's instance could)")
	}
	if f.Owner != "" {
		if err := adminapi.ValidateOwnerName(f.Owner); err != nil {
			return awsiid.Node{}, configError(path, key+".owner", "%v", err)
		}
	}
	if len(f.Certificates) > awsiid.MaxExtraCertificates {
		return awsiid.Node{}, configError(path, key+".certificates", "%d regions, at most %d", len(f.Certificates), awsiid.MaxExtraCertificates)
	}
	extra := map[string][]*x509.Certificate{}
	for _, region := range slices.Sorted(maps.Keys(f.Certificates)) {
		file := f.Certificates[region]
		ckey := fmt.Sprintf("%s.certificates.%s", key, region)
		if err := requireAbs(path, ckey, file); err != nil {
			return awsiid.Node{}, err
		}
		certs, err := readPEMCerts(file, "the region's RSA-2048 certificate from AWS's documentation, see docs/aws.md")
		if err != nil {
			return awsiid.Node{}, configError(path, ckey, "%v", err)
		}
		extra[region] = certs
	}
	cfg := awsiid.Config{TrustDomain: td, Accounts: f.Accounts, MaxDocumentAge: f.MaxDocumentAge, AllowReattestation: f.AllowReattestation,
		ExtraCertificates: extra, Owner: f.Owner, AgentIDTemplate: f.AgentIDTemplate}
	if f.EC2 != nil {
		cfg.EC2 = &awsiid.EC2Config{Endpoint: f.EC2.Endpoint, IAMEndpoint: f.EC2.IAMEndpoint, Timeout: f.EC2.Timeout}
	}
	a, err := awsiid.New(cfg)
	if err != nil {
		// The library's errors name the key under aws_iid ("aws_iid: accounts: …").
		return awsiid.Node{}, configError(path, "node_attestors", "%v", err)
	}
	return awsiid.Node{Attestor: a}, nil
}

// awsIIDAgentFile is the agent's node_attestor.aws_iid (awspayload.Config).
type awsIIDAgentFile struct {
	IMDSEndpoint string        `yaml:"imds_endpoint"`
	IMDSv1       bool          `yaml:"imds_v1"`
	IMDSTimeout  time.Duration `yaml:"imds_timeout"`
	IMDSTokenTTL time.Duration `yaml:"imds_token_ttl"`
}

// client validates the section and builds the metadata client; errors name the key.
func (f *awsIIDAgentFile) client(path string) (*awspayload.Client, error) {
	c, err := awspayload.New(awspayload.Config{Endpoint: f.IMDSEndpoint, AllowIMDSv1: f.IMDSv1, Timeout: f.IMDSTimeout, TokenTTL: f.IMDSTokenTTL})
	if err != nil {
		// The library's errors name the key under aws_iid ("aws_iid: imds_endpoint …").
		return nil, configError(path, "node_attestor", "%v", err)
	}
	return c, nil
}
