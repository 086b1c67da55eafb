//go:build !awskms

package keymanager

import (
	"context"

	"go.step.sm/crypto/kms/apiv1"
)

// openAWSKMS is nil: this build has no awskms (build with -tags awskms).
var openAWSKMS func(context.Context, apiv1.Options) (apiv1.KeyManager, error)
