// Package awsiid is the server side of the aws_iid node attestor: it attests an EC2 instance from its
// instance identity document, signed by AWS, as the agent read it from the instance metadata service
// (package payload, the agent side).
//
// The checks, in order, each refusal wrapping ErrRefused (or ErrMalformed) and the sentinel of its check:
//
//   - signature: the payload's PKCS#7 (the /rsa2048 form: SHA-256, RSA-2048) has one signer, whose
//     certificate is one of the trusted ones (AWS's per-region certificates, built in, plus
//     Config.ExtraCertificates), and the signature verifies with that certificate: ErrUntrustedSigner,
//     ErrSignature. The document is then parsed from the signed content of the PKCS#7 and from nowhere
//     else: the document the agent sends beside it must be those bytes (ErrNotSignedBytes), and is
//     never parsed.
//
//   - region: the document's region is one the signer's certificate is trusted for (ErrUntrustedSigner).
//
//   - account: the document's account is in Config.Accounts (ErrAccountNotAllowed).
//
//   - age: the document's pendingTime (when the instance last started; the document has no other time)
//     is at most Config.MaxDocumentAge ago (ErrDocumentTooOld).
//
//   - EC2 API (optional, build tag awsec2): the instance is running (ErrInstanceNotRunning); its tags,
//     security groups and instance profile's roles become selectors. See EC2Config.
//
//   - trust on first use: unless Config.AllowReattestation, the instance's first attestation is the only
//     one. The server decides it in its replicated store (Node marks the attestation FirstUseOnly); with
//     Config.Instances set, the attestor asks that log instead (ErrInstanceReplayed).
//
//     a, err := awsiid.New(awsiid.Config{TrustDomain: td, Accounts: []string{"123456789012"}, Instances: log})
//     att, err := a.Attest(ctx, payloadBytes, time.Now())  // att.AgentID, att.Selectors
package awsiid

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/attestor/awsiid/payload"
	"github.com/signet-id/signet/selector"
	"github.com/smallstep/pkcs7"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Type names the aws_iid node attestation.
const Type = payload.Type

// Defaults and bounds of Config.
const (
	// DefaultMaxDocumentAge: an instance attests within a day of (re)starting. A document keeps its
	// pendingTime while the instance runs, so this also bounds how long a copied document of an
	// instance that never attested stays usable.
	DefaultMaxDocumentAge = 24 * time.Hour
	MinMaxDocumentAge     = time.Minute
	MaxMaxDocumentAge     = 366 * 24 * time.Hour
	// ClockSkew is how far in the future a pendingTime may lie (the server's clock behind AWS's).
	ClockSkew = 5 * time.Minute
	// DefaultAgentIDTemplate is the agent ID's path; see Config.AgentIDTemplate.
	DefaultAgentIDTemplate = "/signet/agent/aws_iid/{account}/{region}/{instance_id}"
	// DefaultOwner owns the agent SVIDs' ledger records when Config.Owner names none (the system owner).
	DefaultOwner = "signet"
	// MaxAccounts bounds the account allow-list; MaxExtraCertificates the configured certificates.
	MaxAccounts          = 1000
	MaxExtraCertificates = 100
)

// agentPathPrefix is where agent IDs live (issuer.AgentPathPrefix).
const agentPathPrefix = "/signet/agent/"

// Errors of an attestation. Each refusal wraps ErrRefused or ErrMalformed and the sentinel of the check
// that refused.
var (
	// ErrMalformed: the payload is not a signed instance identity document at all.
	ErrMalformed = errors.New("malformed aws_iid attestation")
	// ErrRefused: a well-formed document that does not attest this node.
	ErrRefused = errors.New("aws_iid attestation refused")

	// ErrUntrustedSigner: the signer's certificate is not trusted, or not for the document's region.
	ErrUntrustedSigner = errors.New("signer: not a trusted AWS certificate for the document's region")
	// ErrSignature: the signature does not verify with the signer's certificate.
	ErrSignature = errors.New("signature: does not verify")
	// ErrNotSignedBytes: the document sent is not the document the signature covers.
	ErrNotSignedBytes = errors.New("document: not the bytes the signature covers")
	// ErrAccountNotAllowed: the document's account is not in the allow-list.
	ErrAccountNotAllowed = errors.New("account: not allowed")
	// ErrDocumentTooOld: the instance started longer ago than the maximum document age (or in the future).
	ErrDocumentTooOld = errors.New("age: document too old")
	// ErrInstanceReplayed: the instance attested before and re-attestation is not allowed.
	ErrInstanceReplayed = errors.New("trust on first use: instance already attested")
)

// InstanceLog records which instances have attested: the trust-on-first-use check. Claim records key
// and reports whether this is its first claim; of concurrent claims of one key exactly one is first.
// The check is only as strong as the log: it must be shared by every server that attests and survive
// restarts, which is why in a cluster it belongs to the replicated store, in the command that registers
// the agent (see docs/aws.md). MemoryInstanceLog is the log of a single process.
type InstanceLog interface {
	Claim(ctx context.Context, key string, now time.Time) (first bool, err error)
}

// Config configures the attestor.
type Config struct {
	// TrustDomain is the agents' trust domain. Required.
	TrustDomain spiffeid.TrustDomain
	// Accounts are the AWS account IDs whose instances may attest. Required (at most MaxAccounts).
	Accounts []string
	// MaxDocumentAge: a document whose pendingTime is longer ago is refused (default
	// DefaultMaxDocumentAge; MinMaxDocumentAge to MaxMaxDocumentAge).
	MaxDocumentAge time.Duration
	// AllowReattestation lets an instance attest again (a new agent SVID for the same agent ID, e.g.
	// after its SVID expired). Off: trust on first use.
	AllowReattestation bool
	// Instances records first attestations (see InstanceLog). Nil leaves trust on first use to the
	// caller: the attestation says Reattestable false, and the server (Node) registers the agent with
	// a command the replicated store refuses for an agent ID already registered.
	Instances InstanceLog
	// ExtraCertificates are more trusted signing certificates by region (GovCloud, China, a region newer
	// than the built-in list; tests), added to the built-in ones.
	ExtraCertificates map[string][]*x509.Certificate
	// Owner owns the agent SVIDs' ledger records (default DefaultOwner; cmd/signet checks the name).
	Owner string
	// AgentIDTemplate is the agent ID's path: placeholders {account}, {region}, {az}, {instance_id},
	// {image_id}, {instance_type}; it must begin with /signet/agent/ and contain {instance_id}, so that
	// an agent ID names one instance (default DefaultAgentIDTemplate).
	AgentIDTemplate string
	// EC2, when set, confirms through the EC2 API that the instance is running and adds selectors from
	// it (see EC2Config); only in a build with the awsec2 tag.
	EC2 *EC2Config
	// Logger receives debug messages; default: discarded.
	Logger *slog.Logger
}

// trusted is one trusted signing certificate and the regions it signs for.
type trusted struct {
	cert    *x509.Certificate
	regions []string
}

// Attestor is the server side of aws_iid attestation. It is safe for concurrent use.
type Attestor struct {
	td        spiffeid.TrustDomain
	accounts  map[string]bool
	maxAge    time.Duration
	reattest  bool
	instances InstanceLog
	certs     []trusted
	template  string
	owner     string
	ec2       *ec2Checker
	log       *slog.Logger
}

// Attestation is what the attestor concluded about an instance.
type Attestation struct {
	// Document is the verified document (parsed from the signed bytes).
	Document Document
	// AgentID is the agent's SPIFFE ID, from Config.AgentIDTemplate.
	AgentID spiffeid.ID
	// Selectors are the node's aws_iid selectors (see SelectorType).
	Selectors []selector.Selector
	// InstanceKey names the instance for the trust-on-first-use check: account/region/instance ID.
	InstanceKey string
	// Reattestable is Config.AllowReattestation: the node may attest again with a new document read.
	Reattestable bool
	// Owner owns the agent SVID's ledger record (Config.Owner).
	Owner string
	// Reason says what attested the node, for the audit record.
	Reason string
}

// New checks cfg (errors name the configuration key) and returns an attestor.
func New(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, fmt.Errorf("%s: trust_domain: required", Type)
	}
	if len(cfg.Accounts) == 0 || len(cfg.Accounts) > MaxAccounts {
		return nil, fmt.Errorf("%s: accounts: want 1 to %d AWS account IDs (without an allow-list any AWS customer's instance could attest)", Type, MaxAccounts)
	}
	accounts := make(map[string]bool, len(cfg.Accounts))
	for _, a := range cfg.Accounts {
		if !accountRE.MatchString(a) {
			return nil, fmt.Errorf("%s: accounts: %q: want a 12-digit AWS account ID", Type, a)
		}
		accounts[a] = true
	}
	maxAge := cmp.Or(cfg.MaxDocumentAge, DefaultMaxDocumentAge)
	if maxAge < MinMaxDocumentAge || maxAge > MaxMaxDocumentAge {
		return nil, fmt.Errorf("%s: max_document_age %s: want %s to %s", Type, maxAge, MinMaxDocumentAge, MaxMaxDocumentAge)
	}
	tmpl := cmp.Or(cfg.AgentIDTemplate, DefaultAgentIDTemplate)
	if err := checkTemplate(cfg.TrustDomain, tmpl); err != nil {
		return nil, fmt.Errorf("%s: agent_id_template %q: %w", Type, tmpl, err)
	}
	certs, err := trustedCertificates(cfg.ExtraCertificates)
	if err != nil {
		return nil, err
	}
	var ec2 *ec2Checker
	if cfg.EC2 != nil {
		if ec2, err = newEC2Checker(cfg.EC2); err != nil {
			return nil, err
		}
	}
	return &Attestor{td: cfg.TrustDomain, accounts: accounts, maxAge: maxAge, reattest: cfg.AllowReattestation,
		instances: cfg.Instances, certs: certs, template: tmpl, owner: cmp.Or(cfg.Owner, DefaultOwner), ec2: ec2,
		log: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))}, nil
}

// trustedCertificates merges the built-in certificates with extra ones; a certificate trusted for
// several regions is listed once with all of them.
func trustedCertificates(extra map[string][]*x509.Certificate) ([]trusted, error) {
	byRegion, err := EmbeddedCertificates()
	if err != nil {
		return nil, err
	}
	n := 0
	for region, certs := range extra {
		if !regionRE.MatchString(region) {
			return nil, fmt.Errorf("%s: certificates: region %q: want a region name such as us-gov-west-1", Type, region)
		}
		n += len(certs)
		byRegion[region] = append(slices.Clone(byRegion[region]), certs...)
	}
	if n > MaxExtraCertificates {
		return nil, fmt.Errorf("%s: certificates: %d, more than %d", Type, n, MaxExtraCertificates)
	}
	var out []trusted
	for _, region := range sortedKeys(byRegion) {
		for _, c := range byRegion[region] {
			i := slices.IndexFunc(out, func(t trusted) bool { return t.cert.Equal(c) })
			if i < 0 {
				out = append(out, trusted{cert: c})
				i = len(out) - 1
			}
			out[i].regions = append(out[i].regions, region)
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Type returns "aws_iid".
func (a *Attestor) Type() string { return Type }

// Attest verifies the payload's signed document and attests the instance it names. A refusal wraps
// ErrMalformed or ErrRefused and the sentinel of the check (see the package documentation).
func (a *Attestor) Attest(ctx context.Context, raw []byte, now time.Time) (Attestation, error) {
	p, err := payload.Decode(raw)
	if err != nil {
		return Attestation{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	signed, signer, err := a.verify(p.RSA2048)
	if err != nil {
		return Attestation{}, err
	}
	// The document is read from the bytes the signature covers; the copy the agent sent must be them.
	if p.Document != "" && !bytes.Equal(bytes.TrimSpace([]byte(p.Document)), bytes.TrimSpace(signed)) {
		return Attestation{}, fmt.Errorf("%s: %w: %w", Type, ErrRefused, ErrNotSignedBytes)
	}
	doc, err := parseDocument(signed)
	if err != nil {
		// Signed by a trusted key, yet not a document: refused (audited), not malformed.
		return Attestation{}, fmt.Errorf("%s: signed document: %w: %w", Type, ErrRefused, err)
	}
	key := doc.AccountID + "/" + doc.Region + "/" + doc.InstanceID
	// From here a refusal returns the instance's key and document too: they name the object of the
	// refusal's audit record. The agent ID and selectors are set only on success.
	out := Attestation{Document: doc, InstanceKey: key, Owner: a.owner, Reattestable: a.reattest}
	refuse := func(check error, format string, args ...any) error {
		return fmt.Errorf("%s: instance %s: %w: %w: "+format, append([]any{Type, key, ErrRefused, check}, args...)...)
	}
	if !slices.Contains(signer.regions, doc.Region) {
		return out, refuse(ErrUntrustedSigner, "the document says region %s, its signer's certificate (serial %s) is trusted for %s",
			doc.Region, signer.cert.SerialNumber, strings.Join(signer.regions, ", "))
	}
	if !a.accounts[doc.AccountID] {
		return out, refuse(ErrAccountNotAllowed, "account %s is not in accounts", doc.AccountID)
	}
	if age := now.Sub(doc.PendingTime); age > a.maxAge {
		return out, refuse(ErrDocumentTooOld, "the instance started at %s, %s ago; max_document_age is %s (restart the instance, or raise max_document_age)",
			doc.PendingTime.UTC().Format(time.RFC3339), age.Round(time.Second), a.maxAge)
	} else if -age > ClockSkew {
		return out, refuse(ErrDocumentTooOld, "pendingTime %s is in the future (check the server's clock)", doc.PendingTime.UTC().Format(time.RFC3339))
	}
	agentID, err := a.agentID(doc)
	if err != nil {
		return out, fmt.Errorf("%s: instance %s: %w: agent ID: %w", Type, key, ErrRefused, err)
	}
	sels := Selectors(doc)
	if a.ec2 != nil {
		more, err := a.ec2.check(ctx, doc)
		switch {
		case errors.Is(err, ErrInstanceNotRunning):
			return out, fmt.Errorf("%s: instance %s: %w: %w", Type, key, ErrRefused, err)
		case err != nil:
			return out, fmt.Errorf("%s: instance %s: %w", Type, key, err)
		}
		sels = selector.Normalize(append(sels, more...))
	}
	if !a.reattest && a.instances != nil {
		first, err := a.instances.Claim(ctx, key, now)
		if err != nil {
			return out, fmt.Errorf("%s: instance %s: trust on first use: %w", Type, key, err)
		}
		if !first {
			return out, refuse(ErrInstanceReplayed, "an instance attests once (set allow_reattestation to let instances attest again)")
		}
	}
	a.log.Debug("instance attested", "instance", key, "agent", agentID)
	out.AgentID, out.Selectors = agentID, sels
	out.Reason = fmt.Sprintf("%s: account %s, region %s, instance %s (%s, %s), started %s", Type, doc.AccountID, doc.Region,
		doc.InstanceID, doc.ImageID, doc.InstanceType, doc.PendingTime.UTC().Format(time.RFC3339))
	return out, nil
}

// verify checks the PKCS#7 signature and returns the signed content and the trusted signer.
func (a *Attestor) verify(b64 string) ([]byte, trusted, error) {
	malformed := func(format string, args ...any) error {
		return fmt.Errorf("%s: rsa2048: %w: "+format, append([]any{Type, ErrMalformed}, args...)...)
	}
	der, err := decodeBase64(b64)
	if err != nil {
		return nil, trusted{}, malformed("not base64: %w", err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, trusted{}, malformed("not a PKCS#7 signed document: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, trusted{}, malformed("%d signers, want 1", len(p7.Signers))
	}
	if len(p7.Content) == 0 {
		return nil, trusted{}, malformed("no signed content (a detached signature): the document must be inside the signature")
	}
	if alg := p7.Signers[0].DigestAlgorithm.Algorithm; !alg.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
		return nil, trusted{}, fmt.Errorf("%s: %w: %w: digest algorithm %s, want SHA-256 (the /rsa2048 signature)", Type, ErrRefused, ErrSignature, alg)
	}
	// Only a trusted certificate is offered to the verifier: certificates the PKCS#7 carries itself are
	// dropped, so one cannot pose as the signer by naming an AWS certificate's issuer and serial.
	for _, t := range a.certs {
		p7.Certificates = []*x509.Certificate{t.cert}
		if p7.GetOnlySigner() == nil {
			continue
		}
		if err := p7.Verify(); err != nil {
			return nil, trusted{}, fmt.Errorf("%s: %w: %w: %w", Type, ErrRefused, ErrSignature, err)
		}
		return p7.Content, t, nil
	}
	return nil, trusted{}, fmt.Errorf("%s: %w: %w: no trusted certificate is the signer's (a region missing from the built-in list is configured with certificates)", Type, ErrRefused, ErrUntrustedSigner)
}

// decodeBase64 decodes standard base64 as the metadata service serves it, wrapped over lines.
func decodeBase64(s string) ([]byte, error) {
	var sb strings.Builder
	for _, r := range s {
		if r != '\n' && r != '\r' && r != ' ' && r != '\t' {
			sb.WriteRune(r)
		}
	}
	return base64Std.DecodeString(sb.String())
}

var placeholderRE = regexp.MustCompile(`\{[^}]*\}`)

// placeholders are the template's names and the document field each stands for.
var placeholders = map[string]func(Document) string{
	"{account}":       func(d Document) string { return d.AccountID },
	"{region}":        func(d Document) string { return d.Region },
	"{az}":            func(d Document) string { return d.AvailabilityZone },
	"{instance_id}":   func(d Document) string { return d.InstanceID },
	"{image_id}":      func(d Document) string { return d.ImageID },
	"{instance_type}": func(d Document) string { return d.InstanceType },
}

// checkTemplate validates an agent ID template by rendering it for a sample document.
func checkTemplate(td spiffeid.TrustDomain, tmpl string) error {
	if !strings.HasPrefix(tmpl, agentPathPrefix) {
		return fmt.Errorf("must begin with %s", agentPathPrefix)
	}
	if !strings.Contains(tmpl, "{instance_id}") {
		return errors.New("must contain {instance_id}: an agent ID names one instance")
	}
	for _, p := range placeholderRE.FindAllString(tmpl, -1) {
		if placeholders[p] == nil {
			return fmt.Errorf("unknown placeholder %s (known: {account}, {region}, {az}, {instance_id}, {image_id}, {instance_type})", p)
		}
	}
	sample := Document{AccountID: "123456789012", Region: "us-east-1", AvailabilityZone: "us-east-1a",
		InstanceID: "i-0123456789abcdef0", ImageID: "ami-0123456789abcdef0", InstanceType: "m5.large"}
	_, err := spiffeid.FromPath(td, render(tmpl, sample))
	return err
}

func render(tmpl string, d Document) string {
	return placeholderRE.ReplaceAllStringFunc(tmpl, func(p string) string { return placeholders[p](d) })
}

func (a *Attestor) agentID(d Document) (spiffeid.ID, error) {
	return spiffeid.FromPath(a.td, render(a.template, d))
}
