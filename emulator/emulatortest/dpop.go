package emulatortest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DPoPKey is the key pair of a DPoP client (RFC 9449), with which a test
// makes proofs through go-jose.
type DPoPKey struct {
	Alg    jose.SignatureAlgorithm
	Signer crypto.Signer
}

// NewDPoPKey makes a fresh key for alg: ES256, ES384, RS256, PS256 or
// EdDSA.
func NewDPoPKey(tb testing.TB, alg jose.SignatureAlgorithm) *DPoPKey {
	tb.Helper()
	var (
		s   crypto.Signer
		err error
	)
	switch alg {
	case jose.ES256:
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.RS256, jose.PS256:
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, s, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("emulatortest: no DPoP key for alg %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &DPoPKey{Alg: alg, Signer: s}
}

// PublicJWK is the key's public JWK, as a proof embeds it.
func (k *DPoPKey) PublicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer.Public(), Algorithm: string(k.Alg)}
}

// PrivateJWK is the whole key as a JWK, private part included: what a
// proof must never embed.
func (k *DPoPKey) PrivateJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer, Algorithm: string(k.Alg)}
}

// JKT is the key's RFC 7638 SHA-256 thumbprint, base64url: the cnf.jkt of
// a token bound to it.
func (k *DPoPKey) JKT() string {
	jwk := k.PublicJWK()
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic("emulatortest: thumbprint: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// DPoPOptions change a proof. A member set to nil in Header or Claims is
// removed; any other value is added or replaces the default one.
type DPoPOptions struct {
	// Header members beside alg: by default typ "dpop+jwt" and the
	// public jwk.
	Header map[string]any
	// Claims: by default a random jti, htm, htu and iat.
	Claims map[string]any
}

// Proof makes a DPoP proof for a request (method and URL) at iat, with a
// fresh jti; o (optional) changes it.
func (k *DPoPKey) Proof(tb testing.TB, method, url string, iat time.Time, o *DPoPOptions) string {
	tb.Helper()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims := map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"htm": method,
		"htu": url,
		"iat": iat.Unix(),
	}
	header := map[string]any{"typ": "dpop+jwt", "jwk": k.PublicJWK()}
	if o != nil {
		merge(claims, o.Claims)
		merge(header, o.Header)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	opts := &jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{}}
	for name, v := range header {
		opts.ExtraHeaders[jose.HeaderKey(name)] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Signer}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func merge(dst, src map[string]any) {
	for name, v := range src {
		if v == nil {
			delete(dst, name)
			continue
		}
		dst[name] = v
	}
}

// ATH is the ath claim for an access token: its SHA-256 hash, base64url.
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
