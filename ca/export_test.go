package ca

// WithCreateCertificate returns a copy of c that signs X.509-SVIDs through x509.CreateCertificate
// even when its root key would allow the hand-encoded path. Test and benchmark use only.
func WithCreateCertificate(c *CA) *CA {
	slow := *c
	slow.x509TBS = nil
	return &slow
}

// UsesX509TBSPath reports whether c signs X.509-SVIDs with the hand-encoded path.
func UsesX509TBSPath(c *CA) bool { return c.x509TBS != nil }
