//go:build awskms

package keymanager

import (
	"context"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/awskms"
)

// openAWSKMS opens awskms (built with -tags awskms).
var openAWSKMS = func(ctx context.Context, opts apiv1.Options) (apiv1.KeyManager, error) {
	return awskms.New(ctx, opts)
}
