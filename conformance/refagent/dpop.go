package refagent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// dpopKey is the agent's DPoP key (RFC 9449): one ES256 key per run, made
// on first use. Every proof has a fresh jti, htm, htu without query or
// fragment, iat, the server's nonce when it gave one, and ath at a
// resource server.
type dpopKey struct {
	signer   jose.Signer
	reuseJTI bool // the dpop-reuse-jti flaw
	mu       sync.Mutex
	firstJTI string
}

func newDPoPKey(reuseJTI bool) (*dpopKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dpop: generate key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256)}
	opts := (&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", pub)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv}, opts)
	if err != nil {
		return nil, fmt.Errorf("dpop: signer: %w", err)
	}
	return &dpopKey{signer: s, reuseJTI: reuseJTI}, nil
}

// htu is the request URL without query and fragment (RFC 9449 section
// 4.2).
func htu(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("dpop: htu: %w", err)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	return u.String(), nil
}

// proof makes a DPoP proof for method and rawURL; accessToken (at a
// resource server) adds ath, nonce the server-provided nonce.
func (k *dpopKey) proof(method, rawURL, nonce, accessToken string) (string, error) {
	target, err := htu(rawURL)
	if err != nil {
		return "", err
	}
	jti := randomString(16)
	k.mu.Lock()
	if k.firstJTI == "" {
		k.firstJTI = jti
	} else if k.reuseJTI {
		jti = k.firstJTI
	}
	k.mu.Unlock()
	claims := map[string]any{
		"jti": jti,
		"htm": method,
		"htu": target,
		"iat": time.Now().Unix(),
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// randomString is n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
