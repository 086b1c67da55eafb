// Package credential answers "what is this credential?" for bytes someone pasted: an X.509-SVID
// (PEM, DER or base64 DER, alone or with its chain) or a JWT-SVID (compact serialization, with or
// without its signature, bare or as a "Bearer" value or "Authorization:" header line). It reads
// what the credential says about itself — above all the ID under which Signet's issuance ledger
// records it — and verifies nothing: expired certificates, tokens with the signature stripped and
// tokens with "alg":"none" are all identified.
//
//	c, err := credential.Parse(pasted)
//	switch {
//	case errors.Is(err, credential.ErrUnrecognized):
//		return fmt.Errorf("not a certificate or JWT")
//	case err != nil:
//		return err // ErrEmpty, ErrTooLarge, or ErrMalformed naming the unreadable part
//	}
//	fmt.Printf("%s %s for %s, expires %s\n", c.Kind, c.ID, c.SPIFFEID, c.NotAfter)
//	// then look up c.ID in the ledger: the X.509 serial (lowercase hex, as
//	// cert.SerialNumber.Text(16)) or the JWT's jti claim.
//
// For a certificate chain the leaf is described (the first certificate that is not a CA) and
// Credential.Chain counts the certificates. PEM blocks other than CERTIFICATE (private keys, for
// instance) are skipped unread.
//
// Nothing returned is trustworthy: a forged credential parses as well as a genuine one. Use the
// result to find the ledger record, never to authenticate. Error messages never contain key
// material or the token; they name the sentinel error (ErrEmpty, ErrTooLarge, ErrUnrecognized,
// ErrMalformed) and, for ErrMalformed, the part that could not be read.
package credential
