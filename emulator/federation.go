package emulator

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	fjwt "github.com/ory/fosite/token/jwt"
)

// Federation between tenants and trusted issuers.
//
// A tenant lists whom it trusts (TenantConfig.Trust): another tenant of
// the same emulator, whose keys it reads in-process, or an external
// issuer pinned together with its JWKS URL, fetched with the Server's HTTP
// client and cached by the tenant's clock (https, or http on a loopback
// host for tests). Two grants accept a token of a trusted issuer, and only
// of one:
//
//   - the JWT bearer grant (RFC 7523 section 2.1, grant_type
//     urn:ietf:params:oauth:grant-type:jwt-bearer, the token in assertion),
//     requested by a client of this tenant whose grant_types include it;
//   - token exchange (RFC 8693), as the subject_token.
//
// The token must be signed by a key of that issuer (a trusted tenant's
// access token, typ at+jwt, must also be active there: not expired by its
// clock, not revoked); its iss must be the issuer exactly; its aud must
// name this tenant (its issuer or its token endpoint); it must carry sub,
// exp at most one hour ahead and not passed, no nbf or iat in the future
// (30 seconds of leeway, by this tenant's clock), and a jti, which is
// accepted once: a federated token is a single-use grant here. (It is
// consumed when it verifies, even if the request then fails for another
// reason.)
//
// Identity is the pair (issuer, subject). The issued token's sub is
// FederatedSubject(iss, sub), "fed:" and a hash of the pair, which no local
// user or client can have (client ids contain no ':'; configuration
// refuses a user subject starting with "fed:"). The original party appears
// in the act claim (RFC 8693 section 4.1), as {sub, iss} of the issuer
// that named it, with the act chain its token carried nested inside
// (every link given that issuer's iss, its client_id dropped since it is
// not a client of this tenant). Scopes and audiences are this tenant's:
// what the calling client may have, never the foreign token's.
//
// fosite's own RFC 7523 handler (handler/rfc7523) is not used: it wants a
// key per (issuer, subject) from storage, checks times against real time
// rather than the tenant's clock, and has no notion of a trusted tenant or
// of a namespaced subject.

// TrustConfig is one issuer a tenant trusts: a tenant of the same
// emulator, or an external issuer with its pinned JWKS URL.
type TrustConfig struct {
	// Tenant names a tenant of this emulator.
	Tenant string `yaml:"tenant,omitempty" mapstructure:"tenant" json:"tenant,omitempty"`
	// Issuer is an external issuer identifier, exact (https, or http on
	// a loopback host).
	Issuer string `yaml:"issuer,omitempty" mapstructure:"issuer" json:"issuer,omitempty"`
	// JWKSURI is where the external issuer's keys are, pinned.
	JWKSURI string `yaml:"jwks_uri,omitempty" mapstructure:"jwks_uri" json:"jwks_uri,omitempty"`
}

// FederatedSubjectPrefix starts every federated subject.
const FederatedSubjectPrefix = "fed:"

// FederatedSubject is the subject a tenant gives the party sub of issuer
// iss: "fed:" and the first 128 bits of SHA-256 over both,
// base64url-encoded. It is the same at every tenant.
func FederatedSubject(iss, sub string) string {
	h := sha256.New()
	h.Write([]byte("agentsso federated subject v1\x00"))
	h.Write([]byte(iss))
	h.Write([]byte{0})
	h.Write([]byte(sub))
	return FederatedSubjectPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// Reasons a federated token is refused, besides the ErrToken* ones
// (signature, key, algorithm, expiry). errors.Is finds them in the
// token endpoint's error.
var (
	ErrUntrustedIssuer    = errors.New("issuer is not trusted by this tenant")
	ErrFederatedAudience  = errors.New("token audience does not name this tenant")
	ErrFederatedLifetime  = errors.New("token expires too far ahead")
	ErrFederatedReplay    = errors.New("token jti was already used here")
	ErrFederatedClaims    = errors.New("token lacks a required claim")
	ErrFederatedTokenType = errors.New("token typ is not one of an access token or a JWT grant")
)

const (
	// maxFederatedLifetime is how far ahead a federated token's exp may be.
	maxFederatedLifetime = time.Hour
	federationLeeway     = 30 * time.Second
)

var federationAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

// validateFederation checks the trust list and keeps "fed:" subjects
// away from local users. Called by TenantConfig.validate.
func (t *TenantConfig) validateFederation(f string) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	seen := map[string]bool{}
	for i, tr := range t.Trust {
		tf := fmt.Sprintf("%s.trust[%d]", f, i)
		switch {
		case tr.Tenant != "" && tr.Issuer != "":
			bad(tf, "set tenant or issuer, not both")
		case tr.Tenant != "":
			if !nameRE.MatchString(tr.Tenant) {
				bad(tf+".tenant", "%q is not a tenant name", tr.Tenant)
			}
			if tr.Tenant == t.Name {
				bad(tf+".tenant", "a tenant does not trust itself: its own tokens are already accepted")
			}
			if tr.JWKSURI != "" {
				bad(tf+".jwks_uri", "only for an external issuer: a trusted tenant's keys are read in-process")
			}
			if seen["t:"+tr.Tenant] {
				bad(tf+".tenant", "%q is trusted twice", tr.Tenant)
			}
			seen["t:"+tr.Tenant] = true
		case tr.Issuer != "":
			if err := checkIssuerURL(tr.Issuer); err != nil {
				bad(tf+".issuer", "%q: %v", tr.Issuer, err)
			}
			if tr.JWKSURI == "" {
				bad(tf+".jwks_uri", "an external issuer must be pinned with its JWKS URL")
			} else if u, err := url.Parse(tr.JWKSURI); err != nil {
				bad(tf+".jwks_uri", "%q is not a URL", tr.JWKSURI)
			} else if err := checkRemoteURL(u); err != nil {
				bad(tf+".jwks_uri", "%q: %v", tr.JWKSURI, err)
			}
			if seen["i:"+tr.Issuer] {
				bad(tf+".issuer", "%q is trusted twice", tr.Issuer)
			}
			seen["i:"+tr.Issuer] = true
		default:
			bad(tf, "empty: set tenant (a tenant of this emulator) or issuer with jwks_uri")
		}
	}
	for j, u := range t.Users {
		if strings.HasPrefix(u.Subject, FederatedSubjectPrefix) {
			bad(fmt.Sprintf("%s.users[%d].subject", f, j), "%q: subjects starting with %q are reserved for federated identities", u.Subject, FederatedSubjectPrefix)
		}
	}
	return errors.Join(errs...)
}

func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if err := checkRemoteURL(u); err != nil {
		return err
	}
	if u.RawQuery != "" || u.ForceQuery {
		return errors.New("an issuer identifier has no query")
	}
	return nil
}

// federatedIdentity is a verified token of a trusted issuer.
type federatedIdentity struct {
	Issuer   string // the trusted issuer
	Subject  string // its sub
	Act      *Actor // the act chain it carried
	Ctx      *TokenContext
	AuthTime int64
	Expiry   int64
}

// LocalSubject is the subject this tenant gives the party.
func (f *federatedIdentity) LocalSubject() string { return FederatedSubject(f.Issuer, f.Subject) }

// Actor is the act link naming the party, with its chain inside.
func (f *federatedIdentity) Actor() *Actor {
	return &Actor{Subject: f.Subject, Issuer: f.Issuer, Act: foreignChain(f.Act, f.Issuer)}
}

// foreignChain copies an act chain of another issuer: each link gets
// that issuer's iss when it names none, and loses client_id, which would
// name a client of that issuer, not of this tenant.
func foreignChain(a *Actor, iss string) *Actor {
	if a == nil {
		return nil
	}
	out := &Actor{Subject: a.Subject, Issuer: a.Issuer, Act: foreignChain(a.Act, iss)}
	if out.Issuer == "" {
		out.Issuer = iss
	}
	return out
}

// federatedClaims are the claims read from a federated token.
type federatedClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
	AuthTime  *jwt.NumericDate `json:"auth_time"`
	Act       *Actor           `json:"act"`
}

// trustLink finds the trust link for an issuer: a trusted tenant whose
// issuer it is (the tenant returned), or a pinned external issuer.
func (t *tenant) trustLink(iss string) (TrustConfig, *tenant, bool) {
	t.mu.RLock()
	trust := t.cfg.Trust
	t.mu.RUnlock()
	for _, tr := range trust {
		switch {
		case tr.Tenant != "":
			if o := t.srv.tenant(tr.Tenant); o != nil && o != t && o.issuer() == iss {
				return tr, o, true
			}
		case tr.Issuer != "" && tr.Issuer == iss:
			return tr, nil, true
		}
	}
	return TrustConfig{}, nil, false
}

// peekIssuer reads the iss of a compact JWS without verifying it.
func peekIssuer(tok string) (string, *jose.JSONWebSignature, error) {
	if len(tok) > maxTokenSize || strings.Count(tok, ".") != 2 {
		return "", nil, ErrTokenMalformed
	}
	jws, err := jose.ParseSignedCompact(tok, federationAlgs)
	if err != nil {
		if strings.Contains(err.Error(), "algorithm") {
			return "", nil, fmt.Errorf("%w: %v", ErrTokenAlg, err)
		}
		return "", nil, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return "", nil, ErrTokenMalformed
	}
	var c struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return "", nil, fmt.Errorf("%w: claims: %v", ErrTokenMalformed, err)
	}
	return c.Issuer, jws, nil
}

// trustsIssuerOf reports whether tok claims to come from an issuer this
// tenant trusts.
func (t *tenant) trustsIssuerOf(tok string) bool {
	iss, _, err := peekIssuer(tok)
	if err != nil || iss == "" {
		return false
	}
	_, _, ok := t.trustLink(iss)
	return ok
}

// verifyFederated verifies a token of a trusted issuer and consumes its
// jti. Errors wrap ErrUntrustedIssuer, an ErrFederated* or an ErrToken*
// sentinel.
func (t *tenant) verifyFederated(ctx context.Context, tok string) (*federatedIdentity, error) {
	iss, jws, err := peekIssuer(tok)
	if err != nil {
		return nil, err
	}
	link, other, ok := t.trustLink(iss)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUntrustedIssuer, iss)
	}
	h := jws.Signatures[0].Header
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, fmt.Errorf("%w: crit header is not supported", ErrTokenMalformed)
	}
	var payload []byte
	if other != nil {
		// A trusted tenant's access token, active there.
		if _, err := other.verifyJWT(tok, "at+jwt"); err != nil {
			return nil, fmt.Errorf("not an active access token of tenant %s: %w", link.Tenant, err)
		}
		payload = jws.UnsafePayloadWithoutVerification() // verified just now
	} else {
		typ, _ := h.ExtraHeaders["typ"].(string)
		if !federatedTyp(typ) {
			return nil, fmt.Errorf("%w: typ %q", ErrFederatedTokenType, typ)
		}
		payload, err = t.verifyExternal(ctx, link, jws, h)
		if err != nil {
			return nil, err
		}
	}
	var c federatedClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrTokenMalformed, err)
	}
	if c.Issuer != iss {
		return nil, fmt.Errorf("%w: %q", ErrTokenIssuer, c.Issuer)
	}
	if c.Subject == "" || len(c.Subject) > 512 {
		return nil, fmt.Errorf("%w: sub (at most 512 bytes)", ErrFederatedClaims)
	}
	me := t.issuer()
	if !slices.Contains(c.Audience, me) && !slices.Contains(c.Audience, me+"/token") {
		return nil, fmt.Errorf("%w: aud %q, want %s or %s/token", ErrFederatedAudience, []string(c.Audience), me, me)
	}
	now := t.clock.Now()
	if c.Expiry == nil {
		return nil, fmt.Errorf("%w: exp", ErrFederatedClaims)
	}
	exp := c.Expiry.Time()
	if !now.Before(exp.Add(federationLeeway)) {
		return nil, fmt.Errorf("%w: at %s (tenant time %s)", ErrTokenExpired, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if exp.After(now.Add(maxFederatedLifetime + federationLeeway)) {
		return nil, fmt.Errorf("%w: exp %s is more than %s ahead", ErrFederatedLifetime, exp.UTC().Format(time.RFC3339), maxFederatedLifetime)
	}
	if (c.NotBefore != nil && c.NotBefore.Time().After(now.Add(federationLeeway))) || (c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(federationLeeway))) {
		return nil, fmt.Errorf("%w: nbf or iat is in the future (tenant time %s)", ErrTokenNotYet, now.UTC().Format(time.RFC3339))
	}
	if c.ID == "" || len(c.ID) > maxJTILength {
		return nil, fmt.Errorf("%w: jti (at most %d bytes)", ErrFederatedClaims, maxJTILength)
	}
	if d := exchangeActDepth(c.Act); d+1 > maxActDepth {
		return nil, fmt.Errorf("%w: its act chain is %d links deep", ErrLineageTooLong, d)
	}
	if err := t.store.SetClientAssertionJWT(ctx, "fed\x00"+iss+"\x00"+c.ID, exp.Add(federationLeeway)); err != nil {
		return nil, fmt.Errorf("%w: jti %q", ErrFederatedReplay, c.ID)
	}
	id := &federatedIdentity{Issuer: iss, Subject: c.Subject, Act: c.Act, Expiry: exp.Unix()}
	if c.AuthTime != nil {
		id.AuthTime = int64(*c.AuthTime)
	}
	if other != nil {
		// The same claim conventions: the context binding carries over.
		var ac AccessClaims
		if json.Unmarshal(payload, &ac) == nil {
			id.Ctx = ac.Ctx
		}
	}
	return id, nil
}

// federatedTyp accepts the typ of an access token or a JWT used as a
// grant, or none.
func federatedTyp(typ string) bool {
	t := strings.TrimPrefix(strings.ToLower(typ), "application/")
	switch t {
	case "", "jwt", "at+jwt", "oauth-id-jag+jwt":
		return true
	}
	return false
}

// verifyExternal checks the signature with the pinned JWK Set (fetched
// again once when no key fits, as the issuer may have rotated).
func (t *tenant) verifyExternal(ctx context.Context, link TrustConfig, jws *jose.JSONWebSignature, h jose.Header) ([]byte, error) {
	alg := h.Algorithm
	for _, refresh := range []bool{false, true} {
		set, err := t.remoteKeySet(ctx, link.JWKSURI, refresh)
		if err != nil {
			return nil, fmt.Errorf("%w: the keys of %s could not be fetched: %v", ErrTokenKey, link.Issuer, err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || (h.KeyID != "" && k.KeyID != h.KeyID) || (k.Use != "" && k.Use != "sig") {
				continue
			}
			if !federatedKeyFits(k.Key, k.Algorithm, alg) {
				continue
			}
			if p, err := jws.Verify(k.Key); err == nil {
				return p, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no %s key of %s at %s verifies it%s", ErrTokenSignature, alg, link.Issuer, link.JWKSURI, kidNote(h.KeyID))
}

func federatedKeyFits(key any, keyAlg, alg string) bool {
	if pk, ok := key.(ed25519.PublicKey); ok {
		return alg == string(jose.EdDSA) && (keyAlg == "" || keyAlg == alg) && len(pk) == ed25519.PublicKeySize
	}
	return keyFitsAlg(key, keyAlg, alg)
}

// federatedSubject is token exchange's hook (exchange.go): when the
// subject_token claims to come from a trusted issuer, it verifies it and
// returns claims for the exchange: the local subject, the act link, and
// as scope what the calling client may be granted (its required scopes,
// or all of its scopes when the request names some, to be narrowed to
// those). ok is false when the issuer is not trusted: the exchange's own
// error stands.
func (t *tenant) federatedSubject(ctx context.Context, r fosite.AccessRequester, tok string) (_ *AccessClaims, ok bool, _ error) {
	if !t.trustsIssuerOf(tok) {
		return nil, false, nil
	}
	id, err := t.verifyFederated(ctx, tok)
	if err != nil {
		return nil, true, err
	}
	c, _ := r.GetClient().(*client)
	if c == nil {
		return nil, true, fosite.ErrInvalidClient
	}
	scopes := c.cfg.RequiredScopes
	if len(r.GetRequestedScopes()) > 0 {
		scopes = c.GetScopes()
	}
	return &AccessClaims{
		Issuer:   id.Issuer,
		Subject:  id.LocalSubject(),
		Expiry:   id.Expiry,
		Scope:    strings.Join(scopes, " "),
		AuthTime: id.AuthTime,
		Act:      id.Actor(),
		Ctx:      id.Ctx,
	}, true, nil
}

// --- the JWT bearer grant (RFC 7523 section 2.1) ---

// jwtBearerHandler is the JWT bearer authorization grant for tokens of
// trusted issuers. The calling client authenticates (a public client
// sends its client_id) and must have the grant in its grant_types.
type jwtBearerHandler struct {
	t      *tenant
	helper *oauth2.HandleHelper
}

var _ fosite.TokenEndpointHandler = (*jwtBearerHandler)(nil)

func (h *jwtBearerHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantJWTBearer)
}

func (h *jwtBearerHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// HandleTokenEndpointRequest checks the request, then the assertion, and
// prepares the session for the federated party.
func (h *jwtBearerHandler) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	c, _ := r.GetClient().(*client)
	if c == nil {
		return fosite.ErrInvalidClient
	}
	if !c.GetGrantTypes().Has(GrantJWTBearer) {
		return fosite.ErrUnauthorizedClient.WithHintf("The client %q may not use the JWT bearer grant: add %s to its grant_types.", c.cfg.ID, GrantJWTBearer)
	}
	sess, ok := r.GetSession().(*Session)
	if !ok || sess == nil {
		return fosite.ErrServerError.WithHint("Unexpected session type.")
	}
	form := r.GetRequestForm()
	if err := exchangeSingleValued(form, "assertion", "scope"); err != nil {
		return err
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return fosite.ErrInvalidRequest.WithHint("The assertion parameter is missing: send the trusted issuer's JWT (RFC 7523 section 2.1).")
	}
	var scopes []string
	for _, s := range r.GetRequestedScopes() {
		if !slices.Contains(c.GetScopes(), s) {
			return fosite.ErrInvalidScope.WithHintf("The client %q may not request scope %q.", c.cfg.ID, s)
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	if len(scopes) == 0 {
		scopes = c.cfg.RequiredScopes
	}
	aud := r.GetRequestedAudience()
	if err := audienceStrategy(c.GetAudience(), aud); err != nil {
		return err
	}
	if len(aud) == 0 {
		aud = c.cfg.DefaultAudience
	}
	if len(aud) == 0 {
		return ErrInvalidTarget.WithHintf("Name a resource or audience: client %s has no default audience.", c.cfg.ID)
	}
	id, err := h.t.verifyFederated(ctx, assertion)
	if err != nil {
		return fosite.ErrInvalidGrant.WithHintf("The assertion is not acceptable: %v.", err).WithWrap(err)
	}
	sub := id.LocalSubject()
	sess.SetSubject(sub)
	sess.ClientID = c.cfg.ID
	sess.Act = id.Actor()
	sess.Ctx = id.Ctx
	sess.Cnf = nil
	if id.AuthTime != 0 {
		sess.Claims = &fjwt.IDTokenClaims{Subject: sub, AuthTime: time.Unix(id.AuthTime, 0).UTC()}
	}
	r.SetRequestedAudience(aud)
	for _, a := range aud {
		r.GrantAudience(a)
	}
	for _, s := range scopes {
		r.GrantScope(s)
	}
	return nil
}

// PopulateTokenEndpointResponse issues the access token (no refresh
// token: the client presents a new assertion).
func (h *jwtBearerHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	_, err := h.helper.IssueAccessToken(ctx, h.t.lifetimes(r.GetClient().GetID()).AccessToken, r, resp)
	return err
}

// newJWTBearerHandler builds the JWT bearer grant for tenant.build.
func (t *tenant) newJWTBearerHandler(strategy *tokenStrategy, cfg *fosite.Config) *jwtBearerHandler {
	return &jwtBearerHandler{t: t, helper: &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: t.store, Config: cfg}}
}
