package emulator

import (
	"context"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
)

// store is a tenant's fosite storage. It keeps what must be looked up by
// handle (authorization codes, PKCE and OpenID requests, refresh tokens,
// client assertion jtis) and nothing per access token: access tokens are
// self-contained JWTs, checked against the revocation lists instead.
// Everything stored expires, by the tenant's clock, and is pruned.
type store struct {
	t *tenant

	mu         sync.Mutex
	codes      map[string]codeEntry
	pkce       map[string]fosite.Requester
	oidc       map[string]oidcEntry
	refresh    map[string]refreshEntry
	assertions map[string]time.Time
	lastPrune  time.Time
}

type codeEntry struct {
	req     fosite.Requester
	used    bool
	expires time.Time
}

type oidcEntry struct {
	req     fosite.Requester
	expires time.Time
}

type refreshEntry struct {
	req     fosite.Requester
	rotated bool
	expires time.Time
}

var (
	_ fosite.Storage                     = (*store)(nil)
	_ oauth2.CoreStorage                 = (*store)(nil)
	_ oauth2.TokenRevocationStorage      = (*store)(nil)
	_ pkce.PKCERequestStorage            = (*store)(nil)
	_ openid.OpenIDConnectRequestStorage = (*store)(nil)
)

func newStore(t *tenant) *store {
	s := &store{t: t}
	s.reset()
	return s
}

func (s *store) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes = map[string]codeEntry{}
	s.pkce = map[string]fosite.Requester{}
	s.oidc = map[string]oidcEntry{}
	s.refresh = map[string]refreshEntry{}
	s.assertions = map[string]time.Time{}
}

// pruneLocked drops expired entries, at most once a minute of tenant time.
func (s *store) pruneLocked(now time.Time) {
	if now.Sub(s.lastPrune) < time.Minute {
		return
	}
	s.lastPrune = now
	for k, v := range s.codes {
		if now.After(v.expires) {
			delete(s.codes, k)
			delete(s.pkce, k)
		}
	}
	for k, v := range s.refresh {
		if now.After(v.expires) {
			delete(s.refresh, k)
		}
	}
	for k, v := range s.oidc {
		if now.After(v.expires) {
			delete(s.oidc, k)
		}
	}
	for k, v := range s.assertions {
		if now.After(v) {
			delete(s.assertions, k)
		}
	}
}

// GetClient implements fosite.ClientManager. A disabled or unknown client
// is not found, so it cannot authenticate.
func (s *store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c := s.t.client(id)
	if c == nil && isURLClientID(id) {
		// A client ID metadata document, when the tenant accepts them
		// (cimd.go); a document that cannot be used is invalid_client.
		mc, err := s.t.metadataClient(ctx, id)
		if err != nil {
			return nil, err
		}
		c = mc
	}
	if c == nil || c.cfg.Disabled {
		return nil, fosite.ErrNotFound.WithHintf("Client %q is unknown or disabled.", id)
	}
	return c, nil
}

// ClientAssertionJWTValid implements fosite.ClientManager: a jti seen
// before and not yet expired is a replay.
func (s *store) ClientAssertionJWTValid(_ context.Context, jti string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.assertions[jti]; ok && s.t.clock.Now().Before(exp) {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT implements fosite.ClientManager.
func (s *store) SetClientAssertionJWT(_ context.Context, jti string, exp time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.t.clock.Now()
	s.pruneLocked(now)
	if old, ok := s.assertions[jti]; ok && now.Before(old) {
		return fosite.ErrJTIKnown
	}
	// Keep the jti at least a minute, even for an assertion that claims a
	// shorter life, so that clock games cannot reopen the replay window.
	if exp.Before(now.Add(time.Minute)) {
		exp = now.Add(time.Minute)
	}
	s.assertions[jti] = exp
	return nil
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *store) CreateAuthorizeCodeSession(_ context.Context, code string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.t.clock.Now()
	s.pruneLocked(now)
	s.codes[code] = codeEntry{req: req, expires: now.Add(s.t.lifetimes(req.GetClient().GetID()).Code)}
	return nil
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. An
// expired code (by the tenant's clock) is not found: invalid_grant.
func (s *store) GetAuthorizeCodeSession(_ context.Context, code string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[code]
	if !ok || s.t.clock.Now().After(e.expires) {
		return nil, fosite.ErrNotFound
	}
	if e.used {
		return e.req, fosite.ErrInvalidatedAuthorizeCode
	}
	return e.req, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *store) InvalidateAuthorizeCodeSession(_ context.Context, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[code]
	if !ok {
		return fosite.ErrNotFound
	}
	e.used = true
	s.codes[code] = e
	return nil
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage. Access
// tokens are self-contained: nothing is stored.
func (s *store) CreateAccessTokenSession(context.Context, string, fosite.Requester) error { return nil }

// GetAccessTokenSession implements oauth2.AccessTokenStorage. Nothing is
// stored per access token; agentsso validates the JWT itself.
func (s *store) GetAccessTokenSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *store) DeleteAccessTokenSession(context.Context, string) error { return nil }

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *store) CreateRefreshTokenSession(_ context.Context, sig string, _ string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.t.clock.Now()
	s.pruneLocked(now)
	s.refresh[sig] = refreshEntry{req: req, expires: now.Add(s.t.lifetimes(req.GetClient().GetID()).RefreshToken)}
	return nil
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A rotated
// refresh token, or one whose grant or client was revoked, is returned
// with fosite.ErrInactiveToken: fosite then treats its use as reuse and
// revokes the whole family.
func (s *store) GetRefreshTokenSession(_ context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	e, ok := s.refresh[sig]
	s.mu.Unlock()
	if !ok || s.t.clock.Now().After(e.expires) {
		return nil, fosite.ErrNotFound
	}
	if e.rotated {
		return e.req, fosite.ErrInactiveToken
	}
	if reason := s.t.rev.grantInactive(e.req.GetID(), e.req.GetRequestedAt(), e.req.GetClient().GetID()); reason != "" {
		return e.req, fosite.ErrInactiveToken
	}
	return e.req, nil
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *store) DeleteRefreshTokenSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refresh, sig)
	return nil
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: the used
// refresh token stays known, as rotated, so that its reuse is detected.
func (s *store) RotateRefreshToken(_ context.Context, _ string, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.refresh[sig]; ok {
		e.rotated = true
		s.refresh[sig] = e
	}
	return nil
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: it
// revokes the whole grant (the refresh token family and every access
// token issued from it or exchanged from those).
func (s *store) RevokeRefreshToken(_ context.Context, requestID string) error {
	s.t.rev.revokeGrant(requestID, s.t.clock.Now(), "refresh token family revoked")
	return nil
}

// RevokeRefreshTokenMaybeGracePeriod implements the optional interface
// fosite uses on rotation.
func (s *store) RevokeRefreshTokenMaybeGracePeriod(ctx context.Context, requestID string, sig string) error {
	return s.RotateRefreshToken(ctx, requestID, sig)
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage. fosite calls
// it with a grant (request) id on refresh-token reuse and on revocation of
// a refresh token: both revoke the grant.
func (s *store) RevokeAccessToken(_ context.Context, requestID string) error {
	s.t.rev.revokeGrant(requestID, s.t.clock.Now(), "grant revoked")
	return nil
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *store) GetPKCERequestSession(_ context.Context, sig string, _ fosite.Session) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.pkce[sig]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return r, nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *store) CreatePKCERequestSession(_ context.Context, sig string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkce[sig] = req
	return nil
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *store) DeletePKCERequestSession(_ context.Context, sig string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pkce, sig)
	return nil
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *store) CreateOpenIDConnectSession(_ context.Context, code string, req fosite.Requester) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.t.clock.Now()
	s.oidc[code] = oidcEntry{req: req, expires: now.Add(s.t.lifetimes(req.GetClient().GetID()).Code)}
	return nil
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *store) GetOpenIDConnectSession(_ context.Context, code string, _ fosite.Requester) (fosite.Requester, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.oidc[code]
	if !ok {
		return nil, fosite.ErrNotFound
	}
	return e.req, nil
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *store) DeleteOpenIDConnectSession(_ context.Context, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.oidc, code)
	return nil
}
