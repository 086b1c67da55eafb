// Package keymanager keeps a Signet CA's private keys in a key manager of go.step.sm/crypto/kms, the
// key-management layer of smallstep's step-ca, instead of ca.LoadOrCreate's own key files:
//
//   - softkms: PEM key files read (and, when missing, created) through the KMS API; the key is
//     in-process, so X.509-SVIDs still take the CA's hand-encoded fast path;
//   - pkcs11: a PKCS#11 module (an HSM; tested with SoftHSM2). The keys are generated in the token,
//     are not extractable, and sign through crypto.Signer; needs cgo;
//   - awskms, cloudkms, azurekms: compiled in only with the build tag of the same name (go build
//     -tags awskms), so the default build carries no cloud SDK. Their keys must exist already.
//     Untested here.
//
// A Manager implements ca.KeyManager for one fixed key pair: pass it as ca.KeyStoreConfig.Keys. For keys
// that rotate (ca/rotation), Manager.SlotKeys gives each slot a pair of its own, named per node and slot
// and recorded in the slot's directory (SlotKeysFile), and Manager.DestroySlot deletes a pruned slot's
// keys; softkms and pkcs11 keys rotate, the cloud KMSes' do not (Rotates). PINs come only from a
// pin-source file that group and others cannot read; they never appear in errors or logs.
package keymanager
