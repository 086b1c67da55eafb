package awsiid

import (
	"fmt"
	"regexp"

	"github.com/signet-id/signet/selector"
)

// SelectorType declares the node selectors this attestor produces, for a server's selector.Registry:
//
//	aws_iid:account:<account ID>        aws_iid:region:<region>
//	aws_iid:az:<availability zone>      aws_iid:instance_id:<instance ID>
//	aws_iid:image_id:<AMI ID>           aws_iid:instance_type:<instance type>
//
// and, from the EC2 API (EC2Config; a build with the awsec2 tag):
//
//	aws_iid:tag:<key>:<value>           aws_iid:iamrole:<role ARN>
//	aws_iid:sg:id:<group ID>            aws_iid:sg:name:<group name>
func SelectorType() selector.Type {
	return selector.Type{Name: Type, Kind: selector.Node, Keys: map[string]selector.ValueCheck{
		"account":       matches(accountRE, "a 12-digit account ID"),
		"region":        matches(regionRE, "a region name such as us-east-1"),
		"az":            matches(zoneRE, "an availability zone such as us-east-1a"),
		"instance_id":   matches(instanceIDRE, "an instance ID such as i-0123456789abcdef0"),
		"image_id":      matches(imageIDRE, "an AMI ID such as ami-0123456789abcdef0"),
		"instance_type": matches(instanceTypeRE, "an instance type such as m5.large"),
		"tag":           matches(tagValueRE, "<tag key>:<tag value>"),
		"iamrole":       matches(roleARNRE, "a role ARN such as arn:aws:iam::123456789012:role/web"),
		"sg":            matches(sgValueRE, "id:<security group ID> or name:<security group name>"),
	}}
}

func matches(re *regexp.Regexp, want string) selector.ValueCheck {
	return func(v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("%q: want %s", v, want)
		}
		return nil
	}
}

// Selectors are the selectors of a verified document.
func Selectors(d Document) []selector.Selector {
	sel := func(key, value string) selector.Selector {
		return selector.Selector{Type: Type, Value: key + ":" + value}
	}
	return selector.Normalize([]selector.Selector{
		sel("account", d.AccountID), sel("region", d.Region), sel("az", d.AvailabilityZone),
		sel("instance_id", d.InstanceID), sel("image_id", d.ImageID), sel("instance_type", d.InstanceType),
	})
}
