//go:build !awsec2

package awsiid_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/attestor/awsiid"
)

func TestEC2ChecksNeedTheBuildTag(t *testing.T) {
	cfg := awsiid.Config{TrustDomain: td, Accounts: []string{account}, Instances: awsiid.NewMemoryInstanceLog(0),
		EC2: &awsiid.EC2Config{}}
	if _, err := awsiid.New(cfg); err == nil || !strings.Contains(err.Error(), "-tags awsec2") || awsiid.EC2Built {
		t.Fatalf("New with ec2 in a build without it: %v", err)
	}
}
