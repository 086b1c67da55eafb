package credential_test

import (
	"errors"
	"testing"

	"github.com/signet-id/signet/credential"
)

// FuzzParse checks that Parse never panics, that every error wraps exactly one sentinel, and that
// no error message contains more than 16 consecutive bytes of the input. A plain `go test` runs
// only the seed corpus (the TestParse inputs plus testdata/fuzz/FuzzParse, if any); fuzz with
//
//	go test -run '^$' -fuzz=FuzzParse -fuzztime=20s ./credential
func FuzzParse(f *testing.F) {
	for _, tc := range cases(f) {
		if len(tc.input) <= 64<<10 { // the MaxInput-sized cases would only slow the fuzzer down
			f.Add(tc.input)
		}
	}
	f.Add([]byte("Bearer "))
	f.Add([]byte("authorization:"))
	f.Add([]byte("eyJ."))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0x00, 0x04, 0x30, 0x02, 0x02, 0x00})

	sentinels := []error{credential.ErrEmpty, credential.ErrTooLarge, credential.ErrUnrecognized, credential.ErrMalformed}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := credential.Parse(data)
		if err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %q wraps %d sentinels, want 1", err, n)
			}
			if w := echoed(data, err.Error()); w != "" {
				t.Fatalf("error %q contains %d+ bytes of the input: %q", err, maxEcho+1, w)
			}
			return
		}
		switch c.Kind {
		case credential.KindX509:
			if c.Leaf == nil || c.Chain < 1 {
				t.Fatalf("X.509 credential without leaf or chain: %+v", c)
			}
		case credential.KindJWT:
			if c.Leaf != nil || c.Chain != 0 {
				t.Fatalf("JWT credential with X.509 fields: %+v", c)
			}
		default:
			t.Fatalf("no error and Kind %q", c.Kind)
		}
	})
}
