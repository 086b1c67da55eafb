//go:build !azurekms

package keymanager

import (
	"context"

	"go.step.sm/crypto/kms/apiv1"
)

// openAzureKMS is nil: this build has no azurekms (build with -tags azurekms).
var openAzureKMS func(context.Context, apiv1.Options) (apiv1.KeyManager, error)
