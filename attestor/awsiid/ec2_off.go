//go:build !awsec2

package awsiid

import (
	"context"
	"fmt"

	"github.com/signet-id/signet/selector"
)

// EC2Built says whether this build has the EC2 API checks (the awsec2 build tag).
const EC2Built = false

type ec2Checker struct{}

func newEC2Checker(*EC2Config) (*ec2Checker, error) {
	return nil, fmt.Errorf("%s: ec2: this signet was built without the EC2 API checks; build it with -tags awsec2, or remove the ec2 section", Type)
}

func (*ec2Checker) check(context.Context, Document) ([]selector.Selector, error) { return nil, nil }
