// Package p11list is test support only: it lists the objects of a PKCS#11 token through its module
// (github.com/miekg/pkcs11, the binding under step's pkcs11), so a test sees what a token really holds
// rather than what Signet believes it created. It needs cgo.
package p11list

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// Object is one object of a token.
type Object struct {
	Class string // "private key", "public key", "certificate", "secret key", "data" or "other"
	Label string // CKA_LABEL
	ID    []byte // CKA_ID
}

// Objects logs in to the token labelled token of module with the user PIN pin and returns every object
// it holds, sorted by label and class. The module reads its configuration (SOFTHSM2_CONF for SoftHSM2) when
// a process first initialises it. A module this process already uses (step's pkcs11 in the same test) is
// shared: its initialisation and login are left as they are.
func Objects(module, token, pin string) (_ []Object, err error) {
	p := pkcs11.New(module)
	if p == nil {
		return nil, fmt.Errorf("p11list: cannot load module %s", module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			return nil, fmt.Errorf("p11list: initialise %s: %w", module, err)
		}
	} else {
		defer func() { err = errors.Join(err, p.Finalize()) }()
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("p11list: slots: %w", err)
	}
	for _, slot := range slots {
		info, err := p.GetTokenInfo(slot)
		if err != nil {
			return nil, fmt.Errorf("p11list: token of slot %d: %w", slot, err)
		}
		if strings.TrimRight(info.Label, " \x00") == token {
			return objects(p, slot, pin)
		}
	}
	return nil, fmt.Errorf("p11list: no token %q in %s", token, module)
}

func objects(p *pkcs11.Ctx, slot uint, pin string) (_ []Object, err error) {
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return nil, fmt.Errorf("p11list: open session: %w", err)
	}
	defer func() { err = errors.Join(err, p.CloseSession(sh)) }()
	if err := p.Login(sh, pkcs11.CKU_USER, pin); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
			return nil, fmt.Errorf("p11list: log in: %w", err)
		}
	} else {
		defer func() { err = errors.Join(err, p.Logout(sh)) }()
	}
	if err := p.FindObjectsInit(sh, nil); err != nil {
		return nil, fmt.Errorf("p11list: find objects: %w", err)
	}
	var handles []pkcs11.ObjectHandle
	for {
		hs, _, err := p.FindObjects(sh, 100)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("p11list: find objects: %w", err), p.FindObjectsFinal(sh))
		}
		if len(hs) == 0 {
			break
		}
		handles = append(handles, hs...)
	}
	if err := p.FindObjectsFinal(sh); err != nil {
		return nil, fmt.Errorf("p11list: find objects: %w", err)
	}
	var out []Object
	for _, h := range handles {
		attrs, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil), pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return nil, fmt.Errorf("p11list: attributes of object %d: %w", h, err)
		}
		out = append(out, Object{Class: className(attrs[0].Value), Label: string(attrs[1].Value), ID: attrs[2].Value})
	}
	slices.SortFunc(out, func(a, b Object) int {
		return strings.Compare(a.Label+"\x00"+a.Class, b.Label+"\x00"+b.Class)
	})
	return out, nil
}

// className names a CKA_CLASS value, a CK_ULONG in the machine's byte order.
func className(v []byte) string {
	var class uint64
	switch len(v) {
	case 8:
		class = binary.NativeEndian.Uint64(v)
	case 4:
		class = uint64(binary.NativeEndian.Uint32(v))
	default:
		return "other"
	}
	switch uint(class) {
	case pkcs11.CKO_PRIVATE_KEY:
		return "private key"
	case pkcs11.CKO_PUBLIC_KEY:
		return "public key"
	case pkcs11.CKO_CERTIFICATE:
		return "certificate"
	case pkcs11.CKO_SECRET_KEY:
		return "secret key"
	case pkcs11.CKO_DATA:
		return "data"
	}
	return "other"
}

// Labels returns the labels of the private keys among objs.
func Labels(objs []Object) []string {
	var out []string
	for _, o := range objs {
		if o.Class == "private key" {
			out = append(out, o.Label)
		}
	}
	return out
}
