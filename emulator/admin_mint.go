package emulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/softhsm"
)

// MintRequest asks for a token with any claims and any header: the raw
// material of attack scenarios. See docs/ADMIN.md for the JSON form.
type MintRequest struct {
	// Claims are written verbatim. iss, sub, client_id, aud, scope, iat,
	// exp and jti are filled in when absent; a claim set to nil (JSON
	// null) is left out of the token.
	Claims map[string]any
	// Header entries are written verbatim over the header agentsso builds
	// (alg, kid, typ); nil removes an entry. "jwk": "self" embeds the
	// public JWK of the signing key ("jwk": "rogue" too, with Key rogue).
	Header map[string]any
	// Lifetime is exp - iat (default: the client's access token
	// lifetime, else the tenant's). It must not be negative.
	Lifetime time.Duration
	// Offset shifts iat and exp from real time (not the tenant's virtual
	// clock: a minted token is for an external target). Negative values
	// mint tokens that are already old, e.g. Offset -15m with Lifetime 10m
	// is expired since 5 minutes.
	Offset time.Duration
	// Key selects the signature:
	//   - "tenant" (default): the tenant's active key;
	//   - "other-tenant:<name>": another tenant's active key;
	//   - "kid:<kid>": one of the tenant's keys, withdrawn or hidden ones too;
	//   - "rogue": a fresh key of the tenant's algorithm that is in no JWKS;
	//   - "hs256": HMAC-SHA256 with HS256Secret or HS256SecretFrom;
	//   - "none": alg none and an empty signature.
	Key string
	// HS256Secret is the HMAC key for Key "hs256".
	HS256Secret string
	// HS256SecretFrom derives the HMAC key from the tenant's active public
	// key instead, for algorithm confusion: "tenant-public-pem" (PKIX PEM,
	// as a verifier that reads PEM would hold it) or "tenant-jwk" (the JWK
	// JSON as in the JWKS); the header then carries that key's kid. With
	// "empty" the HMAC key is empty (a verifier that resolves a kid to
	// nothing, e.g. /dev/null).
	HS256SecretFrom string
	// Typ is the typ header (default "at+jwt"); Header["typ"] wins.
	Typ string
}

// mintJSON is MintRequest's JSON form.
type mintJSON struct {
	Claims          map[string]any `json:"claims"`
	Header          map[string]any `json:"header"`
	Lifetime        string         `json:"lifetime"`
	Offset          string         `json:"offset"`
	Key             string         `json:"key"`
	HS256Secret     string         `json:"hs256_secret"`
	HS256SecretFrom string         `json:"hs256_secret_from"`
	Typ             string         `json:"typ"`
}

// UnmarshalJSON reads the JSON form, strictly: durations are strings
// such as "10m", numbers in claims are kept exactly as written.
func (m *MintRequest) UnmarshalJSON(b []byte) error {
	var j mintJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&j); err != nil {
		return jsonError(err, &j)
	}
	*m = MintRequest{Claims: j.Claims, Header: j.Header, Key: j.Key, HS256Secret: j.HS256Secret, HS256SecretFrom: j.HS256SecretFrom, Typ: j.Typ}
	var err error
	if j.Lifetime != "" {
		if m.Lifetime, err = parseDuration("lifetime", j.Lifetime); err != nil {
			return err
		}
	}
	if j.Offset != "" {
		if m.Offset, err = parseDuration("offset", j.Offset); err != nil {
			return err
		}
	}
	return nil
}

func (*MintRequest) jsonFieldNames() []string { return jsonFields(&mintJSON{}) }

// MintResult is a minted token with what it says.
type MintResult struct {
	Token  string         `json:"token"`
	Claims map[string]any `json:"claims"`
	Header map[string]any `json:"header"`
	// JWK is the public key of the signing key (not for hs256 or none):
	// serve it at a jku or x5u URL to play an attacker's key server.
	JWK *jose.JSONWebKey `json:"jwk,omitempty"`
}

// mintSigner is how a minted token is signed.
type mintSigner struct {
	kind string // tenant, other-tenant, kid, rogue, hs256, none
	key  *signingKey
	hmac []byte
}

// Mint builds and signs a token for a tenant as the request says. It is
// audited (endpoint admin.mint, with the jti only).
func (s *Server) Mint(ctx context.Context, tenant string, req MintRequest) (MintResult, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return MintResult{}, err
	}
	sg, err := s.mintSigner(ctx, t, req)
	if err != nil {
		return MintResult{}, err
	}
	if req.Lifetime < 0 {
		return MintResult{}, badField("lifetime", "%s is negative: use offset to mint a token that is already expired", req.Lifetime)
	}
	claims, err := t.mintClaims(s.now().Add(req.Offset), req)
	if err != nil {
		return MintResult{}, err
	}
	header := map[string]any{}
	switch sg.kind {
	case "none":
		header["alg"] = "none"
	case "hs256":
		header["alg"] = "HS256"
		if sg.key != nil {
			header["kid"] = sg.key.KID
		}
	default:
		header["alg"] = sg.key.Alg
		header["kid"] = sg.key.KID
	}
	header["typ"] = "at+jwt"
	if req.Typ != "" {
		header["typ"] = req.Typ
	}
	var jwk *jose.JSONWebKey
	if sg.kind != "none" && sg.kind != "hs256" {
		j := sg.key.PublicJWK()
		jwk = &j
	}
	for k, v := range req.Header {
		switch {
		case v == nil:
			delete(header, k)
		case k == "jwk" && (v == "self" || v == "rogue" && sg.kind == "rogue"):
			if jwk == nil {
				return MintResult{}, badField("header.jwk", "\"self\" embeds the signing key's public JWK, and key %s has none: use an asymmetric key (tenant, rogue, ...)", sg.kind)
			}
			header[k] = jwk
		default:
			header[k] = v
		}
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return MintResult{}, badField("header", "cannot be encoded as JSON: %v", err)
	}
	pb, err := json.Marshal(claims)
	if err != nil {
		return MintResult{}, badField("claims", "cannot be encoded as JSON: %v", err)
	}
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
	var sig []byte
	switch sg.kind {
	case "none":
	case "hs256":
		h := hmac.New(sha256.New, sg.hmac)
		h.Write([]byte(input))
		sig = h.Sum(nil)
	default:
		if sig, err = rawSignature(sg.key.Signer, sg.key.Alg, sg.key.hash, []byte(input)); err != nil {
			return MintResult{}, err
		}
	}
	tok := input + "." + base64.RawURLEncoding.EncodeToString(sig)
	jti, _ := claims["jti"].(string)
	s.adminEvent(t, audit.Event{Endpoint: "admin.mint", Jti: jti})
	return MintResult{Token: tok, Claims: claims, Header: header, JWK: jwk}, nil
}

const mintKeys = "tenant, other-tenant:<name>, kid:<kid>, rogue, hs256 or none"

func (s *Server) mintSigner(ctx context.Context, t *tenant, req MintRequest) (mintSigner, error) {
	if req.Key != "hs256" && (req.HS256Secret != "" || req.HS256SecretFrom != "") {
		return mintSigner{}, badField("hs256_secret", "applies only to key hs256 (key is %q)", req.Key)
	}
	kind, arg, _ := strings.Cut(req.Key, ":")
	switch kind {
	case "", "tenant":
		if arg != "" || kind == "" && req.Key != "" {
			break
		}
		k, err := t.activeKey()
		if err != nil {
			return mintSigner{}, fmt.Errorf("%w: %v", ErrConflict, err)
		}
		return mintSigner{kind: "tenant", key: k}, nil
	case "other-tenant":
		if arg == "" {
			return mintSigner{}, badField("key", "other-tenant needs a tenant name: other-tenant:<name>")
		}
		o := s.tenant(arg)
		if o == nil {
			return mintSigner{}, badField("key", "no tenant %q: GET /admin/v1/tenants lists them", arg)
		}
		k, err := o.activeKey()
		if err != nil {
			return mintSigner{}, fmt.Errorf("%w: %v", ErrConflict, err)
		}
		return mintSigner{kind: "other-tenant", key: k}, nil
	case "kid":
		k := t.key(arg)
		if k == nil {
			return mintSigner{}, badField("key", "tenant %s has no key %q: GET .../keys lists them", t.name, arg)
		}
		return mintSigner{kind: "kid", key: k}, nil
	case "rogue":
		if arg != "" {
			break
		}
		alg := softhsm.ES256
		if k, err := t.activeKey(); err == nil {
			alg = k.Alg
		}
		m, err := softhsm.NewMemory("")
		if err != nil {
			return mintSigner{}, err
		}
		k, err := m.Create(ctx, "rogue", alg)
		if err != nil {
			return mintSigner{}, err
		}
		sk, err := newSigningKey(k)
		if err != nil {
			return mintSigner{}, err
		}
		return mintSigner{kind: "rogue", key: sk}, nil
	case "hs256":
		if arg != "" {
			break
		}
		switch {
		case req.HS256Secret != "" && req.HS256SecretFrom != "":
			return mintSigner{}, badField("hs256_secret", "set hs256_secret or hs256_secret_from, not both")
		case req.HS256Secret != "":
			return mintSigner{kind: "hs256", hmac: []byte(req.HS256Secret)}, nil
		case req.HS256SecretFrom == "":
			return mintSigner{}, badField("hs256_secret", "key hs256 needs hs256_secret, or hs256_secret_from: tenant-public-pem, tenant-jwk or empty")
		case req.HS256SecretFrom == "empty":
			return mintSigner{kind: "hs256", hmac: []byte{}}, nil
		}
		k, err := t.activeKey()
		if err != nil {
			return mintSigner{}, fmt.Errorf("%w: %v", ErrConflict, err)
		}
		switch req.HS256SecretFrom {
		case "tenant-public-pem":
			der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
			if err != nil {
				return mintSigner{}, err
			}
			return mintSigner{kind: "hs256", key: k, hmac: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, nil
		case "tenant-jwk":
			b, err := json.Marshal(k.PublicJWK())
			if err != nil {
				return mintSigner{}, err
			}
			return mintSigner{kind: "hs256", key: k, hmac: b}, nil
		}
		return mintSigner{}, badField("hs256_secret_from", "%q: want tenant-public-pem, tenant-jwk or empty", req.HS256SecretFrom)
	case "none":
		if arg != "" {
			break
		}
		return mintSigner{kind: "none"}, nil
	}
	return mintSigner{}, badField("key", "%q: want %s", req.Key, mintKeys)
}

// mintClaims fills the default claims around the caller's.
func (t *tenant) mintClaims(now time.Time, req MintRequest) (map[string]any, error) {
	claims := make(map[string]any, len(req.Claims)+8)
	for k, v := range req.Claims {
		claims[k] = v
	}
	_, hasCID := claims["client_id"]
	_, hasSub := claims["sub"]
	if !hasCID && !hasSub {
		return nil, badField("claims.client_id", "missing: name the agent the token is for (client_id) or its subject (sub); set either to null to leave it out")
	}
	cid, _ := claims["client_id"].(string)
	if !hasCID {
		cid, _ = claims["sub"].(string)
		claims["client_id"] = cid
	}
	if !hasSub {
		claims["sub"] = cid
	}
	c := t.client(cid)
	if _, ok := claims["aud"]; !ok {
		if c == nil || len(c.cfg.DefaultAudience) == 0 {
			return nil, badField("claims.aud", "missing, and client %q has no default audience: set aud, or set it to null (no aud claim) or [] for a token without an audience", cid)
		}
		claims["aud"] = Audience(c.cfg.DefaultAudience)
	}
	if _, ok := claims["scope"]; !ok && c != nil && len(c.cfg.RequiredScopes) > 0 {
		claims["scope"] = strings.Join(c.cfg.RequiredScopes, " ")
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = t.lifetimes(cid).AccessToken
	}
	def := map[string]any{
		"iss": t.issuer(),
		"iat": now.Unix(),
		"exp": now.Add(lifetime).Unix(),
		"jti": newID(),
	}
	for k, v := range def {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	for k, v := range claims {
		if v == nil {
			delete(claims, k)
		}
	}
	return claims, nil
}
