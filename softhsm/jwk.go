package softhsm

import (
	"crypto"
	"encoding/base64"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// Thumbprint returns the kid agentsso gives a public key: the first 16
// characters of its RFC 7638 SHA-256 thumbprint, base64url. The same key
// always gets the same kid, whichever backend holds it.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("softhsm: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)[:16], nil
}

// PublicJWK is the key's public half as published in a JWKS.
func (k Key) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
}
