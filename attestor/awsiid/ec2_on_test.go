//go:build awsec2

package awsiid_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/signet-id/signet/attestor/awsiid"
	"github.com/signet-id/signet/selector"
)

// ec2API answers DescribeInstances and GetInstanceProfile in the EC2 and IAM Query APIs' XML, for one
// instance in the given state.
type ec2API struct {
	mu      sync.Mutex
	state   string
	actions []string
}

func (e *ec2API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.actions = append(e.actions, r.Form.Get("Action"))
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	switch {
	case r.Form.Get("Action") == "DescribeInstances" && r.Form.Get("InstanceId.1") != instanceID:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID '%s' does not exist</Message></Error></Errors><RequestID>3b8a1f0e-0000-4000-8000-000000000001</RequestID></Response>`, r.Form.Get("InstanceId.1"))
	case r.Form.Get("Action") == "DescribeInstances":
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>3b8a1f0e-0000-4000-8000-000000000002</requestId>
  <reservationSet>
    <item>
      <reservationId>r-0123456789abcdef0</reservationId>
      <ownerId>%s</ownerId>
      <groupSet/>
      <instancesSet>
        <item>
          <instanceId>%s</instanceId>
          <imageId>ami-0abcdef1234567890</imageId>
          <instanceState><code>16</code><name>%s</name></instanceState>
          <instanceType>m5.large</instanceType>
          <placement><availabilityZone>us-east-1a</availabilityZone><tenancy>default</tenancy></placement>
          <iamInstanceProfile>
            <arn>arn:aws:iam::%[1]s:instance-profile/apps/web</arn>
            <id>AIPAEXAMPLEPROFILE0001</id>
          </iamInstanceProfile>
          <groupSet>
            <item><groupId>sg-0123456789abcdef0</groupId><groupName>web</groupName></item>
          </groupSet>
          <tagSet>
            <item><key>Name</key><value>web-1</value></item>
            <item><key>team</key><value>payments</value></item>
          </tagSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
</DescribeInstancesResponse>`, account, instanceID, e.state)
	case r.Form.Get("Action") == "GetInstanceProfile" && r.Form.Get("InstanceProfileName") == "web":
		fmt.Fprintf(w, `<GetInstanceProfileResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
  <GetInstanceProfileResult>
    <InstanceProfile>
      <InstanceProfileId>AIPAEXAMPLEPROFILE0001</InstanceProfileId>
      <Roles>
        <member>
          <Path>/</Path>
          <RoleName>web</RoleName>
          <RoleId>AROAEXAMPLEROLE000001</RoleId>
          <Arn>arn:aws:iam::%[1]s:role/web</Arn>
          <CreateDate>2024-01-02T03:04:05Z</CreateDate>
        </member>
      </Roles>
      <InstanceProfileName>web</InstanceProfileName>
      <Path>/apps/</Path>
      <Arn>arn:aws:iam::%[1]s:instance-profile/apps/web</Arn>
      <CreateDate>2024-01-02T03:04:05Z</CreateDate>
    </InstanceProfile>
  </GetInstanceProfileResult>
  <ResponseMetadata><RequestId>3b8a1f0e-0000-4000-8000-000000000003</RequestId></ResponseMetadata>
</GetInstanceProfileResponse>`, account)
	default:
		http.Error(w, "unexpected request", http.StatusBadRequest)
	}
}

func ec2Fixture(t *testing.T, state string) (*fixture, *ec2API) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "signet-test-secret")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	api := &ec2API{state: state}
	s := httptest.NewServer(api)
	t.Cleanup(s.Close)
	return newFixture(t, func(c *awsiid.Config) { c.EC2 = &awsiid.EC2Config{Endpoint: s.URL, IAMEndpoint: s.URL} }), api
}

func TestEC2RunningInstanceAddsSelectors(t *testing.T) {
	f, api := ec2Fixture(t, "running")
	doc := validDoc().JSON(t)
	att, err := f.att.Attest(context.Background(), readIMDS(t, doc, f.signer.Sign(t, doc)), now)
	if err != nil {
		t.Fatal(err)
	}
	got := selector.Strings(att.Selectors)
	for _, want := range []string{"aws_iid:tag:Name:web-1", "aws_iid:tag:team:payments", "aws_iid:sg:id:sg-0123456789abcdef0",
		"aws_iid:sg:name:web", "aws_iid:iamrole:arn:aws:iam::111122223333:role/web", "aws_iid:account:111122223333"} {
		if !slices.Contains(got, want) {
			t.Errorf("selectors %v lack %s", got, want)
		}
	}
	typ := awsiid.SelectorType()
	for _, s := range att.Selectors {
		if err := typ.Validate(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if !slices.Equal(api.actions, []string{"DescribeInstances", "GetInstanceProfile"}) {
		t.Fatalf("API calls = %v", api.actions)
	}
}

func TestEC2StoppedOrUnknownInstanceRefused(t *testing.T) {
	f, api := ec2Fixture(t, "stopped")
	doc := validDoc().JSON(t)
	p := readIMDS(t, doc, f.signer.Sign(t, doc))
	_, err := f.att.Attest(context.Background(), p, now)
	if !errors.Is(err, awsiid.ErrRefused) || !errors.Is(err, awsiid.ErrInstanceNotRunning) {
		t.Fatalf("stopped instance: err = %v, want ErrInstanceNotRunning", err)
	}
	// The refusal did not use up the instance's first attestation.
	api.mu.Lock()
	api.state = "running"
	api.mu.Unlock()
	if _, err := f.att.Attest(context.Background(), p, now); err != nil {
		t.Fatalf("once running: %v", err)
	}

	d := validDoc()
	d.InstanceID = "i-0fedcba9876543210"
	unknown := d.JSON(t)
	_, err = f.att.Attest(context.Background(), readIMDS(t, unknown, f.signer.Sign(t, unknown)), now)
	if !errors.Is(err, awsiid.ErrInstanceNotRunning) {
		t.Fatalf("unknown instance: err = %v, want ErrInstanceNotRunning", err)
	}
}
