package keymanager

import (
	"context"
	"fmt"

	"go.step.sm/crypto/kms/apiv1"
)

// openCloudKMS opens a cloud KMS. Each is compiled in only with its build tag (cloud_*.go), so the
// default build carries none of the cloud SDKs.
func openCloudKMS(ctx context.Context, kind Kind, opts apiv1.Options) (apiv1.KeyManager, error) {
	var open func(context.Context, apiv1.Options) (apiv1.KeyManager, error)
	switch kind {
	case AWSKMS:
		open = openAWSKMS
	case CloudKMS:
		open = openGoogleCloudKMS
	case AzureKMS:
		open = openAzureKMS
	}
	if open == nil {
		return nil, fmt.Errorf("this signet was built without %s; rebuild it with `go build -tags %s ./cmd/signet` (the cloud KMSes are passed through to go.step.sm/crypto/kms and untested here)", kind, kind)
	}
	return open(ctx, opts)
}
