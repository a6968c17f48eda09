package refagent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/agentsso/agentsso/softhsm"
)

// clientAssertionType is RFC 7523 section 2.2's client_assertion_type.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a private_key_jwt assertion is valid: a
// minute, the usual bound (RFC 7523 section 3 asks for a short one).
const assertionLifetime = 60 * time.Second

// clientCreds is a client at one authorization server: the environment's
// at AGENTSSO_ISSUER, a dynamically registered one anywhere else.
type clientCreds struct {
	id     string
	secret string
	method string
	key    *clientKey // private_key_jwt
	// registered marks a client obtained by dynamic registration.
	registered bool
}

// clientKey signs private_key_jwt assertions.
type clientKey struct {
	signer crypto.Signer
	alg    jose.SignatureAlgorithm
	kid    string
	close  func() error
}

// loadKeyFile reads a PEM private key (PKCS#8, or SEC 1 / PKCS#1).
func loadKeyFile(path, alg, kid string) (*clientKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_FILE: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_FILE: %s holds no PEM block", path)
	}
	var key any
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_FILE: %s: %v", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_FILE: %s: %T is not a signing key", path, key)
	}
	a, err := keyAlg(s.Public(), alg)
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_ALG: %v", err)
	}
	return &clientKey{signer: s, alg: a, kid: kid, close: func() error { return nil }}, nil
}

// loadPKCS11Key opens the PKCS#11 token the RFC 7512 URI names and takes
// the client's key from it: the agentsso key pair created for "tenant"
// clientID (softhsm.Store.Create(ctx, clientID, alg)); kid, when given,
// selects one key among several, else the newest is used.
func loadPKCS11Key(ctx context.Context, uri, clientID, kid, alg string) (*clientKey, error) {
	store, err := softhsm.NewPKCS11(softhsm.PKCS11Config{URI: uri, Sessions: 1})
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_PKCS11_URI: %v", err)
	}
	keys, err := store.List(ctx, clientID)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_PKCS11_URI: list keys of %q: %v", clientID, err)
	}
	var k *softhsm.Key
	for i := range keys {
		if kid == "" || keys[i].KID == kid {
			k = &keys[i] // oldest first: the last match is the newest
		}
	}
	if k == nil {
		store.Close()
		if kid != "" {
			return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_ID: no key with kid %q for client %q on the PKCS#11 token", kid, clientID)
		}
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_PKCS11_URI: the token holds no key for client %q (create one with softhsm.Store.Create(ctx, %q, alg))", clientID, clientID)
	}
	if alg == "" {
		alg = k.Alg
	}
	a, err := keyAlg(k.Signer.Public(), alg)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("AGENTSSO_CLIENT_KEY_ALG: %v", err)
	}
	if kid == "" {
		kid = k.KID
	}
	return &clientKey{signer: k.Signer, alg: a, kid: kid, close: store.Close}, nil
}

// keyAlg checks alg against the key, or picks the usual one for it.
func keyAlg(pub crypto.PublicKey, alg string) (jose.SignatureAlgorithm, error) {
	var allowed []jose.SignatureAlgorithm
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256():
			allowed = []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			allowed = []jose.SignatureAlgorithm{jose.ES384}
		case elliptic.P521():
			allowed = []jose.SignatureAlgorithm{jose.ES512}
		}
	case *rsa.PublicKey:
		allowed = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.RS384, jose.PS384, jose.RS512, jose.PS512}
	case ed25519.PublicKey:
		allowed = []jose.SignatureAlgorithm{jose.EdDSA}
	}
	if len(allowed) == 0 {
		return "", fmt.Errorf("unsupported key type %T", pub)
	}
	if alg == "" {
		return allowed[0], nil
	}
	for _, a := range allowed {
		if string(a) == alg {
			return a, nil
		}
	}
	return "", fmt.Errorf("%q does not fit a %T key (want one of %v)", alg, pub, allowed)
}

// assertion signs a private_key_jwt client assertion for aud (the
// issuer): iss = sub = the client, exp a minute after iat, a fresh jti.
func (a *agent) assertion(c *clientCreds, aud string) (string, error) {
	now := time.Now()
	exp := now.Add(assertionLifetime)
	if a.flaws.On(FlawAssertionLongLived) {
		exp = now.Add(24 * time.Hour)
	}
	jti := randomString(16)
	if a.flaws.On(FlawAssertionFixedJTI) {
		a.mu.Lock()
		if a.fixedJTI == "" {
			a.fixedJTI = jti
		}
		jti = a.fixedJTI
		a.mu.Unlock()
	}
	claims := map[string]any{
		"iss": c.id,
		"sub": c.id,
		"aud": aud,
		"iat": now.Unix(),
		"exp": exp.Unix(),
		"jti": jti,
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if c.key.kid != "" {
		opts = opts.WithHeader("kid", c.key.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: c.key.alg, Key: cryptosigner.Opaque(c.key.signer)}, opts)
	if err != nil {
		return "", fmt.Errorf("client assertion: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("client assertion: sign: %w", err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		return "", err
	}
	a.secrets.add(out)
	return out, nil
}

// authenticate adds client authentication to a request to the
// authorization server at issuer: HTTP Basic (RFC 6749 section 2.3.1, with
// the form-urlencoded id and secret), the secret in the form, an RFC 7523
// assertion, or the client_id alone for a public client.
func (a *agent) authenticate(req *http.Request, form url.Values, c *clientCreds, issuer string) error {
	switch c.method {
	case AuthClientSecretBasic:
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	case AuthClientSecretPost:
		form.Set("client_id", c.id)
		form.Set("client_secret", c.secret)
	case AuthPrivateKeyJWT:
		if c.key == nil {
			return errors.New("private_key_jwt without a key")
		}
		as, err := a.assertion(c, issuer)
		if err != nil {
			return err
		}
		form.Set("client_id", c.id)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", as)
	default:
		form.Set("client_id", c.id)
	}
	return nil
}
