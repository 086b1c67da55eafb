//go:build awsec2

package awsiid

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	"github.com/signet-id/signet/selector"
)

// EC2Built says whether this build has the EC2 API checks (the awsec2 build tag).
const EC2Built = true

type ec2Checker struct {
	cfg     EC2Config
	timeout time.Duration
}

func newEC2Checker(cfg *EC2Config) (*ec2Checker, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &ec2Checker{cfg: *cfg, timeout: cmp.Or(cfg.Timeout, DefaultEC2Timeout)}, nil
}

// check asks the EC2 API for the instance in the document's region: it must be running; its tags,
// security groups and instance profile's roles become selectors.
func (c *ec2Checker) check(ctx context.Context, d Document) ([]selector.Selector, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(d.Region))
	if err != nil {
		return nil, fmt.Errorf("%w: ec2: AWS configuration: %w", ErrUnavailable, err)
	}
	client := ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		if c.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.cfg.Endpoint)
		}
	})
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{d.InstanceID}})
	if err != nil {
		if apiErr := smithy.APIError(nil); errors.As(err, &apiErr) && apiErr.ErrorCode() == "InvalidInstanceID.NotFound" {
			return nil, fmt.Errorf("%w: the EC2 API does not know instance %s", ErrInstanceNotRunning, d.InstanceID)
		}
		return nil, fmt.Errorf("%w: ec2: DescribeInstances %s: %w", ErrUnavailable, d.InstanceID, err)
	}
	var inst *ec2types.Instance
	for _, r := range out.Reservations {
		for i := range r.Instances {
			if aws.ToString(r.Instances[i].InstanceId) == d.InstanceID {
				inst = &r.Instances[i]
			}
		}
	}
	switch {
	case inst == nil:
		return nil, fmt.Errorf("%w: the EC2 API does not know instance %s", ErrInstanceNotRunning, d.InstanceID)
	case inst.State == nil || inst.State.Name != ec2types.InstanceStateNameRunning:
		state := "unknown"
		if inst.State != nil {
			state = string(inst.State.Name)
		}
		return nil, fmt.Errorf("%w: instance %s is %s", ErrInstanceNotRunning, d.InstanceID, state)
	}
	var sels []selector.Selector
	add := func(key, value string) {
		if ec2KeyCheck[key].MatchString(value) { // what the selector type would refuse is left out
			sels = append(sels, selector.Selector{Type: Type, Value: key + ":" + value})
		}
	}
	for _, t := range inst.Tags {
		add("tag", aws.ToString(t.Key)+":"+aws.ToString(t.Value))
	}
	for _, g := range inst.SecurityGroups {
		add("sg", "id:"+aws.ToString(g.GroupId))
		add("sg", "name:"+aws.ToString(g.GroupName))
	}
	if inst.IamInstanceProfile != nil {
		roles, err := c.roles(ctx, awsCfg, aws.ToString(inst.IamInstanceProfile.Arn))
		if err != nil {
			return nil, err
		}
		for _, r := range roles {
			add("iamrole", r)
		}
	}
	if len(sels) > maxEC2Selectors {
		return nil, fmt.Errorf("instance %s: %d selectors from the EC2 API, more than %d", d.InstanceID, len(sels), maxEC2Selectors)
	}
	return sels, nil
}

// roles returns the role ARNs of an instance profile (arn:…:instance-profile/<path><name>).
func (c *ec2Checker) roles(ctx context.Context, awsCfg aws.Config, profileARN string) ([]string, error) {
	_, rest, ok := strings.Cut(profileARN, ":instance-profile/")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w: ec2: instance profile ARN %q", ErrUnavailable, profileARN)
	}
	name := rest[strings.LastIndex(rest, "/")+1:]
	client := iam.NewFromConfig(awsCfg, func(o *iam.Options) {
		if c.cfg.IAMEndpoint != "" {
			o.BaseEndpoint = aws.String(c.cfg.IAMEndpoint)
		}
	})
	out, err := client.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	if err != nil {
		return nil, fmt.Errorf("%w: iam: GetInstanceProfile %s: %w", ErrUnavailable, name, err)
	}
	if out.InstanceProfile == nil {
		return nil, fmt.Errorf("%w: iam: GetInstanceProfile %s: no profile in the answer", ErrUnavailable, name)
	}
	var arns []string
	for _, r := range out.InstanceProfile.Roles {
		arns = append(arns, aws.ToString(r.Arn))
	}
	return arns, nil
}
