//go:build !linux

package unix

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/signet-id/signet/selector"
)

// supported reports that this attestor reads the Linux proc file system and works nowhere else.
func supported() error {
	return fmt.Errorf("%s: %w: unsupported on this OS (%s); the unix workload attestor needs Linux",
		errPrefix, errors.ErrUnsupported, runtime.GOOS)
}

func (a *Attestor) attest(context.Context, int32, uint64) ([]selector.Selector, error) {
	return nil, supported()
}
