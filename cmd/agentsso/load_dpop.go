package main

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
	"errors"
	"fmt"
	"math/big"
	"time"
)

// dpopSigner makes the DPoP proofs (RFC 9449) of `load --dpop ALG`: one
// key for the whole run, as a client keeps its key, and a proof per
// request with a fresh jti and iat, made by the load generator (on its
// own CPU), never by the server it measures.
type dpopSigner struct {
	alg    string
	key    crypto.Signer
	header string // base64url JOSE header: typ, alg, the public jwk
}

// dpopLoadAlgs are the algorithms --dpop takes.
var dpopLoadAlgs = []string{"ES256", "EdDSA", "RS256"}

func newDPoPSigner(alg string) (*dpopSigner, error) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var (
		key crypto.Signer
		jwk map[string]string
	)
	switch alg {
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
		jwk = map[string]string{"kty": "EC", "crv": "P-256", "x": b64(k.X.FillBytes(make([]byte, 32))), "y": b64(k.Y.FillBytes(make([]byte, 32)))}
	case "EdDSA":
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
		jwk = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}
	case "RS256":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		key = k
		jwk = map[string]string{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	default:
		return nil, fmt.Errorf("--dpop: unknown algorithm %q (want one of %v)", alg, dpopLoadAlgs)
	}
	h, err := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": jwk})
	if err != nil {
		return nil, err
	}
	return &dpopSigner{alg: alg, key: key, header: b64(h)}, nil
}

// proof is a proof for POST htu at now.
func (d *dpopSigner) proof(htu string, now time.Time) (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims, err := json.Marshal(map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"htm": "POST",
		"htu": htu,
		"iat": now.Unix(),
	})
	if err != nil {
		return "", err
	}
	input := d.header + "." + base64.RawURLEncoding.EncodeToString(claims)
	var sig []byte
	switch k := d.key.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			return "", err
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case *rsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:]); err != nil {
			return "", err
		}
	default:
		return "", errors.New("dpop: unsupported key")
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
