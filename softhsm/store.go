// Package softhsm holds agentsso's signing-key custody: the seam through
// which the emulator obtains a crypto.Signer and its public JWK for each
// tenant, and the backends behind it.
//
// The seam is Store. A key is addressed by (tenant, kid). Backends:
//
//   - memory: Go keys in process memory, optionally persisted as PKCS#8
//     files under a directory so that kids survive a restart (development
//     only: a file is exactly where agent-identity guidance says keys must
//     not live; use a PKCS#11 or TPM backend to practise custody).
//
// The PKCS#11 (SoftHSM2 or any module) and TPM 2.0 backends implement the
// same interface.
package softhsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"time"
)

// Algorithms a key can be created for. Names are JWS "alg" values.
const (
	ES256 = "ES256"
	ES384 = "ES384"
	RS256 = "RS256"
	PS256 = "PS256"
	EdDSA = "EdDSA"
)

// KeyInfo describes a key without exposing it.
type KeyInfo struct {
	Tenant  string    `json:"tenant"`
	KID     string    `json:"kid"`
	Alg     string    `json:"alg"`
	Backend string    `json:"backend"`
	Created time.Time `json:"created"`
	// Extractable and NeverExtractable are read back from the module
	// (CKA_EXTRACTABLE, CKA_NEVER_EXTRACTABLE); nil where the backend has
	// no such attribute.
	Extractable      *bool `json:"extractable,omitempty"`
	NeverExtractable *bool `json:"never_extractable,omitempty"`
}

// Key is a signing key held by a backend. Signer never exposes private
// material; for ECDSA keys it returns ASN.1 signatures as the
// crypto.Signer contract requires.
type Key struct {
	KeyInfo
	Signer crypto.Signer
}

// Store is the key custody seam.
type Store interface {
	// Create makes a new key for tenant with the given JWS algorithm.
	Create(ctx context.Context, tenant, alg string) (Key, error)
	// List returns the tenant's keys, oldest first.
	List(ctx context.Context, tenant string) ([]Key, error)
	// Delete destroys a key. Deleting an unknown key is ErrKeyNotFound.
	Delete(ctx context.Context, tenant, kid string) error
	// Backend names the backend ("memory", "pkcs11", "tpm").
	Backend() string
	// Close releases sessions, handles and processes.
	Close() error
}

// ErrKeyNotFound is returned for an unknown (tenant, kid).
var ErrKeyNotFound = errors.New("softhsm: key not found")

// UnsupportedAlgError is returned when a backend cannot create keys for an
// algorithm.
type UnsupportedAlgError struct {
	Backend string
	Alg     string
}

func (e *UnsupportedAlgError) Error() string {
	return fmt.Sprintf("softhsm: backend %q does not support algorithm %q", e.Backend, e.Alg)
}

// Hash returns the digest algorithm a JWS algorithm signs over.
func Hash(alg string) (crypto.Hash, error) {
	switch alg {
	case ES256, RS256, PS256:
		return crypto.SHA256, nil
	case ES384:
		return crypto.SHA384, nil
	case EdDSA:
		return 0, nil
	}
	return 0, fmt.Errorf("softhsm: unknown algorithm %q (want one of ES256, ES384, RS256, PS256, EdDSA)", alg)
}
