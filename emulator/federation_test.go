package emulator_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

const (
	fedJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	fedPartner   = "https://idp.partner.test"
	fedCRM       = "https://mcp.globex.test/crm"
)

// fedAgent is acme's client that presents federated tokens.
var fedAgent = exchCred{id: "partner-agent", secret: "partner-agent-secret"}

// fedIssuer is an external issuer: an ES256 key whose JWK Set is served
// on 127.0.0.1.
type fedIssuer struct {
	key     *ecdsa.PrivateKey
	jwksURI string
}

func newFedIssuer(tb testing.TB) *fedIssuer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "p1", Algorithm: "ES256", Use: "sig"}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})}}
	srv.Start()
	tb.Cleanup(srv.Close)
	return &fedIssuer{key: key, jwksURI: srv.URL + "/jwks"}
}

// sign signs claims with key (the issuer's when nil) as kid p1.
func (f *fedIssuer) sign(tb testing.TB, claims map[string]any, typ string, key any) string {
	tb.Helper()
	if key == nil {
		key = f.key
	}
	opts := (&jose.SignerOptions{}).WithHeader("kid", "p1")
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	alg := jose.ES256
	if _, ok := key.([]byte); ok {
		alg = jose.HS256
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// fedConfig is the default configuration where acme trusts globex (when
// trustGlobex) and the partner issuer (when partner is not nil), with a
// client that uses the JWT bearer grant, and a globex user whose subject
// is the same as acme's alice.
func fedConfig(trustGlobex bool, partner *fedIssuer) *emulator.Config {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants {
		tc := &cfg.Tenants[i]
		switch tc.Name {
		case "acme":
			if trustGlobex {
				tc.Trust = append(tc.Trust, emulator.TrustConfig{Tenant: "globex"})
			}
			if partner != nil {
				tc.Trust = append(tc.Trust, emulator.TrustConfig{Issuer: fedPartner, JWKSURI: partner.jwksURI})
			}
			tc.Clients = append(tc.Clients, emulator.ClientConfig{
				ID: "partner-agent", Kind: "agent", Secret: "partner-agent-secret",
				GrantTypes:        []string{fedJWTBearer, exchGrant},
				RequiredScopes:    []string{"zendesk:tickets:read"},
				OptionalScopes:    []string{"zendesk:tickets:write"},
				Audiences:         []string{exchZendesk},
				DefaultAudience:   []string{exchZendesk},
				ExchangeAudiences: []string{exchZendesk},
			})
		case "globex":
			tc.Clients = append(tc.Clients, emulator.ClientConfig{
				ID: "globex-tv", Kind: "agent", AuthMethod: "none",
				GrantTypes:      []string{devGrant},
				RequiredScopes:  []string{"crm:read"},
				Audiences:       []string{fedCRM},
				DefaultAudience: []string{fedCRM},
			})
			tc.Users = append(tc.Users, emulator.UserConfig{Username: "alice", Subject: "user-alice", Name: "Alice of Globex"})
		}
	}
	return &cfg
}

// fedStart starts the emulator and lets globex's clients ask for tokens
// with acme as their audience (known once the port is).
func fedStart(tb testing.TB, cfg *emulator.Config) *emulatortest.Env {
	tb.Helper()
	env := emulatortest.New(tb, cfg)
	for _, id := range []string{"sales-bot", "globex-tv"} {
		cc, err := env.Server.Client("globex", id)
		if err != nil {
			tb.Fatal(err)
		}
		cc.Audiences = append(cc.Audiences, env.Issuer("acme"))
		if _, err := env.Server.UpsertClient("globex", cc); err != nil {
			tb.Fatal(err)
		}
	}
	return env
}

// fedGlobexUserToken is a globex access token for globex's alice
// (subject user-alice) with acme as its audience, by the device grant.
func fedGlobexUserToken(tb testing.TB, env *emulatortest.Env) string {
	tb.Helper()
	tv := exchCred{id: "globex-tv", post: true}
	res, body := exchPostForm(tb, env.Issuer("globex")+"/device_authorization", tv, url.Values{"resource": {env.Issuer("acme")}})
	var d devAuthz
	if err := json.Unmarshal(body, &d); err != nil || res.StatusCode != http.StatusOK {
		tb.Fatalf("globex device authorization: %d %s", res.StatusCode, body)
	}
	if _, err := env.Server.ApproveDevice("globex", d.UserCode, "alice"); err != nil {
		tb.Fatal(err)
	}
	r := exchToken(tb, env, "globex", tv, url.Values{"grant_type": {devGrant}, "device_code": {d.DeviceCode}})
	exchOK(tb, r)
	return r.AccessToken
}

func fedBearer(tb testing.TB, env *emulatortest.Env, assertion string, extra ...string) exchResp {
	tb.Helper()
	form := url.Values{"grant_type": {fedJWTBearer}, "assertion": {assertion}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Add(extra[i], extra[i+1])
	}
	return exchToken(tb, env, "acme", fedAgent, form)
}

// fedRefused checks an error response names the sentinel's reason.
func fedRefused(tb testing.TB, r exchResp, code string, reason error) {
	tb.Helper()
	if r.Status != http.StatusBadRequest || r.Error != code || !strings.Contains(r.ErrorDescription, reason.Error()) {
		tb.Errorf("got %d %s (%s), want 400 %s naming %q", r.Status, r.Error, r.ErrorDescription, code, reason)
	}
}

type fedView struct {
	Sub, ClientID string
	Act           *emulator.Actor
}

func TestFederationCrossTenantExchange(t *testing.T) {
	env := fedStart(t, fedConfig(true, nil))
	globexIss := env.Issuer("globex")
	tok := fedGlobexUserToken(t, env)

	r := exchange(t, env, exchGateway, tok)
	exchOK(t, r)
	c := exchClaims(t, r.AccessToken)
	want := fedView{
		Sub:      emulator.FederatedSubject(globexIss, "user-alice"),
		ClientID: "mcp-gateway",
		Act:      &emulator.Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway", Act: &emulator.Actor{Subject: "user-alice", Issuer: globexIss}},
	}
	if diff := cmp.Diff(want, fedView{c.Subject, c.ClientID, c.Act}); diff != "" {
		t.Errorf("exchanged token (-want +got):\n%s", diff)
	}
	if c.Issuer != env.Issuer("acme") || !cmp.Equal([]string(c.Audience), []string{exchUpstream}) {
		t.Errorf("iss %q aud %v, want acme's token for %s", c.Issuer, c.Audience, exchUpstream)
	}
	// Acme's own alice is someone else.
	if c.Subject == "user-alice" || !strings.HasPrefix(c.Subject, "fed:") {
		t.Errorf("the federated subject %q is not namespaced", c.Subject)
	}
	if in := exchIntrospect(t, env, r.AccessToken); in["active"] != true || in["sub"] != want.Sub {
		t.Errorf("introspection: %v", in)
	}

	// A federated token is a single-use grant here.
	fedRefused(t, exchange(t, env, exchGateway, tok), "invalid_request", emulator.ErrFederatedReplay)

	// A globex token meant for globex's own resource is not for acme.
	sales := exchToken(t, env, "globex", exchCred{id: "sales-bot", secret: "sales-bot-secret"}, url.Values{"grant_type": {"client_credentials"}})
	exchOK(t, sales)
	fedRefused(t, exchange(t, env, exchGateway, sales.AccessToken), "invalid_request", emulator.ErrFederatedAudience)

	// A token revoked at globex is refused at acme.
	tok2 := fedGlobexUserToken(t, env)
	if err := env.Server.Revoke("globex", emulator.Revocation{JTI: exchClaims(t, tok2).ID}); err != nil {
		t.Fatal(err)
	}
	fedRefused(t, exchange(t, env, exchGateway, tok2), "invalid_request", emulator.ErrTokenInactive)
}

func TestFederationCrossTenantRefusedWithoutTrust(t *testing.T) {
	env := fedStart(t, fedConfig(false, nil))
	tok := fedGlobexUserToken(t, env)
	r := exchange(t, env, exchGateway, tok)
	if r.Status != http.StatusBadRequest || r.Error != "invalid_request" {
		t.Errorf("exchange without a trust link: %d %s (%s), want 400 invalid_request", r.Status, r.Error, r.ErrorDescription)
	}
	fedRefused(t, fedBearer(t, env, tok), "invalid_grant", emulator.ErrUntrustedIssuer)
	// Globex does not trust acme just because acme trusts globex.
	env2 := fedStart(t, fedConfig(true, nil))
	acmeTok := exchCC(t, env2, "acme", exchSupport)
	r = exchToken(t, env2, "globex", exchCred{id: "globex-gateway", secret: "globex-gateway-secret"}, url.Values{
		"grant_type": {exchGrant}, "subject_token": {acmeTok}, "subject_token_type": {exchTypeAccess},
	})
	if r.Status != http.StatusBadRequest {
		t.Errorf("acme token at globex: %d %s, want 400", r.Status, r.Error)
	}
}

// TestFederationSubjectsDoNotCollide: globex's user-alice, presented to
// acme, is not acme's user-alice.
func TestFederationSubjectsDoNotCollide(t *testing.T) {
	env := fedStart(t, fedConfig(true, nil))
	r := fedBearer(t, env, fedGlobexUserToken(t, env))
	exchOK(t, r)
	c := exchClaims(t, r.AccessToken)
	globexIss := env.Issuer("globex")
	want := fedView{
		Sub:      emulator.FederatedSubject(globexIss, "user-alice"),
		ClientID: "partner-agent",
		Act:      &emulator.Actor{Subject: "user-alice", Issuer: globexIss},
	}
	if diff := cmp.Diff(want, fedView{c.Subject, c.ClientID, c.Act}); diff != "" {
		t.Errorf("JWT bearer token (-want +got):\n%s", diff)
	}

	// Acme's own alice has subject user-alice; globex's does not become her.
	if u, err := env.Server.User("acme", "alice"); err != nil || u.Subject != "user-alice" {
		t.Fatalf("acme's alice: %+v %v", u, err)
	}
	if c.Subject == "user-alice" || !strings.HasPrefix(c.Subject, "fed:") {
		t.Errorf("the federated subject %q is not namespaced", c.Subject)
	}
	if emulator.FederatedSubject(globexIss, "user-alice") == emulator.FederatedSubject(env.Issuer("acme"), "user-alice") {
		t.Error("the federated subject does not depend on the issuer")
	}
}

func TestFederationExternalIssuer(t *testing.T) {
	partner := newFedIssuer(t)
	env := fedStart(t, fedConfig(false, partner))
	acme := env.Issuer("acme")
	clock := env.Server.Clock("acme")
	clock.Freeze(time.Time{})
	now := clock.Now()
	n := 0
	claims := func(mut func(map[string]any)) map[string]any {
		n++
		c := map[string]any{
			"iss": fedPartner, "sub": "agent-42", "aud": acme,
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "jti-" + string(rune('a'+n%26)) + time.Duration(n).String(),
		}
		if mut != nil {
			mut(c)
		}
		return c
	}

	// Accepted: sub namespaced, the partner's party in act, nested chain
	// marked with the partner's iss.
	ok := partner.sign(t, claims(func(c map[string]any) {
		c["act"] = map[string]any{"sub": "orchestrator", "client_id": "orch"}
	}), "JWT", nil)
	r := fedBearer(t, env, ok, "scope", "zendesk:tickets:write")
	exchOK(t, r)
	c := exchClaims(t, r.AccessToken)
	want := fedView{
		Sub:      emulator.FederatedSubject(fedPartner, "agent-42"),
		ClientID: "partner-agent",
		Act:      &emulator.Actor{Subject: "agent-42", Issuer: fedPartner, Act: &emulator.Actor{Subject: "orchestrator", Issuer: fedPartner}},
	}
	if diff := cmp.Diff(want, fedView{c.Subject, c.ClientID, c.Act}); diff != "" {
		t.Errorf("JWT bearer token (-want +got):\n%s", diff)
	}
	if c.Scope != "zendesk:tickets:write" || !cmp.Equal([]string(c.Audience), []string{exchZendesk}) {
		t.Errorf("scope %q aud %v", c.Scope, c.Audience)
	}
	fedRefused(t, fedBearer(t, env, ok), "invalid_grant", emulator.ErrFederatedReplay)

	// The token endpoint as aud is accepted too.
	exchOK(t, fedBearer(t, env, partner.sign(t, claims(func(c map[string]any) { c["aud"] = acme + "/token" }), "", nil)))

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name   string
		tok    string
		reason error
	}{
		{"wrong aud", partner.sign(t, claims(func(c map[string]any) { c["aud"] = env.Issuer("globex") }), "", nil), emulator.ErrFederatedAudience},
		{"expired", partner.sign(t, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), "", nil), emulator.ErrTokenExpired},
		{"exp too far ahead", partner.sign(t, claims(func(c map[string]any) { c["exp"] = now.Add(2 * time.Hour).Unix() }), "", nil), emulator.ErrFederatedLifetime},
		{"no exp", partner.sign(t, claims(func(c map[string]any) { delete(c, "exp") }), "", nil), emulator.ErrFederatedClaims},
		{"no jti", partner.sign(t, claims(func(c map[string]any) { delete(c, "jti") }), "", nil), emulator.ErrFederatedClaims},
		{"no sub", partner.sign(t, claims(func(c map[string]any) { delete(c, "sub") }), "", nil), emulator.ErrFederatedClaims},
		{"issued in the future", partner.sign(t, claims(func(c map[string]any) { c["iat"] = now.Add(10 * time.Minute).Unix() }), "", nil), emulator.ErrTokenNotYet},
		{"issuer not pinned", partner.sign(t, claims(func(c map[string]any) { c["iss"] = "https://idp.stranger.test" }), "", nil), emulator.ErrUntrustedIssuer},
		{"another key", partner.sign(t, claims(nil), "", other), emulator.ErrTokenSignature},
		{"HS256", partner.sign(t, claims(nil), "", []byte("0123456789abcdef0123456789abcdef")), emulator.ErrTokenAlg},
		{"DPoP proof typ", partner.sign(t, claims(nil), "dpop+jwt", nil), emulator.ErrFederatedTokenType},
		{"not a JWT", "abc.def.ghi", emulator.ErrTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fedRefused(t, fedBearer(t, env, tc.tok), "invalid_grant", tc.reason)
		})
	}

	t.Run("expired by the tenant clock", func(t *testing.T) {
		tok := partner.sign(t, claims(nil), "", nil)
		clock.Advance(6 * time.Minute)
		defer clock.Advance(-6 * time.Minute)
		fedRefused(t, fedBearer(t, env, tok), "invalid_grant", emulator.ErrTokenExpired)
	})
	t.Run("request errors", func(t *testing.T) {
		tok := partner.sign(t, claims(nil), "", nil)
		for _, tc := range []struct {
			name, want string
			extra      []string
		}{
			{"scope not the client's", "invalid_scope", []string{"scope", "crm:read"}},
			{"resource not the client's", "invalid_target", []string{"resource", exchPostgres}},
		} {
			if r := fedBearer(t, env, tok, tc.extra...); r.Error != tc.want {
				t.Errorf("%s: %d %s (%s), want %s", tc.name, r.Status, r.Error, r.ErrorDescription, tc.want)
			}
		}
		// The assertion was not consumed by those refusals.
		exchOK(t, fedBearer(t, env, tok))
		if r := exchToken(t, env, "acme", exchSupport, url.Values{"grant_type": {fedJWTBearer}, "assertion": {tok}}); r.Error != "unauthorized_client" {
			t.Errorf("client without the grant: %d %s, want unauthorized_client", r.Status, r.Error)
		}
	})
	t.Run("exchange accepts the partner's token", func(t *testing.T) {
		tok := partner.sign(t, claims(nil), "", nil)
		r := exchange(t, env, fedAgent, tok)
		exchOK(t, r)
		if c := exchClaims(t, r.AccessToken); c.Subject != emulator.FederatedSubject(fedPartner, "agent-42") || c.Scope != "zendesk:tickets:read" {
			t.Errorf("sub %q scope %q", c.Subject, c.Scope)
		}
	})
}

func TestFederationExternalIssuerNotPinned(t *testing.T) {
	partner := newFedIssuer(t)
	env := fedStart(t, fedConfig(false, nil))
	tok := partner.sign(t, map[string]any{
		"iss": fedPartner, "sub": "agent-42", "aud": env.Issuer("acme"),
		"exp": time.Now().Add(5 * time.Minute).Unix(), "jti": "j1",
	}, "", nil)
	fedRefused(t, fedBearer(t, env, tok), "invalid_grant", emulator.ErrUntrustedIssuer)
}

func TestFederationConfigValidation(t *testing.T) {
	cases := []struct {
		name  string
		mut   func(tc *emulator.TenantConfig)
		field string
	}{
		{"both tenant and issuer", func(tc *emulator.TenantConfig) {
			tc.Trust = []emulator.TrustConfig{{Tenant: "globex", Issuer: fedPartner}}
		}, "tenants[0].trust[0]"},
		{"empty", func(tc *emulator.TenantConfig) { tc.Trust = []emulator.TrustConfig{{}} }, "tenants[0].trust[0]"},
		{"itself", func(tc *emulator.TenantConfig) { tc.Trust = []emulator.TrustConfig{{Tenant: "acme"}} }, "tenants[0].trust[0].tenant"},
		{"tenant with jwks_uri", func(tc *emulator.TenantConfig) {
			tc.Trust = []emulator.TrustConfig{{Tenant: "globex", JWKSURI: "https://x.test/jwks"}}
		}, "tenants[0].trust[0].jwks_uri"},
		{"issuer without jwks_uri", func(tc *emulator.TenantConfig) { tc.Trust = []emulator.TrustConfig{{Issuer: fedPartner}} }, "tenants[0].trust[0].jwks_uri"},
		{"http issuer off loopback", func(tc *emulator.TenantConfig) {
			tc.Trust = []emulator.TrustConfig{{Issuer: "http://idp.partner.test", JWKSURI: "https://idp.partner.test/jwks"}}
		}, "tenants[0].trust[0].issuer"},
		{"http jwks_uri off loopback", func(tc *emulator.TenantConfig) {
			tc.Trust = []emulator.TrustConfig{{Issuer: fedPartner, JWKSURI: "http://idp.partner.test/jwks"}}
		}, "tenants[0].trust[0].jwks_uri"},
		{"trusted twice", func(tc *emulator.TenantConfig) {
			tc.Trust = []emulator.TrustConfig{{Tenant: "globex"}, {Tenant: "globex"}}
		}, "tenants[0].trust[1].tenant"},
		{"user subject in the federated namespace", func(tc *emulator.TenantConfig) {
			tc.Users = append(tc.Users, emulator.UserConfig{Username: "eve", Subject: "fed:abc"})
		}, "tenants[0].users[3].subject"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := emulator.DefaultConfig()
			tc.mut(&cfg.Tenants[0])
			err := cfg.Validate()
			var ce *emulator.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Errorf("Validate() = %v, want a ConfigError on %s", err, tc.field)
			}
		})
	}
	cfg := emulator.DefaultConfig()
	cfg.Tenants[0].Trust = []emulator.TrustConfig{{Tenant: "globex"}, {Issuer: "http://127.0.0.1:9/", JWKSURI: "http://127.0.0.1:9/jwks"}}
	if err := cfg.Validate(); err != nil {
		t.Errorf("a valid trust list: %v", err)
	}
}
