//go:build !cgo

package softhsm

import "context"

// pkcs11Supported reports whether this build can load PKCS#11 modules.
const pkcs11Supported = false

// PKCS11 is the PKCS#11 backend. This build has no cgo, so it cannot be
// opened.
type PKCS11 struct{}

var _ Store = (*PKCS11)(nil)

// NewPKCS11 always fails with ErrNoCGO in this build.
func NewPKCS11(cfg PKCS11Config) (*PKCS11, error) {
	if _, err := cfg.Resolve(); err != nil {
		return nil, err
	}
	return nil, ErrNoCGO
}

// Backend implements Store.
func (*PKCS11) Backend() string { return "pkcs11" }

// Close implements Store.
func (*PKCS11) Close() error { return nil }

// Create implements Store.
func (*PKCS11) Create(context.Context, string, string) (Key, error) { return Key{}, ErrNoCGO }

// List implements Store.
func (*PKCS11) List(context.Context, string) ([]Key, error) { return nil, ErrNoCGO }

// Delete implements Store.
func (*PKCS11) Delete(context.Context, string, string) error { return ErrNoCGO }

// openModuleConf: no module is ever open in this build.
func openModuleConf(string) (string, bool) { return "", false }
