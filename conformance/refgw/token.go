package refgw

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math"
	"math/big"
	"net/netip"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// allowedAlgs is the allow-list for access-token signatures. It has no
// symmetric algorithm and no "none", so an attacker cannot choose how the
// signature is checked (RFC 8725 section 3.1).
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

const (
	maxTokenBytes = 16 << 10
	maxActDepth   = 16
)

func algAllowed(alg string, list []jose.SignatureAlgorithm) bool {
	for _, a := range list {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// isB64URL reports whether s uses only the base64url alphabet, unpadded.
func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// joseHeader is a decoded JOSE header. params keeps every member, so that
// checks can see what go-jose would otherwise interpret or drop.
type joseHeader struct {
	alg, kid, typ string
	params        map[string]json.RawMessage
}

func (h *joseHeader) has(name string) bool { _, ok := h.params[name]; return ok }

// decodeHeader decodes a compact-serialization header segment. Every
// member the gateway reads must have the right JSON type.
func decodeHeader(seg string) (*joseHeader, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errors.New("header is not base64url")
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(b, &params); err != nil || params == nil {
		return nil, errors.New("header is not a JSON object")
	}
	h := &joseHeader{params: params}
	for name, dst := range map[string]*string{"alg": &h.alg, "kid": &h.kid, "typ": &h.typ} {
		raw, ok := params[name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return nil, errors.New("header parameter " + name + " is not a string")
		}
	}
	if h.alg == "" {
		return nil, errors.New("header has no alg")
	}
	return h, nil
}

// splitCompact splits a compact JWS into its three segments.
func splitCompact(tok string) ([]string, *denial) {
	parts := strings.Split(tok, ".")
	switch {
	case len(parts) == 5:
		return nil, invalidToken(errMalformed, "encrypted tokens (JWE) are not accepted")
	case len(parts) != 3:
		return nil, invalidToken(errMalformed, "not a JWS in compact serialization")
	case parts[0] == "" || parts[1] == "":
		return nil, invalidToken(errMalformed, "empty header or payload")
	}
	for _, p := range parts {
		if !isB64URL(p) {
			return nil, invalidToken(errMalformed, "segment is not base64url")
		}
	}
	return parts, nil
}

// verifyJWT checks a token's structure, header, algorithm, key and
// signature, and returns its header and verified payload. verified is
// false only when a flaw let an unverified token through.
func (g *Gateway) verifyJWT(ctx context.Context, tok string) (h *joseHeader, payload []byte, verified bool, d *denial) {
	if g.flaw(FlawNoSizeLimit) {
		g.decodeUnbounded(ctx, tok)
	}
	parts, d := splitCompact(tok)
	if d != nil {
		return nil, nil, false, d
	}
	h, err := decodeHeader(parts[0])
	if err != nil {
		return nil, nil, false, invalidToken(errMalformed, err.Error())
	}
	// RFC 7515 section 4.1.11: a recipient must reject a JWS whose crit
	// lists an extension it does not understand. This gateway understands
	// none.
	if h.has("crit") && !g.flaw(FlawIgnoreCrit) {
		return h, nil, false, invalidToken(errCrit, "crit header parameters are not supported")
	}
	// RFC 7797 unencoded payloads change what is signed; never accepted.
	if h.has("b64") {
		return h, nil, false, invalidToken(errMalformed, "the b64 header parameter is not accepted")
	}
	unverified, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, nil, false, invalidToken(errMalformed, "payload is not base64url")
	}

	switch {
	case strings.EqualFold(h.alg, "none"):
		if g.flaw(FlawAcceptAlgNone) {
			return h, unverified, false, nil
		}
		return h, nil, false, invalidToken(errAlgorithm, "unsigned tokens (alg none) are not accepted")
	case h.alg == "HS256" && g.flaw(FlawHS256Confusion):
		if g.verifyHS256Confusion(ctx, h, parts) {
			return h, unverified, false, nil
		}
		return h, nil, false, invalidToken(errSignature, "")
	case !algAllowed(h.alg, allowedAlgs):
		return h, nil, false, invalidToken(errAlgorithm, "accepted algorithms are ES256, ES384, RS256, PS256 and EdDSA")
	}

	jws, err := jose.ParseSignedCompact(tok, allowedAlgs)
	if err != nil {
		return h, nil, false, invalidToken(errMalformed, "not a valid JWS")
	}
	if g.flaw(FlawSkipSignature) {
		return h, jws.UnsafePayloadWithoutVerification(), false, nil
	}

	keys, err := g.keysFor(ctx, h, jws, unverified)
	if err != nil {
		return h, nil, false, invalidToken(errUnknownKey, "")
	}
	matched := false
	for _, k := range keys {
		// The key decides the algorithm, not the token: an RSA key never
		// checks an ECDSA signature, and a key published for one alg is
		// never used with another.
		if !algMatchesKey(h.alg, k.key) || (k.alg != "" && k.alg != h.alg) {
			continue
		}
		matched = true
		if g.flaw(FlawIgnoreCrit) && h.has("crit") {
			// go-jose enforces crit itself; the flaw checks the signature by hand.
			if verifyRaw(h.alg, k.key, []byte(parts[0]+"."+parts[1]), parts[2]) {
				return h, unverified, true, nil
			}
			continue
		}
		if p, err := jws.Verify(k.key); err == nil {
			return h, p, true, nil
		}
	}
	if !matched {
		return h, nil, false, invalidToken(errUnknownKey, "no key for the token's kid and alg")
	}
	return h, nil, false, invalidToken(errSignature, "")
}

// keysFor chooses the candidate keys. The conforming gateway uses only the
// configured JWKS, by kid; flaws let the token choose.
func (g *Gateway) keysFor(ctx context.Context, h *joseHeader, jws *jose.JSONWebSignature, unverified []byte) ([]verificationKey, error) {
	if g.flaw(FlawTrustHeaderKeys) {
		if keys := g.headerKeys(ctx, h, jws); len(keys) > 0 {
			return keys, nil
		}
	}
	if g.flaw(FlawAcceptAnyTenantKey) {
		var c struct {
			Iss string `json:"iss"`
		}
		if json.Unmarshal(unverified, &c) == nil && c.Iss != g.cfg.Issuer && sameOrigin(c.Iss, g.cfg.Issuer) {
			return g.tenantKeySet(c.Iss).candidates(ctx, h.kid)
		}
	}
	return g.keys.candidates(ctx, h.kid)
}

// headerKeys is the trust-header-keys flaw (CVE-2018-0114 and its jku/x5u
// cousins): keys taken from, or fetched at a URL named by, the token.
func (g *Gateway) headerKeys(ctx context.Context, h *joseHeader, jws *jose.JSONWebSignature) []verificationKey {
	if jwk := jws.Signatures[0].Header.JSONWebKey; jwk != nil && jwk.IsPublic() {
		return []verificationKey{{kid: h.kid, key: jwk.Key}}
	}
	var x5c []string
	if raw, ok := h.params["x5c"]; ok && json.Unmarshal(raw, &x5c) == nil && len(x5c) > 0 {
		if der, err := base64.StdEncoding.DecodeString(x5c[0]); err == nil {
			if cert, err := x509.ParseCertificate(der); err == nil {
				return []verificationKey{{kid: h.kid, key: cert.PublicKey}}
			}
		}
	}
	var jku, x5u string
	if raw, ok := h.params["jku"]; ok && json.Unmarshal(raw, &jku) == nil && jku != "" {
		if keys, err := fetchJWKS(ctx, g.client, jku); err == nil {
			var out []verificationKey
			for _, k := range keys {
				if h.kid == "" || k.kid == h.kid {
					out = append(out, k)
				}
			}
			return out
		}
	}
	if raw, ok := h.params["x5u"]; ok && json.Unmarshal(raw, &x5u) == nil && x5u != "" {
		if body, err := fetchDocument(ctx, g.client, x5u, "application/pem-certificate-chain"); err == nil {
			if blk, _ := pem.Decode(body); blk != nil && blk.Type == "CERTIFICATE" {
				if cert, err := x509.ParseCertificate(blk.Bytes); err == nil {
					return []verificationKey{{kid: h.kid, key: cert.PublicKey}}
				}
			}
		}
	}
	return nil
}

// verifyHS256Confusion is the classic RS/HS confusion bug: an HMAC checked
// with the issuer's public key, in any of the encodings a library might
// hand over as "the key", as the secret.
func (g *Gateway) verifyHS256Confusion(ctx context.Context, h *joseHeader, parts []string) bool {
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	keys, err := g.keys.candidates(ctx, h.kid)
	if err != nil {
		return false
	}
	input := []byte(parts[0] + "." + parts[1])
	for _, k := range keys {
		for _, secret := range publicKeyEncodings(k) {
			mac := hmac.New(sha256.New, secret)
			mac.Write(input)
			if hmac.Equal(mac.Sum(nil), sig) {
				return true
			}
		}
	}
	return false
}

func publicKeyEncodings(k verificationKey) [][]byte {
	var out [][]byte
	if len(k.raw) > 0 {
		out = append(out, k.raw, bytes.TrimSpace(k.raw))
	}
	pub := jose.JSONWebKey{Key: k.key, KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
	if b, err := pub.MarshalJSON(); err == nil {
		out = append(out, b)
	}
	if der, err := x509.MarshalPKIXPublicKey(k.key); err == nil {
		p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		out = append(out, der, p, bytes.TrimSpace(p))
	}
	if rk, ok := k.key.(*rsa.PublicKey); ok {
		p := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rk)})
		out = append(out, p, bytes.TrimSpace(p))
	}
	return out
}

// verifyRaw checks a JWS signature by hand. Only flawed paths use it; the
// conforming path always goes through go-jose.
func verifyRaw(alg string, key any, input []byte, sigSeg string) bool {
	sig, err := base64.RawURLEncoding.DecodeString(sigSeg)
	if err != nil {
		return false
	}
	var hash crypto.Hash
	switch alg {
	case "ES384":
		hash = crypto.SHA384
	default:
		hash = crypto.SHA256
	}
	var digest []byte
	if hash == crypto.SHA384 {
		d := sha512.Sum384(input)
		digest = d[:]
	} else {
		d := sha256.Sum256(input)
		digest = d[:]
	}
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		n := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*n {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		return ecdsa.Verify(k, digest, r, s)
	case *rsa.PublicKey:
		if alg == "PS256" {
			return rsa.VerifyPSS(k, hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}) == nil
		}
		return rsa.VerifyPKCS1v15(k, hash, digest, sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, input, sig)
	}
	return false
}

// sameOrigin reports whether two URLs share scheme and host.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme != "" && ua.Host != "" &&
		strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}

// actor is one link of an RFC 8693 act chain, current actor first.
type actor struct {
	sub, clientID, iss string
}

// tokenContext is agentsso's ctx claim (docs/CLAIMS.md).
type tokenContext struct {
	nets     []netip.Prefix
	zone     string
	env      string
	instance string
}

// tokenClaims are the claims the gateway reads, with strict JSON types.
type tokenClaims struct {
	iss, sub, jti, clientID, azp, scope string
	aud                                 []string
	audPresent                          bool
	exp, nbf, iat                       *time.Time
	act                                 []actor // current actor first
	cnf                                 map[string]json.RawMessage
	jkt                                 string
	x5t                                 string // cnf.x5t#S256 (RFC 8705)
	email                               string // informational: never an identity
	ctx                                 *tokenContext
}

// agent is the OAuth client the token was issued to.
func (c *tokenClaims) agent() string {
	if c.clientID != "" {
		return c.clientID
	}
	return c.azp
}

// currentActor is the outermost act.sub, or "".
func (c *tokenClaims) currentActor() string {
	if len(c.act) == 0 {
		return ""
	}
	return c.act[0].sub
}

// presentedScopes splits scope on spaces (RFC 6749 section 3.3): exact
// tokens, no other separator.
func (c *tokenClaims) presentedScopes() []string {
	out := []string{}
	for _, s := range strings.Split(c.scope, " ") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseClaims decodes a JWT claims set. A claim the gateway reads must
// have its registered JSON type; anything else is a malformed token.
func parseClaims(payload []byte) (*tokenClaims, error) {
	m, ok := object(payload)
	if !ok {
		return nil, errors.New("claims are not a JSON object")
	}
	c := &tokenClaims{}
	if raw, ok := m["email"]; ok {
		_ = json.Unmarshal(raw, &c.email) // a non-string email is ignored, not refused
	}
	for name, dst := range map[string]*string{"iss": &c.iss, "sub": &c.sub, "jti": &c.jti, "client_id": &c.clientID, "azp": &c.azp, "scope": &c.scope} {
		if _, err := member(m, name, dst); err != nil {
			return nil, errors.New(name + " is not a string")
		}
	}
	if raw, ok := m["aud"]; ok {
		c.audPresent = true
		var one string
		if err := json.Unmarshal(raw, &one); err == nil {
			c.aud = []string{one}
		} else if err := json.Unmarshal(raw, &c.aud); err != nil {
			return nil, errors.New("aud is neither a string nor an array of strings")
		}
	}
	for name, dst := range map[string]**time.Time{"exp": &c.exp, "nbf": &c.nbf, "iat": &c.iat} {
		if raw, ok := m[name]; ok {
			t, err := numericDate(raw)
			if err != nil {
				return nil, errors.New(name + " is not a NumericDate")
			}
			*dst = &t
		}
	}
	if raw, ok := m["act"]; ok {
		chain, err := parseAct(raw)
		if err != nil {
			return nil, err
		}
		c.act = chain
	}
	if raw, ok := m["cnf"]; ok {
		if c.cnf, ok = object(raw); !ok {
			return nil, errors.New("cnf is not an object")
		}
		if present, err := member(c.cnf, "jkt", &c.jkt); present && (err != nil || c.jkt == "") {
			return nil, errors.New("cnf.jkt is not a non-empty string")
		}
		if present, err := member(c.cnf, "x5t#S256", &c.x5t); present && (err != nil || c.x5t == "") {
			return nil, errors.New("cnf.x5t#S256 is not a non-empty string")
		}
	}
	if raw, ok := m["ctx"]; ok {
		tc, err := parseCtx(raw)
		if err != nil {
			return nil, err
		}
		c.ctx = tc
	}
	return c, nil
}

// numericDate parses an RFC 7519 NumericDate (seconds, possibly
// fractional). Values beyond year 9999 are clamped there.
func numericDate(raw json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, errors.New("not a number")
	}
	const maxSec = 253402300799 // 9999-12-31T23:59:59Z
	f = math.Max(math.Min(f, maxSec), -maxSec)
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// object decodes a JSON object into its members by exact name (struct
// decoding in encoding/json would match names case-insensitively, so
// "SUB" would pass for "sub").
func object(raw []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// member decodes the member name of m into dst. Absent is not an error.
func member[T any](m map[string]json.RawMessage, name string, dst *T) (bool, error) {
	raw, ok := m[name]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return true, errors.New(name + " has the wrong JSON type")
	}
	return true, nil
}

// parseAct walks an act chain without recursion, current actor first.
func parseAct(raw json.RawMessage) ([]actor, error) {
	var chain []actor
	for {
		if len(chain) == maxActDepth {
			return nil, errors.New("act chain too deep")
		}
		m, ok := object(raw)
		if !ok {
			return nil, errors.New("act is not an object")
		}
		var a actor
		for name, dst := range map[string]*string{"sub": &a.sub, "client_id": &a.clientID, "iss": &a.iss} {
			if _, err := member(m, name, dst); err != nil {
				return nil, errors.New("act " + err.Error())
			}
		}
		if a.sub == "" {
			return nil, errors.New("act has no sub")
		}
		chain = append(chain, a)
		next, ok := m["act"]
		if !ok {
			return chain, nil
		}
		raw = next
	}
}

func parseCtx(raw json.RawMessage) (*tokenContext, error) {
	m, ok := object(raw)
	if !ok {
		return nil, errors.New("ctx is not an object")
	}
	tc := &tokenContext{}
	var nets []string
	for name, dst := range map[string]*string{"zone": &tc.zone, "env": &tc.env, "instance": &tc.instance} {
		if _, err := member(m, name, dst); err != nil {
			return nil, errors.New("ctx." + err.Error())
		}
	}
	if _, err := member(m, "net", &nets); err != nil {
		return nil, errors.New("ctx." + err.Error())
	}
	for _, n := range nets {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, errors.New("ctx.net has an entry that is not a CIDR")
		}
		tc.nets = append(tc.nets, p.Masked())
	}
	return tc, nil
}
