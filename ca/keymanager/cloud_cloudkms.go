//go:build cloudkms

package keymanager

import (
	"context"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/cloudkms"
)

// openGoogleCloudKMS opens cloudkms (built with -tags cloudkms).
var openGoogleCloudKMS = func(ctx context.Context, opts apiv1.Options) (apiv1.KeyManager, error) {
	return cloudkms.New(ctx, opts)
}
