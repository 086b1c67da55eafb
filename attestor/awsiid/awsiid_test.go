package awsiid_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attestor/awsiid"
	"github.com/signet-id/signet/attestor/awsiid/awsiidtest"
	"github.com/signet-id/signet/attestor/awsiid/payload"
	"github.com/signet-id/signet/attestor/nodeattest"
	"github.com/signet-id/signet/selector"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	account    = "111122223333"
	instanceID = "i-0123456789abcdef0"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	now = time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
)

// fixture is an attestor trusting a locally generated signer for us-east-1.
type fixture struct {
	signer *awsiidtest.Signer
	att    *awsiid.Attestor
}

func newFixture(t *testing.T, edit func(*awsiid.Config)) *fixture {
	t.Helper()
	s := awsiidtest.NewSigner(t)
	cfg := awsiid.Config{TrustDomain: td, Accounts: []string{account}, Instances: awsiid.NewMemoryInstanceLog(0),
		ExtraCertificates: map[string][]*x509.Certificate{"us-east-1": {s.Cert}}}
	if edit != nil {
		edit(&cfg)
	}
	a, err := awsiid.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{signer: s, att: a}
}

// readIMDS serves doc signed by s from a local IMDS and reads the payload as an agent does.
func readIMDS(t *testing.T, doc []byte, sig string) []byte {
	t.Helper()
	return awsiidtest.NewIMDS(t, doc, sig).Read(t)
}

func encode(t *testing.T, p payload.Payload) []byte {
	t.Helper()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validDoc() awsiidtest.Doc {
	return awsiidtest.NewDoc(account, instanceID, now.Add(-10*time.Minute))
}

func TestAttestValidDocument(t *testing.T) {
	f := newFixture(t, nil)
	doc := validDoc().JSON(t)
	att, err := f.att.Attest(context.Background(), readIMDS(t, doc, f.signer.Sign(t, doc)), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://example.org/signet/agent/aws_iid/111122223333/us-east-1/i-0123456789abcdef0"; att.AgentID.String() != want {
		t.Fatalf("agent ID = %s, want %s", att.AgentID, want)
	}
	want := []string{"aws_iid:account:111122223333", "aws_iid:az:us-east-1a", "aws_iid:image_id:ami-0abcdef1234567890",
		"aws_iid:instance_id:i-0123456789abcdef0", "aws_iid:instance_type:m5.large", "aws_iid:region:us-east-1"}
	if got := selector.Strings(att.Selectors); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("selectors = %v, want %v", got, want)
	}
	typ := awsiid.SelectorType()
	for _, s := range att.Selectors {
		if err := typ.Validate(s); err != nil {
			t.Errorf("the attestor's own selector %s is invalid: %v", s, err)
		}
	}
	if att.InstanceKey != "111122223333/us-east-1/i-0123456789abcdef0" || att.Reattestable || att.Document.InstanceType != "m5.large" ||
		att.Owner != awsiid.DefaultOwner || !strings.Contains(att.Reason, "instance i-0123456789abcdef0 (ami-0abcdef1234567890, m5.large)") {
		t.Fatalf("attestation = %+v", att)
	}
	if f.att.Type() != "aws_iid" {
		t.Fatalf("Type() = %q", f.att.Type())
	}
}

func TestAttestRefusesWithTheCheckNamed(t *testing.T) {
	doc := validDoc().JSON(t)
	other := awsiidtest.NewSigner(t)
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, f *fixture) []byte
		check error
		named bool // the document verified: the refusal names the instance
	}{
		{"tampered document", func(t *testing.T, f *fixture) []byte {
			d := validDoc()
			d.InstanceType = "x2idn.metal"
			return encode(t, payload.Payload{Document: string(d.JSON(t)), RSA2048: f.signer.Sign(t, doc)})
		}, awsiid.ErrNotSignedBytes, false},
		{"signature over other bytes than those inside", func(t *testing.T, f *fixture) []byte {
			d := validDoc()
			d.AccountID = "999988887777"
			return encode(t, payload.Payload{RSA2048: f.signer.SignOther(t, doc, d.JSON(t))})
		}, awsiid.ErrSignature, false},
		{"wrong signature (a key posing as the trusted certificate)", func(t *testing.T, f *fixture) []byte {
			return encode(t, payload.Payload{Document: string(doc), RSA2048: awsiidtest.Impostor(t, f.signer).Sign(t, doc)})
		}, awsiid.ErrSignature, false},
		{"untrusted signer", func(t *testing.T, f *fixture) []byte {
			return readIMDS(t, doc, other.Sign(t, doc))
		}, awsiid.ErrUntrustedSigner, false},
		{"signer of another region", func(t *testing.T, f *fixture) []byte {
			d := validDoc()
			d.Region, d.AvailabilityZone = "eu-west-1", "eu-west-1b"
			return readIMDS(t, d.JSON(t), f.signer.Sign(t, d.JSON(t)))
		}, awsiid.ErrUntrustedSigner, true},
		{"old document", func(t *testing.T, f *fixture) []byte {
			d := awsiidtest.NewDoc(account, instanceID, now.Add(-awsiid.DefaultMaxDocumentAge-time.Minute))
			return readIMDS(t, d.JSON(t), f.signer.Sign(t, d.JSON(t)))
		}, awsiid.ErrDocumentTooOld, true},
		{"document from the future", func(t *testing.T, f *fixture) []byte {
			d := awsiidtest.NewDoc(account, instanceID, now.Add(time.Hour))
			return readIMDS(t, d.JSON(t), f.signer.Sign(t, d.JSON(t)))
		}, awsiid.ErrDocumentTooOld, true},
		{"account not allowed", func(t *testing.T, f *fixture) []byte {
			d := awsiidtest.NewDoc("444455556666", instanceID, now.Add(-time.Minute))
			return readIMDS(t, d.JSON(t), f.signer.Sign(t, d.JSON(t)))
		}, awsiid.ErrAccountNotAllowed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			att, err := f.att.Attest(context.Background(), tc.build(t, f), now)
			if !errors.Is(err, awsiid.ErrRefused) || !errors.Is(err, tc.check) {
				t.Fatalf("err = %v, want ErrRefused and %v", err, tc.check)
			}
			if tc.named != (att.InstanceKey != "") || !att.AgentID.IsZero() || att.Selectors != nil {
				t.Fatalf("refused attestation = %+v: want the instance named only for a verified document, no agent ID or selectors", att)
			}
			// The refusal cost the instance nothing: its valid document still attests it once.
			if _, err := f.att.Attest(context.Background(), readIMDS(t, doc, f.signer.Sign(t, doc)), now); err != nil {
				t.Fatalf("the valid document after a refusal: %v", err)
			}
		})
	}
}

func TestAttestRefusesReplayedInstance(t *testing.T) {
	f := newFixture(t, nil)
	doc := validDoc().JSON(t)
	p := readIMDS(t, doc, f.signer.Sign(t, doc))
	if _, err := f.att.Attest(context.Background(), p, now); err != nil {
		t.Fatal(err)
	}
	_, err := f.att.Attest(context.Background(), p, now.Add(time.Minute))
	if !errors.Is(err, awsiid.ErrRefused) || !errors.Is(err, awsiid.ErrInstanceReplayed) || !strings.Contains(err.Error(), "allow_reattestation") {
		t.Fatalf("replay: err = %v, want ErrInstanceReplayed naming allow_reattestation", err)
	}

	// Concurrent first attestations of one instance: exactly one wins.
	f = newFixture(t, nil)
	p = readIMDS(t, doc, f.signer.Sign(t, doc))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := f.att.Attest(context.Background(), p, now)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, awsiid.ErrInstanceReplayed):
			t.Fatal(err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent attestations of one instance succeeded, want 1", ok)
	}
}

func TestAttestReattestationAllowed(t *testing.T) {
	f := newFixture(t, func(c *awsiid.Config) { c.AllowReattestation, c.Instances = true, nil })
	doc := validDoc().JSON(t)
	p := readIMDS(t, doc, f.signer.Sign(t, doc))
	for i := range 2 {
		att, err := f.att.Attest(context.Background(), p, now)
		if err != nil || !att.Reattestable {
			t.Fatalf("attestation %d: %+v, %v", i, att, err)
		}
	}
}

func TestAttestMalformed(t *testing.T) {
	f := newFixture(t, nil)
	doc := validDoc().JSON(t)
	for name, p := range map[string][]byte{
		"not json":         []byte("garbage"),
		"not base64":       encode(t, payload.Payload{RSA2048: "!!!"}),
		"not pkcs7":        encode(t, payload.Payload{RSA2048: "c2lnbmF0dXJl"}),
		"detached":         encode(t, payload.Payload{RSA2048: f.signer.SignDetached(t, doc)}),
		"unknown field":    []byte(`{"rsa2048":"c2ln","document":"{}","accountId":"111122223333"}`),
		"signed, not json": nil,
	} {
		if p == nil {
			continue
		}
		_, err := f.att.Attest(context.Background(), p, now)
		if !errors.Is(err, awsiid.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// Signed by a trusted key but not a document: refused (and so audited), not malformed.
	_, err := f.att.Attest(context.Background(), encode(t, payload.Payload{RSA2048: f.signer.Sign(t, []byte(`{"accountId":"1"}`))}), now)
	if !errors.Is(err, awsiid.ErrRefused) || !strings.Contains(err.Error(), "accountId") {
		t.Fatalf("signed non-document: err = %v", err)
	}
	// SHA-1 (the /pkcs7 form's digest) is refused.
	_, err = f.att.Attest(context.Background(), encode(t, payload.Payload{RSA2048: f.signer.SignSHA1(t, doc)}), now)
	if !errors.Is(err, awsiid.ErrSignature) || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("SHA-1 signature: err = %v", err)
	}
}

func TestAgentIDTemplate(t *testing.T) {
	f := newFixture(t, func(c *awsiid.Config) {
		c.AgentIDTemplate = "/signet/agent/ec2/{region}/{az}/{instance_type}/{image_id}/{instance_id}"
	})
	doc := validDoc().JSON(t)
	att, err := f.att.Attest(context.Background(), readIMDS(t, doc, f.signer.Sign(t, doc)), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://example.org/signet/agent/ec2/us-east-1/us-east-1a/m5.large/ami-0abcdef1234567890/i-0123456789abcdef0"; att.AgentID.String() != want {
		t.Fatalf("agent ID = %s, want %s", att.AgentID, want)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		edit func(*awsiid.Config)
		want string
	}{
		{func(c *awsiid.Config) { c.TrustDomain = spiffeid.TrustDomain{} }, "trust_domain"},
		{func(c *awsiid.Config) { c.Accounts = nil }, "accounts"},
		{func(c *awsiid.Config) { c.Accounts = []string{"12345"} }, "accounts"},
		{func(c *awsiid.Config) { c.MaxDocumentAge = time.Second }, "max_document_age"},
		{func(c *awsiid.Config) { c.MaxDocumentAge = 400 * 24 * time.Hour }, "max_document_age"},
		{func(c *awsiid.Config) { c.AgentIDTemplate = "/agents/{instance_id}" }, "agent_id_template"},
		{func(c *awsiid.Config) { c.AgentIDTemplate = "/signet/agent/aws/{account}" }, "must contain {instance_id}"},
		{func(c *awsiid.Config) { c.AgentIDTemplate = "/signet/agent/{instance_id}/{hostname}" }, "unknown placeholder {hostname}"},
		{func(c *awsiid.Config) { c.AgentIDTemplate = "/signet/agent//{instance_id}" }, "agent_id_template"},
		{func(c *awsiid.Config) {
			c.ExtraCertificates = map[string][]*x509.Certificate{"Mars 1": {awsiidtest.NewSigner(t).Cert}}
		}, "certificates: region"},
	} {
		cfg := awsiid.Config{TrustDomain: td, Accounts: []string{account}, Instances: awsiid.NewMemoryInstanceLog(0)}
		tc.edit(&cfg)
		if _, err := awsiid.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New = %v, want an error naming %s", err, tc.want)
		}
	}
}

// shipped is the list of regions whose AWS certificate is built in (docs/aws.md lists the others).
var shipped = []string{
	"af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
	"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ca-central-1", "eu-central-1",
	"eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3",
	"me-central-1", "me-south-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
}

func TestEmbeddedCertificatesCoverTheShippedRegions(t *testing.T) {
	if got := awsiid.EmbeddedRegions(); strings.Join(got, ",") != strings.Join(shipped, ",") {
		t.Fatalf("embedded regions = %v, want %v", got, shipped)
	}
	certs, err := awsiid.EmbeddedCertificates()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, region := range shipped {
		cs := certs[region]
		if len(cs) != 1 {
			t.Fatalf("%s: %d certificates, want 1", region, len(cs))
		}
		c := cs[0]
		if c.PublicKeyAlgorithm != x509.RSA || c.Subject.Organization[0] != "Amazon Web Services LLC" {
			t.Errorf("%s: %s key, subject %s: not an AWS RSA certificate", region, c.PublicKeyAlgorithm, c.Subject)
		}
		if n := c.PublicKey.(interface{ Size() int }).Size(); n != 256 {
			t.Errorf("%s: %d-bit key, want RSA-2048", region, n*8)
		}
		if !c.NotAfter.After(time.Date(2190, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: expires %s", region, c.NotAfter)
		}
		key := fmt.Sprint(c.SerialNumber)
		if r, dup := seen[key]; dup {
			t.Errorf("%s and %s share serial %s", region, r, key)
		}
		seen[key] = region
	}
}

func TestMemoryInstanceLogIsBounded(t *testing.T) {
	l := awsiid.NewMemoryInstanceLog(1)
	if first, err := l.Claim(context.Background(), "a", now); !first || err != nil {
		t.Fatalf("first claim: %v %v", first, err)
	}
	if first, err := l.Claim(context.Background(), "a", now); first || err != nil {
		t.Fatalf("second claim: %v %v", first, err)
	}
	if _, err := l.Claim(context.Background(), "b", now); err == nil || !strings.Contains(err.Error(), "full") {
		t.Fatalf("claim beyond the bound: %v", err)
	}
}

func TestDocumentShapeMatchesIMDS(t *testing.T) {
	// The fields the attestor reads are those of the metadata service's JSON.
	var m map[string]any
	if err := json.Unmarshal(validDoc().JSON(t), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accountId", "region", "availabilityZone", "instanceId", "imageId", "instanceType", "pendingTime"} {
		if _, ok := m[k]; !ok {
			t.Errorf("document lacks %s", k)
		}
	}
}

// Behind the server's seam: an accepted document becomes a first-use attestation of the instance's
// agent ID with its selectors; each refusal keeps its text and its check's sentinel, and maps onto
// nodeattest's error that decides the answer (malformed: logged; refused: audited).
func TestNodeMapsOntoTheSeam(t *testing.T) {
	f := newFixture(t, func(c *awsiid.Config) { c.Instances = nil })
	node := awsiid.Node{Attestor: f.att}
	doc := validDoc().JSON(t)
	att, err := node.Attest(context.Background(), readIMDS(t, doc, f.signer.Sign(t, doc)), now)
	if err != nil {
		t.Fatal(err)
	}
	wantID := "spiffe://example.org/signet/agent/aws_iid/" + account + "/us-east-1/" + instanceID
	if att.AgentID.String() != wantID || !att.FirstUseOnly || att.Reattestable || att.Owner != awsiid.DefaultOwner ||
		att.Subject != "aws_iid/"+account+"/us-east-1/"+instanceID || !strings.Contains(att.Reason, instanceID) {
		t.Fatalf("attestation = %+v", att)
	}
	if !slices.ContainsFunc(att.Selectors, func(s selector.Selector) bool { return s.String() == "aws_iid:account:"+account }) {
		t.Fatalf("selectors %v lack aws_iid:account:%s", att.Selectors, account)
	}
	// The same instance again: the attestor itself does not refuse it (the store does).
	if again, err := node.Attest(context.Background(), readIMDS(t, doc, f.signer.Sign(t, doc)), now); err != nil || !again.FirstUseOnly {
		t.Fatalf("second attestation behind the seam = %+v, %v; want FirstUseOnly, decided by the store", again, err)
	}

	other := awsiidtest.NewDoc("999988887777", instanceID, now.Add(-time.Minute)).JSON(t)
	_, err = node.Attest(context.Background(), readIMDS(t, other, f.signer.Sign(t, other)), now)
	if !errors.Is(err, nodeattest.ErrRefused) || !errors.Is(err, awsiid.ErrAccountNotAllowed) || !strings.HasPrefix(err.Error(), "aws_iid: instance 999988887777/") {
		t.Fatalf("account not allowed: %v; want nodeattest.ErrRefused with the attestor's text", err)
	}
	if _, err := node.Attest(context.Background(), []byte("{"), now); !errors.Is(err, nodeattest.ErrMalformed) || errors.Is(err, nodeattest.ErrRefused) {
		t.Fatalf("garbage: %v; want nodeattest.ErrMalformed", err)
	}

	reattest := newFixture(t, func(c *awsiid.Config) { c.Instances, c.AllowReattestation = nil, true })
	doc = validDoc().JSON(t)
	att, err = awsiid.Node{Attestor: reattest.att}.Attest(context.Background(), readIMDS(t, doc, reattest.signer.Sign(t, doc)), now)
	if err != nil || att.FirstUseOnly || !att.Reattestable {
		t.Fatalf("with allow_reattestation: %+v, %v; want Reattestable, not FirstUseOnly", att, err)
	}
}
