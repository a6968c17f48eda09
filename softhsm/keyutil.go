package softhsm

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by a store, and by the signers of its keys, after
// Close.
var ErrClosed = errors.New("softhsm: store is closed")

// ErrNoCGO is returned by NewPKCS11 in binaries built with CGO_ENABLED=0.
var ErrNoCGO = errors.New("softhsm: the pkcs11 backend needs cgo: this binary was built with CGO_ENABLED=0; rebuild with CGO_ENABLED=1 and a C compiler, or use keys.backend memory or tpm")

// ConfigError reports a configuration field that is wrong, and how to
// fix it. Field is the configuration key, e.g. "keys.pkcs11.token".
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the underlying problem.
func (e *ConfigError) Unwrap() error { return e.Err }

func cfgErr(field, format string, a ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, a...)}
}

func errStoreClosed(backend string) error {
	return fmt.Errorf("%w (backend %s)", ErrClosed, backend)
}

// checkTenant rejects tenant names that cannot be stored safely: the
// PKCS#11 backend keeps the tenant in a '/'-separated label and the TPM
// backend uses it as a directory name.
func checkTenant(tenant string) error {
	switch {
	case tenant == "":
		return errors.New("softhsm: tenant is empty")
	case tenant == "." || tenant == "..":
		return fmt.Errorf("softhsm: tenant %q is not allowed", tenant)
	case strings.ContainsAny(tenant, "/\\\x00"):
		return fmt.Errorf("softhsm: tenant %q contains '/', '\\' or NUL", tenant)
	}
	return nil
}

// createdClock stamps new keys with strictly increasing creation times,
// with nanosecond precision, so that List's oldest-first order is the
// creation order, also after reopening a store.
type createdClock struct {
	mu   sync.Mutex
	now  func() time.Time
	last time.Time
}

func (c *createdClock) next() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now().UTC().Round(0)
	if !t.After(c.last) {
		t = c.last.Add(time.Nanosecond)
	}
	c.last = t
	return t
}

// seen records a loaded key's creation time.
func (c *createdClock) seen(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.last) {
		c.last = t
	}
}

// sortKeys orders keys oldest first, by kid for equal creation times.
func sortKeys(ks []Key) {
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].Created.Equal(ks[j].Created) {
			return ks[i].KID < ks[j].KID
		}
		return ks[i].Created.Before(ks[j].Created)
	})
}

// ecdsaASN1 re-encodes a raw r||s ECDSA signature (PKCS#11 CKM_ECDSA) as
// the ASN.1 SEQUENCE{r, s} that crypto.Signer returns.
func ecdsaASN1(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("softhsm: ECDSA signature of %d bytes is not r||s", len(raw))
	}
	n := len(raw) / 2
	return ecdsaASN1RS(raw[:n], raw[n:])
}

// ecdsaASN1RS encodes big-endian r and s as ASN.1 SEQUENCE{r, s}.
func ecdsaASN1RS(r, s []byte) ([]byte, error) {
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(r), new(big.Int).SetBytes(s)})
}
