package emulator

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/cryptosigner"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/token/jwt"

	"github.com/agentsso/agentsso/softhsm"
)

// tenant is one issuer: its configuration, clients, users, keys, clock,
// revocation lists, fosite provider and storage.
type tenant struct {
	name  string
	srv   *Server
	clock *Clock
	store *store
	rev   *revocations

	mu      sync.RWMutex
	cfg     TenantConfig // as configured or changed through the admin API
	clients map[string]*client
	users   map[string]*UserConfig // by username

	rt atomic.Pointer[tenantRuntime]

	keyMu     sync.RWMutex
	keys      []*signingKey // published and usable, oldest first
	hidden    map[string]bool
	jwksGen   atomic.Uint64
	jwksCache atomic.Pointer[jwksCacheEntry]
	// secret keys fosite's HMAC strategy (codes, refresh tokens); it is
	// kept across rebuilds so that changing the public base URL or
	// lifetimes does not invalidate outstanding codes and refresh tokens.
	secret []byte

	faults faultSet

	docs clientDocs // fetched client ID metadata documents and JWK Sets (cimd.go)

	dpop dpopState // DPoP replay cache, nonces and proof record (dpop.go)

	devices deviceCodes // RFC 8628 device authorization requests (device.go)
}

// tenantRuntime is what depends on the public base URL; it is swapped as
// a whole when that changes.
type tenantRuntime struct {
	issuer   string
	provider *fosite.Fosite
}

// client is a registered client as fosite sees it, with agentsso's policy.
type client struct {
	*fosite.DefaultOpenIDConnectClient
	cfg ClientConfig
}

func (t *tenant) issuer() string           { return t.rt.Load().issuer }
func (t *tenant) provider() *fosite.Fosite { return t.rt.Load().provider }

func (t *tenant) client(id string) *client {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.clients[id]
}

func (t *tenant) user(username string) *UserConfig {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.users[username]
}

// lifetimes are the client's effective lifetimes (the tenant's if the
// client is unknown).
func (t *tenant) lifetimes(clientID string) LifetimeConfig {
	if c := t.client(clientID); c != nil {
		return c.cfg.Lifetimes
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cfg.Lifetimes
}

// maxLifetime is the longest any token of the tenant may live: how long a
// revocation record must be kept.
func (t *tenant) maxLifetime() time.Duration {
	t.mu.RLock()
	defer t.mu.RUnlock()
	m := max(t.cfg.Lifetimes.AccessToken, t.cfg.Lifetimes.RefreshToken)
	for _, c := range t.clients {
		m = max(m, c.cfg.Lifetimes.AccessToken, c.cfg.Lifetimes.RefreshToken)
	}
	return m + time.Hour
}

func newTenant(ctx context.Context, s *Server, cfg TenantConfig) (*tenant, error) {
	t := &tenant{name: cfg.Name, srv: s, clock: NewClock(s.now)}
	t.store = newStore(t)
	t.rev = newRevocations(t.maxLifetime)
	if err := t.setConfig(cfg); err != nil {
		return nil, err
	}
	if err := t.loadKeys(ctx); err != nil {
		return nil, err
	}
	t.build(s.baseURL())
	return t, nil
}

// setConfig installs clients and users from cfg.
func (t *tenant) setConfig(cfg TenantConfig) error {
	clients := make(map[string]*client, len(cfg.Clients))
	for i := range cfg.Clients {
		c, err := t.newClient(cfg.Clients[i])
		if err != nil {
			return err
		}
		clients[c.cfg.ID] = c
	}
	users := make(map[string]*UserConfig, len(cfg.Users))
	for i := range cfg.Users {
		u := cfg.Users[i]
		users[u.Username] = &u
	}
	t.mu.Lock()
	t.cfg = cfg
	t.clients = clients
	t.users = users
	t.mu.Unlock()
	return nil
}

func (t *tenant) newClient(cc ClientConfig) (*client, error) {
	if cc.AuthMethod != "none" && cc.AuthMethod != "private_key_jwt" && !isMTLSMethod(cc.AuthMethod) && cc.Secret == "" {
		cc.Secret = t.srv.secret(t.name, cc.ID)
	}
	scopes := slices.Concat(cc.RequiredScopes, cc.OptionalScopes)
	rt := []string{"code"}
	fc := &fosite.DefaultOpenIDConnectClient{
		DefaultClient: &fosite.DefaultClient{
			ID:            cc.ID,
			Secret:        []byte(cc.Secret),
			RedirectURIs:  cc.RedirectURIs,
			GrantTypes:    cc.GrantTypes,
			ResponseTypes: rt,
			Scopes:        scopes,
			Audience:      cc.Audiences,
			Public:        cc.AuthMethod == "none",
		},
		JSONWebKeysURI:                    cc.JWKSURI,
		TokenEndpointAuthMethod:           cc.AuthMethod,
		TokenEndpointAuthSigningAlgorithm: cc.AssertionAlg,
	}
	if cc.JWKS != "" {
		var set josev3.JSONWebKeySet
		if err := json.Unmarshal([]byte(cc.JWKS), &set); err != nil {
			return nil, &ConfigError{Field: "clients[" + cc.ID + "].jwks", Msg: "not a JWK Set: " + err.Error()}
		}
		for i := range set.Keys {
			if set.Keys[i].Use == "" {
				set.Keys[i].Use = "sig"
			}
			if !set.Keys[i].IsPublic() {
				return nil, &ConfigError{Field: "clients[" + cc.ID + "].jwks", Msg: "contains a private key: register only public keys"}
			}
		}
		fc.JSONWebKeys = &set
	}
	return &client{DefaultOpenIDConnectClient: fc, cfg: cc}, nil
}

// build (re)creates the fosite provider for the given public base URL.
// Handlers are wired explicitly, without compose.Compose's interface{}
// plumbing, so that each one's dependencies are visible here.
func (t *tenant) build(base string) {
	issuer := base + "/t/" + t.name
	t.mu.RLock()
	lt := t.cfg.Lifetimes
	t.mu.RUnlock()
	if t.secret == nil {
		t.secret = make([]byte, 32)
		_, _ = rand.Read(t.secret)
	}
	secret := t.secret
	cfg := &fosite.Config{
		AccessTokenLifespan:            lt.AccessToken,
		RefreshTokenLifespan:           lt.RefreshToken,
		AuthorizeCodeLifespan:          lt.Code,
		IDTokenLifespan:                lt.IDToken,
		IDTokenIssuer:                  issuer,
		AccessTokenIssuer:              issuer,
		TokenURL:                       issuer + "/token",
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       audienceStrategy,
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		ClientSecretsHasher:            plainHasher{},
		GlobalSecret:                   secret,
		TokenEntropy:                   32,
		MinParameterEntropy:            fosite.MinParameterEntropy,
		RefreshTokenScopes:             []string{"offline_access", "offline"},
		SendDebugMessagesToClients:     false,
	}
	hmacStrategy := compose.NewOAuth2HMACStrategy(cfg)
	strategy := &tokenStrategy{HMACSHAStrategy: hmacStrategy, t: t}
	idSigner := &jwt.DefaultSigner{GetPrivateKey: t.idTokenKey}
	// ID tokens by the tenant's key and clock (authorize.go).
	idStrategy := &idTokenStrategy{t: t}

	code := &oauth2.AuthorizeExplicitGrantHandler{
		AccessTokenStrategy:    strategy,
		RefreshTokenStrategy:   strategy,
		AuthorizeCodeStrategy:  strategy,
		CoreStorage:            t.store,
		TokenRevocationStorage: t.store,
		Config:                 cfg,
	}
	cc := &oauth2.ClientCredentialsGrantHandler{
		HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: t.store, Config: cfg},
		Config:       cfg,
	}
	refresh := &oauth2.RefreshTokenGrantHandler{
		AccessTokenStrategy:    strategy,
		RefreshTokenStrategy:   strategy,
		TokenRevocationStorage: t.store,
		Config:                 cfg,
	}
	oidcExplicit := &openid.OpenIDConnectExplicitHandler{
		OpenIDConnectRequestStorage:   t.store,
		IDTokenHandleHelper:           &openid.IDTokenHandleHelper{IDTokenStrategy: idStrategy},
		OpenIDConnectRequestValidator: openid.NewOpenIDConnectRequestValidator(idSigner, cfg),
		Config:                        cfg,
	}
	oidcRefresh := &openid.OpenIDConnectRefreshHandler{
		IDTokenHandleHelper: &openid.IDTokenHandleHelper{IDTokenStrategy: idStrategy},
		Config:              cfg,
	}
	pk := &pkce.Handler{AuthorizeCodeStrategy: strategy, Storage: t.store, Config: cfg}
	exchange := &exchangeHandler{t: t, helper: &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: t.store, Config: cfg}}

	cfg.AuthorizeEndpointHandlers.Append(code)
	cfg.AuthorizeEndpointHandlers.Append(oidcExplicit)
	cfg.AuthorizeEndpointHandlers.Append(pk)
	cfg.TokenEndpointHandlers.Append(code)
	cfg.TokenEndpointHandlers.Append(cc)
	cfg.TokenEndpointHandlers.Append(refresh)
	cfg.TokenEndpointHandlers.Append(oidcExplicit)
	cfg.TokenEndpointHandlers.Append(oidcRefresh)
	cfg.TokenEndpointHandlers.Append(pk)
	cfg.TokenEndpointHandlers.Append(exchange)
	cfg.TokenEndpointHandlers.Append(t.newDeviceHandler(strategy, cfg))    // device.go: RFC 8628
	cfg.TokenEndpointHandlers.Append(t.newJWTBearerHandler(strategy, cfg)) // federation.go: RFC 7523

	provider := &fosite.Fosite{Store: t.store, Config: cfg}
	// private_key_jwt by the tenant clock, aud = issuer or token endpoint,
	// client ID metadata documents (assertion.go).
	cfg.ClientAuthenticationStrategy = t.clientAuthentication(provider, issuer)
	t.rt.Store(&tenantRuntime{issuer: issuer, provider: provider})
}

// audienceStrategy allows exactly the client's registered audiences and
// answers invalid_target (RFC 8707) for any other.
func audienceStrategy(haystack []string, needle []string) error {
	for _, n := range needle {
		if !slices.Contains(haystack, n) {
			return ErrInvalidTarget.WithHintf("The client may not request a token for audience %q.", n)
		}
	}
	return nil
}

// plainHasher compares client secrets in constant time, unhashed. fosite's
// default is bcrypt at cost 12, which would cap the emulator at a few
// tokens per second; an emulator's secrets are test fixtures, documented
// in the README, so there is nothing for a hash to protect.
type plainHasher struct{}

func (plainHasher) Compare(_ context.Context, hash, data []byte) error {
	if len(hash) == 0 || subtle.ConstantTimeCompare(hash, data) != 1 {
		return errors.New("client secret mismatch")
	}
	return nil
}

func (plainHasher) Hash(_ context.Context, data []byte) ([]byte, error) { return data, nil }

// ErrInvalidTarget is RFC 8707's error for a resource or audience the
// server will not issue a token for. fosite has none.
var ErrInvalidTarget = &fosite.RFC6749Error{
	ErrorField:       "invalid_target",
	DescriptionField: "The requested resource or audience is invalid, unknown, or not allowed for this client.",
	CodeField:        400,
}

// --- keys ---

// loadKeys reads the tenant's keys from the key store, creating one if it
// has none.
func (t *tenant) loadKeys(ctx context.Context) error {
	ks, err := t.srv.keys.List(ctx, t.name)
	if err != nil {
		return fmt.Errorf("emulator: tenant %s: list keys: %w", t.name, err)
	}
	if len(ks) == 0 {
		if rec, err := t.srv.recordedKids(t.name); err != nil {
			return err
		} else if len(rec) > 0 {
			return keysGoneError(t.name, t.srv.keys.Backend(), rec, t.srv.kidsPath())
		}
		t.mu.RLock()
		alg := t.cfg.Alg
		t.mu.RUnlock()
		k, err := t.srv.keys.Create(ctx, t.name, alg)
		if err != nil {
			return fmt.Errorf("emulator: tenant %s: create %s key in %s backend: %w", t.name, alg, t.srv.keys.Backend(), err)
		}
		ks = []softhsm.Key{k}
	}
	var sks []*signingKey
	for _, k := range ks {
		sk, err := newSigningKey(k)
		if err != nil {
			return err
		}
		sks = append(sks, sk)
	}
	t.keyMu.Lock()
	t.keys = sks
	t.hidden = map[string]bool{}
	kids := kidsOf(sks)
	t.keyMu.Unlock()
	t.invalidateJWKS()
	t.srv.recordKids(t.name, kids)
	return nil
}

// activeKey is the newest key that is not withdrawn.
func (t *tenant) activeKey() (*signingKey, error) {
	t.keyMu.RLock()
	defer t.keyMu.RUnlock()
	for i := len(t.keys) - 1; i >= 0; i-- {
		if !t.rev.kidWithdrawn(t.keys[i].KID) {
			return t.keys[i], nil
		}
	}
	return nil, fmt.Errorf("emulator: tenant %s has no usable signing key: rotate to create one", t.name)
}

// key finds a key by kid among the tenant's keys (withdrawn ones too).
func (t *tenant) key(kid string) *signingKey {
	t.keyMu.RLock()
	defer t.keyMu.RUnlock()
	for _, k := range t.keys {
		if k.KID == kid {
			return k
		}
	}
	return nil
}

// jwks is the published JWK Set: every key not withdrawn and not hidden.
func (t *tenant) jwks() []byte {
	gen := t.jwksGen.Load()
	if e := t.jwksCache.Load(); e != nil && e.gen == gen {
		return e.body
	}
	t.keyMu.RLock()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range t.keys {
		if t.hidden[k.KID] || t.rev.kidWithdrawn(k.KID) {
			continue
		}
		set.Keys = append(set.Keys, k.PublicJWK())
	}
	t.keyMu.RUnlock()
	b, _ := json.Marshal(set)
	t.jwksCache.Store(&jwksCacheEntry{gen: gen, body: b})
	return b
}

// jwksCacheEntry is a computed JWK Set and the generation it was computed at;
// an entry of an older generation is never served.
type jwksCacheEntry struct {
	gen  uint64
	body []byte
}

// invalidateJWKS makes the next jwks() recompute the set.
func (t *tenant) invalidateJWKS() { t.jwksGen.Add(1) }

func (t *tenant) idTokenKey(context.Context) (interface{}, error) {
	k, err := t.activeKey()
	if err != nil {
		return nil, err
	}
	return &josev3.JSONWebKey{Key: cryptosigner.Opaque(k.Signer), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}, nil
}
