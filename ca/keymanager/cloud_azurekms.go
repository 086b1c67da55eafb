//go:build azurekms

package keymanager

import (
	"context"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/azurekms"
)

// openAzureKMS opens azurekms (built with -tags azurekms).
var openAzureKMS = func(ctx context.Context, opts apiv1.Options) (apiv1.KeyManager, error) {
	return azurekms.New(ctx, opts)
}
