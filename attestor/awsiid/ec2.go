package awsiid

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// EC2 API checks: optional, and only in a build with the awsec2 tag (they link aws-sdk-go-v2's EC2 and
// IAM clients). With them the server confirms through DescribeInstances that the instance exists and
// is running, and adds selectors from it: aws_iid:tag:<key>:<value>, aws_iid:iamrole:<role ARN> (the
// roles of its instance profile, through IAM GetInstanceProfile), aws_iid:sg:id:<group ID> and
// aws_iid:sg:name:<group name>.

// DefaultEC2Timeout bounds the API calls of one attestation.
const DefaultEC2Timeout = 10 * time.Second

// maxEC2Selectors bounds the selectors the API adds (AWS allows 50 tags and a few groups per instance).
const maxEC2Selectors = 200

// EC2Config configures the EC2 API checks. Credentials come from the SDK's default chain (environment,
// shared configuration, the server's own instance role); the region is the document's.
type EC2Config struct {
	// Endpoint overrides the EC2 API endpoint (a VPC endpoint; tests). Default: the region's.
	Endpoint string
	// IAMEndpoint overrides the IAM API endpoint. Default: IAM's.
	IAMEndpoint string
	// Timeout bounds the calls of one attestation (default DefaultEC2Timeout, at most a minute).
	Timeout time.Duration
}

var (
	// ErrInstanceNotRunning: the EC2 API does not know the instance, or it is not running.
	ErrInstanceNotRunning = errors.New("ec2: instance not running")
	// ErrUnavailable: the EC2 or IAM API did not answer; the agent retries.
	ErrUnavailable = errors.New("aws_iid: AWS API unavailable")
)

func (c *EC2Config) check() error {
	for key, v := range map[string]string{"ec2.endpoint": c.Endpoint, "ec2.iam_endpoint": c.IAMEndpoint} {
		if v != "" && !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
			return fmt.Errorf("%s: %s %q: want an http(s) URL", Type, key, v)
		}
	}
	if c.Timeout < 0 || c.Timeout > time.Minute {
		return fmt.Errorf("%s: ec2.timeout %s: want more than 0 and at most 1m", Type, c.Timeout)
	}
	return nil
}

var (
	tagValueRE  = regexp.MustCompile(`^[^:]{1,128}:.{0,256}$`)
	roleARNRE   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)
	sgValueRE   = regexp.MustCompile(`^(id:sg-[0-9a-f]{8,17}|name:.{1,255})$`)
	ec2KeyCheck = map[string]*regexp.Regexp{"tag": tagValueRE, "iamrole": roleARNRE, "sg": sgValueRE}
)
