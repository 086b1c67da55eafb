package awsiid

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Document is the part of an instance identity document the attestor uses. AWS documents the
// fields at https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-identity-documents.html.
type Document struct {
	AccountID        string    `json:"accountId"`
	Region           string    `json:"region"`
	AvailabilityZone string    `json:"availabilityZone"`
	InstanceID       string    `json:"instanceId"`
	ImageID          string    `json:"imageId"`
	InstanceType     string    `json:"instanceType"`
	Architecture     string    `json:"architecture"`
	PrivateIP        string    `json:"privateIp"`
	Version          string    `json:"version"`
	PendingTime      time.Time `json:"pendingTime"`
}

var (
	accountRE      = regexp.MustCompile(`^[0-9]{12}$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	zoneRE         = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	instanceIDRE   = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	imageIDRE      = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z0-9-]{1,32}\.[a-z0-9-]{1,32}$`)
)

// parseDocument parses the signed bytes of a document and checks the fields the attestor names things
// by (they become selectors and the agent ID's path).
func parseDocument(b []byte) (Document, error) {
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return Document{}, fmt.Errorf("not an instance identity document: %w", err)
	}
	checks := []struct {
		field, value string
		re           *regexp.Regexp
		want         string
	}{
		{"accountId", d.AccountID, accountRE, "12 digits"},
		{"region", d.Region, regionRE, "a region name such as us-east-1"},
		{"availabilityZone", d.AvailabilityZone, zoneRE, "a zone name such as us-east-1a"},
		{"instanceId", d.InstanceID, instanceIDRE, "i- and 8 or 17 hex digits"},
		{"imageId", d.ImageID, imageIDRE, "ami- and 8 to 17 hex digits"},
		{"instanceType", d.InstanceType, instanceTypeRE, "an instance type such as m5.large"},
	}
	for _, c := range checks {
		if !c.re.MatchString(c.value) {
			return Document{}, fmt.Errorf("%s %q: want %s", c.field, c.value, c.want)
		}
	}
	if !strings.HasPrefix(d.AvailabilityZone, d.Region) {
		return Document{}, fmt.Errorf("availabilityZone %q: not in region %s", d.AvailabilityZone, d.Region)
	}
	if d.PendingTime.IsZero() {
		return Document{}, fmt.Errorf("pendingTime: missing")
	}
	return d, nil
}
