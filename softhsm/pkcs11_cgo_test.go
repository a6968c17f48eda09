//go:build cgo

package softhsm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
)

// p11InitToken initializes the first uninitialized token of module with
// label and soPIN and sets its user PIN, the way
// `pkcs11-tool --init-token` and `--init-pin` do, through the module
// instance this process shares (acquireModule).
func p11InitToken(module, label, soPIN, userPIN string) error {
	m, err := acquireModule(module)
	if err != nil {
		return err
	}
	defer releaseModule(m)
	p := m.ctx
	slots, err := p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("list slots: %w", err)
	}
	slot, found := uint(0), false
	for _, sl := range slots {
		ti, err := p.GetTokenInfo(sl)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			slot, found = sl, true
			break
		}
	}
	if !found {
		return fmt.Errorf("no uninitialized token among %d slots", len(slots))
	}
	if err := p.InitToken(slot, soPIN, label); err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	// Some modules (tpm2-pkcs11) move the new token to another slot.
	slots, err = p.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("list slots: %w", err)
	}
	found = false
	for _, sl := range slots {
		ti, err := p.GetTokenInfo(sl)
		if err == nil && strings.TrimRight(ti.Label, " \x00") == label {
			slot, found = sl, true
			break
		}
	}
	if !found {
		return fmt.Errorf("token %q not found after C_InitToken", label)
	}
	sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer p.CloseSession(sh)
	if err := p.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("C_Login(SO): %w", err)
	}
	defer p.Logout(sh)
	if err := p.InitPIN(sh, userPIN); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return nil
}

// TestPKCS11Supports checks the mechanism check behind Create: an
// algorithm whose mechanisms the token does not list is refused, and a
// module that cannot list its mechanisms is trusted with every algorithm.
func TestPKCS11Supports(t *testing.T) {
	noPSS := &PKCS11{mechs: map[uint]bool{
		pkcs11.CKM_EC_KEY_PAIR_GEN: true, pkcs11.CKM_ECDSA: true,
		pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: true, pkcs11.CKM_RSA_PKCS: true,
	}}
	unknown := &PKCS11{}
	for _, tc := range []struct {
		alg               string
		noPSS, unknownMod bool
	}{
		{ES256, true, true},
		{ES384, true, true},
		{RS256, true, true},
		{PS256, false, true},
	} {
		if got := noPSS.supports(tc.alg); got != tc.noPSS {
			t.Errorf("supports(%s) without CKM_RSA_PKCS_PSS = %v, want %v", tc.alg, got, tc.noPSS)
		}
		if got := unknown.supports(tc.alg); got != tc.unknownMod {
			t.Errorf("supports(%s) with no mechanism list = %v, want %v", tc.alg, got, tc.unknownMod)
		}
	}
	var ue *UnsupportedAlgError
	if _, err := noPSS.Create(context.Background(), "acme", PS256); !errors.As(err, &ue) || ue.Alg != PS256 || ue.Backend != "pkcs11" {
		t.Errorf("Create(PS256) without CKM_RSA_PKCS_PSS = %v, want *UnsupportedAlgError", err)
	}
}
