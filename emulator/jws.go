package emulator

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/agentsso/agentsso/softhsm"
)

// signingKey wraps a custody key with what signing needs often: the
// encoded protected headers per typ. Signing builds the compact JWS by
// hand rather than through go-jose's Signer: it is the token endpoint's
// hot path, and one allocation-light function here is worth about a third
// of the per-token cost. Verification always goes through go-jose.
type signingKey struct {
	softhsm.Key
	hash    crypto.Hash
	headers map[string]string // typ -> base64url(header) + "."
}

func newSigningKey(k softhsm.Key) (*signingKey, error) {
	h, err := softhsm.Hash(k.Alg)
	if err != nil {
		return nil, err
	}
	sk := &signingKey{Key: k, hash: h, headers: map[string]string{}}
	for _, typ := range []string{"at+jwt", "JWT"} {
		sk.headers[typ] = encodeHeader(map[string]any{"alg": k.Alg, "kid": k.KID, "typ": typ})
	}
	return sk, nil
}

func encodeHeader(h map[string]any) string {
	b, _ := json.Marshal(h)
	return base64.RawURLEncoding.EncodeToString(b) + "."
}

// sign returns the compact JWS of payload with the header for typ.
func (k *signingKey) sign(typ string, payload []byte) (string, error) {
	hdr, ok := k.headers[typ]
	if !ok {
		hdr = encodeHeader(map[string]any{"alg": k.Alg, "kid": k.KID, "typ": typ})
	}
	return signCompact(k.Signer, k.Alg, k.hash, hdr, payload)
}

// signCompact signs hdr (already encoded, with trailing dot) and payload.
func signCompact(s crypto.Signer, alg string, h crypto.Hash, hdr string, payload []byte) (string, error) {
	n := len(hdr) + base64.RawURLEncoding.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+base64.RawURLEncoding.EncodedLen(512))
	copy(buf, hdr)
	base64.RawURLEncoding.Encode(buf[len(hdr):], payload)
	sig, err := rawSignature(s, alg, h, buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig)
	return string(buf), nil
}

// rawSignature returns the JWS signature bytes over signingInput.
func rawSignature(s crypto.Signer, alg string, h crypto.Hash, signingInput []byte) ([]byte, error) {
	if alg == softhsm.EdDSA {
		return s.Sign(rand.Reader, signingInput, crypto.Hash(0))
	}
	d := h.New()
	d.Write(signingInput)
	digest := d.Sum(nil)
	switch alg {
	case softhsm.ES256, softhsm.ES384:
		size := 32
		if alg == softhsm.ES384 {
			size = 48
		}
		if pk, ok := s.(*ecdsa.PrivateKey); ok {
			r, ss, err := ecdsa.Sign(rand.Reader, pk, digest)
			if err != nil {
				return nil, err
			}
			return rsBytes(r, ss, size), nil
		}
		der, err := s.Sign(rand.Reader, digest, h)
		if err != nil {
			return nil, err
		}
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &sig); err != nil {
			return nil, fmt.Errorf("emulator: ECDSA signer returned a non-ASN.1 signature: %w", err)
		}
		return rsBytes(sig.R, sig.S, size), nil
	case softhsm.RS256:
		return s.Sign(rand.Reader, digest, h)
	case softhsm.PS256:
		return s.Sign(rand.Reader, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
	}
	return nil, errors.New("emulator: cannot sign with algorithm " + alg)
}

func rsBytes(r, s *big.Int, size int) []byte {
	out := make([]byte, 2*size)
	r.FillBytes(out[:size])
	s.FillBytes(out[size:])
	return out
}
