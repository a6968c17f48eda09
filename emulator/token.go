package emulator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	fjwt "github.com/ory/fosite/token/jwt"
)

// Session is the fosite session of every agentsso request. Beyond the
// OpenID Connect session (ID token claims, subject) it carries what the
// access token will say about actors, binding and lineage.
type Session struct {
	*openid.DefaultSession
	// ClientID of the client the grant was made to.
	ClientID string `json:"client_id,omitempty"`
	// Act is the acting chain (token exchange).
	Act *Actor `json:"act,omitempty"`
	// MayAct is carried into the token when configured for the subject.
	MayAct *Actor `json:"may_act,omitempty"`
	// Cnf binds the token to a key or certificate.
	Cnf map[string]any `json:"cnf,omitempty"`
	// Ctx binds the token to a context.
	Ctx *TokenContext `json:"ctx,omitempty"`
	// GrantChain lists the grants of the tokens this one descends from.
	GrantChain []string `json:"grant_chain,omitempty"`
	// Lifetime, when set, is the access token lifetime (token exchange
	// caps it at the subject token's remaining life).
	Lifetime time.Duration `json:"lifetime,omitempty"`
	// Typ overrides the access token's typ header (at+jwt).
	Typ string `json:"typ,omitempty"`
	// Issued is the last access token issued on this request, for the
	// audit event (never the token itself).
	Issued *AccessClaims `json:"-"`
}

// NewSession returns an empty session.
func NewSession() *Session {
	return &Session{DefaultSession: &openid.DefaultSession{
		Claims:  &fjwt.IDTokenClaims{},
		Headers: &fjwt.Headers{},
	}}
}

// Clone implements fosite.Session.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	if s.DefaultSession != nil {
		c.DefaultSession = s.DefaultSession.Clone().(*openid.DefaultSession)
	}
	return &c
}

// tokenStrategy issues RFC 9068 JWT access tokens signed by the tenant's
// active key through the custody seam, and leaves codes and refresh
// tokens to fosite's HMAC strategy (they are opaque and stored).
type tokenStrategy struct {
	*oauth2.HMACSHAStrategy
	t *tenant
}

var _ oauth2.CoreStrategy = (*tokenStrategy)(nil)

// AccessTokenSignature implements oauth2.AccessTokenStrategy.
func (s *tokenStrategy) AccessTokenSignature(_ context.Context, token string) string {
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		return token[i+1:]
	}
	return ""
}

// GenerateAccessToken implements oauth2.AccessTokenStrategy.
func (s *tokenStrategy) GenerateAccessToken(_ context.Context, r fosite.Requester) (string, string, error) {
	sess, ok := r.GetSession().(*Session)
	if !ok {
		return "", "", errors.New("emulator: unexpected session type")
	}
	aud := tokenAudience(r) // the grant's, narrowed by resource (authorize.go)
	if len(aud) == 0 {
		return "", "", ErrInvalidTarget.WithHint("No resource or audience was requested and the client has no default audience.")
	}
	clientID := r.GetClient().GetID()
	now := s.t.clock.Now()
	lifetime := sess.Lifetime
	if lifetime == 0 {
		lifetime = s.t.lifetimes(clientID).AccessToken
	}
	lifetime = s.t.capLifetime(clientID, r.GetGrantedScopes(), lifetime) // lifetime.go
	sub := sess.GetSubject()
	if sub == "" {
		sub = clientID
	}
	c := AccessClaims{
		Issuer:     s.t.issuer(),
		Subject:    sub,
		Audience:   Audience(aud),
		IssuedAt:   now.Unix(),
		Expiry:     now.Add(lifetime).Unix(),
		ID:         newID(),
		ClientID:   clientID,
		Scope:      strings.Join(r.GetGrantedScopes(), " "),
		Act:        sess.Act,
		MayAct:     sess.MayAct,
		Cnf:        sess.Cnf,
		Ctx:        sess.Ctx,
		GrantID:    r.GetID(),
		GrantChain: sess.GrantChain,
	}
	if sess.Claims != nil && !sess.Claims.AuthTime.IsZero() {
		c.AuthTime = sess.Claims.AuthTime.Unix()
	}
	// expires_in is computed by fosite against real time.
	sess.SetExpiresAt(fosite.AccessToken, time.Now().UTC().Add(lifetime))
	typ := sess.Typ
	if typ == "" {
		typ = "at+jwt"
	}
	s.t.rev.issued(&c) // see revocations
	tok, err := s.t.signClaims(typ, &c)
	if err != nil {
		return "", "", err
	}
	sess.Issued = &c
	return tok, s.AccessTokenSignature(context.Background(), tok), nil
}

// ValidateAccessToken implements oauth2.AccessTokenStrategy.
func (s *tokenStrategy) ValidateAccessToken(_ context.Context, _ fosite.Requester, token string) error {
	_, err := s.t.verifyAccessToken(token)
	return err
}

// signClaims signs any claims with the tenant's active key.
func (t *tenant) signClaims(typ string, claims any) (string, error) {
	k, err := t.activeKey()
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return k.sign(typ, payload)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Token verification errors. Every one is a reason a token is not active.
var (
	ErrTokenMalformed = errors.New("token is not a compact JWS")
	ErrTokenAlg       = errors.New("token algorithm is not allowed")
	ErrTokenKey       = errors.New("token kid is not a key of this tenant")
	ErrTokenSignature = errors.New("token signature does not verify")
	ErrTokenTyp       = errors.New("token typ is not at+jwt")
	ErrTokenIssuer    = errors.New("token issuer is not this tenant")
	ErrTokenExpired   = errors.New("token has expired")
	ErrTokenNotYet    = errors.New("token is not valid yet")
	ErrTokenInactive  = errors.New("token is inactive")
)

var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA}

// maxTokenSize bounds what the verifier will parse.
const maxTokenSize = 16 << 10

// verifyAccessToken validates an access token issued by this tenant: the
// signature by one of its keys, typ, issuer, time by the tenant's clock,
// then the revocation lists. It returns the claims, or an error wrapping
// one of the ErrToken* sentinels.
func (t *tenant) verifyAccessToken(tok string) (*AccessClaims, error) {
	return t.verifyJWT(tok, "at+jwt")
}

func (t *tenant) verifyJWT(tok, wantTyp string) (*AccessClaims, error) {
	if len(tok) > maxTokenSize || strings.Count(tok, ".") != 2 {
		return nil, ErrTokenMalformed
	}
	jws, err := jose.ParseSigned(tok, allowedAlgs)
	if err != nil {
		if strings.Contains(err.Error(), "algorithm") {
			return nil, fmt.Errorf("%w: %v", ErrTokenAlg, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, ErrTokenMalformed
	}
	h := jws.Signatures[0].Header
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, fmt.Errorf("%w: crit header is not supported", ErrTokenMalformed)
	}
	k := t.key(h.KeyID)
	if k == nil {
		return nil, fmt.Errorf("%w: kid %q", ErrTokenKey, h.KeyID)
	}
	if h.Algorithm != k.Alg {
		return nil, fmt.Errorf("%w: %s with a %s key", ErrTokenAlg, h.Algorithm, k.Alg)
	}
	payload, err := jws.Verify(k.Signer.Public())
	if err != nil {
		return nil, ErrTokenSignature
	}
	if wantTyp != "" {
		typ, _ := h.ExtraHeaders["typ"].(string)
		if !strings.EqualFold(typ, wantTyp) && !strings.EqualFold(typ, "application/"+wantTyp) {
			return nil, fmt.Errorf("%w: typ %q", ErrTokenTyp, typ)
		}
	}
	var c AccessClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrTokenMalformed, err)
	}
	if c.Issuer != t.issuer() {
		return nil, fmt.Errorf("%w: %q", ErrTokenIssuer, c.Issuer)
	}
	now := t.clock.Now().Unix()
	if c.Expiry == 0 || now >= c.Expiry {
		return &c, ErrTokenExpired
	}
	if c.NotBefore > now || c.IssuedAt > now+60 {
		return &c, ErrTokenNotYet
	}
	if reason := t.rev.tokenInactive(&c, k.KID); reason != "" {
		return &c, fmt.Errorf("%w: %s", ErrTokenInactive, reason)
	}
	return &c, nil
}
