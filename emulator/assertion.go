package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
)

// private_key_jwt client authentication (RFC 7523 section 2.2, OpenID
// Connect Core section 9), done here rather than by fosite, whose version
// checks the assertion's times against the real clock (not the tenant's),
// does not require exp, accepts only the token endpoint as aud, and
// answers a replayed jti with a non-standard error.
//
// An assertion is accepted when:
//   - client_assertion_type is urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
//     and no other client authentication (Basic, client_secret) is sent;
//   - it is a compact JWS signed with the algorithm the client registered
//     (assertion_alg / token_endpoint_auth_signing_alg: RS256, PS256, ES256
//     or ES384), by one of the client's keys (jwks, or fetched from
//     jwks_uri; the kid header, when present, selects the key);
//   - iss and sub are both the client_id (and equal a client_id form
//     parameter, when one is sent);
//   - aud holds the tenant's issuer identifier or its token endpoint URL;
//   - exp is present, not passed, and at most one hour ahead; nbf and iat,
//     when present, are not in the future; all by the tenant's clock, with
//     30 seconds of leeway;
//   - jti is present and was not used before by the same client while an
//     assertion carrying it could still be valid.
//
// Every failure is invalid_client, its description naming the check.

const (
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// maxAssertionLifetime is how far ahead an assertion's exp may be.
	maxAssertionLifetime = time.Hour
	// assertionLeeway absorbs clock differences on exp, nbf and iat.
	assertionLeeway = 30 * time.Second
	// maxAssertionSize bounds what is parsed.
	maxAssertionSize = 16 << 10
	maxJTILength     = 512
)

var assertionAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384}

// clientAuthentication is the tenant's fosite ClientAuthenticationStrategy:
// assertions are verified here; secrets and public clients are left to
// fosite's default strategy, after a client ID metadata document named by
// the request has been resolved (so that a bad document is reported as
// such rather than as an unknown client).
func (t *tenant) clientAuthentication(f *fosite.Fosite, issuer string) fosite.ClientAuthenticationStrategy {
	tokenURL := issuer + "/token"
	return func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		if c, ok, err := t.authenticateMTLS(ctx, r, form); ok { // mtls.go: RFC 8705
			if err != nil {
				return nil, err
			}
			return c, nil
		}
		if form.Has("client_assertion") || form.Has("client_assertion_type") {
			c, err := t.authenticateAssertion(ctx, r, form, issuer, tokenURL)
			if err != nil {
				return nil, err
			}
			return c, nil
		}
		if id := requestClientID(r, form); isURLClientID(id) && t.client(id) == nil {
			if _, err := t.metadataClient(ctx, id); err != nil {
				return nil, err
			}
		}
		return f.DefaultClientAuthenticationStrategy(ctx, r, form)
	}
}

// requestClientID is the client_id a request names, in Basic
// authentication or in the form.
func requestClientID(r *http.Request, form url.Values) string {
	if id, _, ok := r.BasicAuth(); ok {
		if u, err := url.QueryUnescape(id); err == nil {
			return u
		}
		return id
	}
	return form.Get("client_id")
}

// assertionClaims are the claims of a client assertion.
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
}

func invalidClient(format string, a ...any) error {
	return fosite.ErrInvalidClient.WithHintf(format, a...)
}

// authenticateAssertion authenticates a client by its client_assertion.
func (t *tenant) authenticateAssertion(ctx context.Context, r *http.Request, form url.Values, issuer, tokenURL string) (*client, error) {
	if typ := form.Get("client_assertion_type"); typ != clientAssertionType {
		return nil, fosite.ErrInvalidRequest.WithHintf("client_assertion_type is %q: want %s (RFC 7523 section 2.2).", typ, clientAssertionType)
	}
	if len(form["client_assertion"]) != 1 || len(form["client_assertion_type"]) != 1 {
		return nil, fosite.ErrInvalidRequest.WithHint("Send client_assertion and client_assertion_type exactly once each.")
	}
	if _, _, ok := r.BasicAuth(); ok || form.Has("client_secret") {
		return nil, fosite.ErrInvalidRequest.WithHint("The request uses more than one client authentication method (client_assertion with Basic authentication or client_secret): use one (RFC 6749 section 2.3).")
	}
	a := form.Get("client_assertion")
	if a == "" {
		return nil, fosite.ErrInvalidRequest.WithHint("client_assertion is empty.")
	}
	if len(a) > maxAssertionSize {
		return nil, invalidClient("client_assertion is larger than %d KiB.", maxAssertionSize>>10)
	}
	jws, err := jose.ParseSignedCompact(a, assertionAlgs)
	if err != nil {
		return nil, invalidClient("client_assertion is not a compact JWS signed with RS256, PS256, ES256 or ES384: %v.", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, invalidClient("client_assertion must carry exactly one signature.")
	}
	h := jws.Signatures[0].Header
	var unverified assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, invalidClient("client_assertion's claims are not a valid JSON object: %v.", err)
	}
	id := form.Get("client_id")
	if id == "" {
		id = unverified.Subject
	}
	if id == "" {
		return nil, invalidClient("client_assertion has no sub: it must be the client_id (RFC 7523 section 3).")
	}
	fc, err := t.store.GetClient(ctx, id)
	if err != nil {
		var rfc *fosite.RFC6749Error
		if errors.As(err, &rfc) && rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
			return nil, err
		}
		return nil, invalidClient("Client %q is unknown or disabled.", id)
	}
	c, _ := fc.(*client)
	if c == nil {
		return nil, invalidClient("Client %q is unknown or disabled.", id)
	}
	if c.cfg.AuthMethod != "private_key_jwt" {
		return nil, invalidClient("Client %q authenticates with %s, not private_key_jwt: it may not send a client_assertion.", id, c.cfg.AuthMethod)
	}
	alg := string(h.Algorithm)
	if alg != c.cfg.AssertionAlg {
		return nil, invalidClient("client_assertion is signed with %s, but client %q must sign with %s.", alg, id, c.cfg.AssertionAlg)
	}
	payload, err := t.verifyAssertion(ctx, c, jws, h)
	if err != nil {
		return nil, err
	}
	var cl assertionClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, invalidClient("client_assertion's claims are not valid: %v.", err)
	}
	if cl.Issuer != id || cl.Subject != id {
		return nil, invalidClient("client_assertion's iss (%q) and sub (%q) must both be the client_id %q (RFC 7523 section 3).", cl.Issuer, cl.Subject, id)
	}
	if !slices.Contains(cl.Audience, issuer) && !slices.Contains(cl.Audience, tokenURL) {
		return nil, invalidClient("client_assertion's aud %q names neither this issuer (%s) nor its token endpoint (%s).", []string(cl.Audience), issuer, tokenURL)
	}
	now := t.clock.Now()
	if cl.Expiry == nil {
		return nil, invalidClient("client_assertion has no exp: it must expire (RFC 7523 section 3).")
	}
	exp := cl.Expiry.Time()
	if !now.Before(exp.Add(assertionLeeway)) {
		return nil, invalidClient("client_assertion expired at %s (tenant time %s).", exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if exp.After(now.Add(maxAssertionLifetime + assertionLeeway)) {
		return nil, invalidClient("client_assertion expires at %s, more than %s ahead: use a short-lived assertion.", exp.UTC().Format(time.RFC3339), maxAssertionLifetime)
	}
	if cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(assertionLeeway)) {
		return nil, invalidClient("client_assertion is not valid before %s (tenant time %s).", cl.NotBefore.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if cl.IssuedAt != nil && cl.IssuedAt.Time().After(now.Add(assertionLeeway)) {
		return nil, invalidClient("client_assertion was issued in the future, at %s (tenant time %s).", cl.IssuedAt.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if cl.ID == "" {
		return nil, invalidClient("client_assertion has no jti: each assertion needs a unique jti (RFC 7523 section 3).")
	}
	if len(cl.ID) > maxJTILength {
		return nil, invalidClient("client_assertion's jti is longer than %d bytes.", maxJTILength)
	}
	// Remember the jti for as long as the assertion could be accepted.
	if err := t.store.SetClientAssertionJWT(ctx, id+"\x00"+cl.ID, exp.Add(assertionLeeway)); err != nil {
		return nil, invalidClient("client_assertion's jti %q was already used: an assertion may be used only once.", cl.ID)
	}
	return c, nil
}

// verifyAssertion checks the assertion's signature against the client's
// keys that fit its header (kid, alg) and returns the payload.
func (t *tenant) verifyAssertion(ctx context.Context, c *client, jws *jose.JSONWebSignature, h jose.Header) ([]byte, error) {
	alg := string(h.Algorithm)
	try := func(keys []candidateKey) ([]byte, bool) {
		for _, k := range keys {
			if h.KeyID != "" && k.kid != h.KeyID {
				continue
			}
			if (k.use != "" && k.use != "sig") || !keyFitsAlg(k.key, k.alg, alg) {
				continue
			}
			if p, err := jws.Verify(k.key); err == nil {
				return p, true
			}
		}
		return nil, false
	}
	id := c.cfg.ID
	if set := c.GetJSONWebKeys(); set != nil {
		keys := make([]candidateKey, 0, len(set.Keys))
		for _, k := range set.Keys {
			keys = append(keys, candidateKey{kid: k.KeyID, use: k.Use, alg: k.Algorithm, key: k.Key})
		}
		if p, ok := try(keys); ok {
			return p, nil
		}
		return nil, invalidClient("client_assertion's signature does not verify with any %s key of client %q%s.", alg, id, kidNote(h.KeyID))
	}
	uri := c.GetJSONWebKeysURI()
	if uri == "" {
		return nil, invalidClient("Client %q has no keys (jwks or jwks_uri) to verify its client_assertion.", id)
	}
	for _, refresh := range []bool{false, true} {
		set, err := t.remoteKeySet(ctx, uri, refresh)
		if err != nil {
			return nil, invalidClient("The keys of client %q could not be fetched: %v.", id, err)
		}
		keys := make([]candidateKey, 0, len(set.Keys))
		for _, k := range set.Keys {
			if k.IsPublic() {
				keys = append(keys, candidateKey{kid: k.KeyID, use: k.Use, alg: k.Algorithm, key: k.Key})
			}
		}
		if p, ok := try(keys); ok {
			return p, nil
		}
	}
	return nil, invalidClient("client_assertion's signature does not verify with any %s key at client %q's jwks_uri%s.", alg, id, kidNote(h.KeyID))
}

type candidateKey struct {
	kid, use, alg string
	key           any
}

func kidNote(kid string) string {
	if kid == "" {
		return ""
	}
	return fmt.Sprintf(" (kid %q)", kid)
}
