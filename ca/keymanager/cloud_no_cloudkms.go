//go:build !cloudkms

package keymanager

import (
	"context"

	"go.step.sm/crypto/kms/apiv1"
)

// openGoogleCloudKMS is nil: this build has no cloudkms (build with -tags cloudkms).
var openGoogleCloudKMS func(context.Context, apiv1.Options) (apiv1.KeyManager, error)
