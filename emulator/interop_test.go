package emulator_test

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// Interop with clients nobody here wrote: golang.org/x/oauth2 for the
// authorization code flow with PKCE, github.com/coreos/go-oidc for
// discovery, ID token verification and userinfo.

// ioAuthorize follows an authorization URL built by a client library up
// to the redirect back to the client, as a headless user agent does, and
// returns the redirect's query.
func ioAuthorize(tb testing.TB, authURL string) url.Values {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, authURL, nil)
	if err != nil {
		tb.Fatal(err)
	}
	_, q := azDo(tb, azNoRedirect(), req).location(tb)
	return q
}

// TestInteropOAuth2AuthCodePKCE runs golang.org/x/oauth2's authorization
// code flow with PKCE S256 for a public and a confidential client, then
// refreshes through its TokenSource.
func TestInteropOAuth2AuthCodePKCE(t *testing.T) {
	env, _ := azStart(t, nil)
	for _, tt := range []struct {
		client, secret string
		style          oauth2.AuthStyle
	}{
		{"acme-copilot", "", oauth2.AuthStyleInParams},
		{"acme-portal", "acme-portal-secret", oauth2.AuthStyleInHeader},
	} {
		t.Run(tt.client, func(t *testing.T) {
			ctx := t.Context()
			conf := &oauth2.Config{
				ClientID:     tt.client,
				ClientSecret: tt.secret,
				Endpoint:     oauth2.Endpoint{AuthURL: env.Issuer("acme") + "/authorize", TokenURL: env.TokenURL("acme"), AuthStyle: tt.style},
				RedirectURL:  azCallback,
				Scopes:       []string{"openid", "profile", "email", "offline_access", "zendesk:tickets:read"},
			}
			verifier := oauth2.GenerateVerifier()
			q := ioAuthorize(t, conf.AuthCodeURL(azState, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "alice")))
			if q.Get("state") != azState || q.Get("iss") != env.Issuer("acme") {
				t.Fatalf("redirect query %v: want state %q and iss %q", q, azState, env.Issuer("acme"))
			}

			// A wrong verifier first: the code is burnt (its PKCE session
			// is consumed), so the right one cannot be used afterwards.
			_, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Fatalf("exchange with a wrong verifier: %v; want invalid_grant", err)
			}
			q = ioAuthorize(t, conf.AuthCodeURL(azState, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "alice")))
			tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.Expiry.IsZero() || tok.Extra("id_token") == nil {
				t.Fatalf("token %+v: want a Bearer token with expiry, a refresh token and an ID token", tok)
			}
			if got := azClaims(t, tok.AccessToken)["sub"]; got != "user-alice" {
				t.Errorf("access token sub %v, want user-alice", got)
			}

			// The library refreshes an expired token by itself.
			old := *tok
			old.Expiry = time.Now().Add(-time.Minute)
			next, err := conf.TokenSource(ctx, &old).Token()
			if err != nil {
				t.Fatal(err)
			}
			if next.AccessToken == tok.AccessToken || next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken {
				t.Errorf("refresh: want a new access token and a rotated refresh token")
			}
			// The rotated refresh token is refused, as the library reports it.
			_, err = conf.TokenSource(ctx, &old).Token()
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Errorf("reusing the rotated refresh token: %v; want invalid_grant", err)
			}
		})
	}
}

// ioConfig is the default configuration plus an authorization code client
// in globex, so that both tenants issue ID tokens.
func ioConfig() *emulator.Config {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants {
		if cfg.Tenants[i].Name == "globex" {
			cfg.Tenants[i].Clients = append(cfg.Tenants[i].Clients, emulator.ClientConfig{
				ID:              "globex-app",
				Name:            "Globex app",
				AuthMethod:      "none",
				GrantTypes:      []string{emulator.GrantAuthorizationCode, emulator.GrantRefreshToken},
				RedirectURIs:    []string{azCallback},
				RequiredScopes:  []string{"openid", "profile", "email", "crm:read"},
				Audiences:       []string{"https://mcp.globex.test/crm"},
				DefaultAudience: []string{"https://mcp.globex.test/crm"},
			})
		}
	}
	return &cfg
}

// TestInteropGoOIDC discovers each tenant with go-oidc and verifies the ID
// tokens it issues (signature by the discovered JWKS, issuer, audience,
// expiry, nonce, at_hash), then reads userinfo through go-oidc.
func TestInteropGoOIDC(t *testing.T) {
	env, _ := azStart(t, ioConfig())
	users := map[string]struct{ client, user, sub, name, email string }{
		"acme":   {"acme-copilot", "alice", "user-alice", "Alice Agentowner", "alice@acme.test"},
		"globex": {"globex-app", "carol", "user-carol", "Carol Globex", "carol@globex.test"},
	}
	raw := map[string]string{}
	providers := map[string]*oidc.Provider{}
	for _, tenant := range env.Server.Tenants() {
		u, ok := users[tenant]
		if !ok {
			t.Fatalf("no fixture for tenant %s", tenant)
		}
		t.Run(tenant, func(t *testing.T) {
			ctx := t.Context()
			p, err := oidc.NewProvider(ctx, env.Issuer(tenant))
			if err != nil {
				t.Fatal(err)
			}
			providers[tenant] = p
			wantEP := oauth2.Endpoint{AuthURL: env.Issuer(tenant) + "/authorize", TokenURL: env.TokenURL(tenant)}
			wantEP.DeviceAuthURL = env.Issuer(tenant) + "/device_authorization" // RFC 8628 (device.go)
			if diff := cmp.Diff(wantEP, p.Endpoint()); diff != "" {
				t.Errorf("discovered endpoints (-want +got):\n%s", diff)
			}
			conf := &oauth2.Config{ClientID: u.client, Endpoint: p.Endpoint(), RedirectURL: azCallback, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
			conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
			verifier := oauth2.GenerateVerifier()
			q := ioAuthorize(t, conf.AuthCodeURL(azState, oauth2.S256ChallengeOption(verifier), oidc.Nonce(azNonce), oauth2.SetAuthURLParam("login_hint", u.user)))
			if q.Get("iss") != env.Issuer(tenant) {
				t.Fatalf("iss %q, want the discovered issuer %q", q.Get("iss"), env.Issuer(tenant))
			}
			tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			rawID, _ := tok.Extra("id_token").(string)
			raw[tenant] = rawID
			idt, err := p.Verifier(&oidc.Config{ClientID: u.client}).Verify(ctx, rawID)
			if err != nil {
				t.Fatal(err)
			}
			if idt.Nonce != azNonce {
				t.Errorf("nonce %q, want %q", idt.Nonce, azNonce)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			var claims struct{ Sub, Name, Email string }
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(struct{ Sub, Name, Email string }{u.sub, u.name, u.email}, claims); diff != "" {
				t.Errorf("ID token claims (-want +got):\n%s", diff)
			}
			ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatal(err)
			}
			if ui.Subject != u.sub || ui.Email != u.email {
				t.Errorf("userinfo sub %q email %q, want %q %q", ui.Subject, ui.Email, u.sub, u.email)
			}
		})
	}
	if t.Failed() {
		return
	}

	// What a relying party using go-oidc must refuse.
	acme, globex := providers["acme"], providers["globex"]
	tampered := []byte(raw["acme"])
	tampered[len(tampered)-5] ^= 0x01
	tests := []struct {
		name     string
		verifier *oidc.IDTokenVerifier
		token    string
		expired  bool
	}{
		{"another client's verifier", acme.Verifier(&oidc.Config{ClientID: "acme-portal"}), raw["acme"], false},
		{"acme token, globex verifier", globex.Verifier(&oidc.Config{ClientID: "acme-copilot"}), raw["acme"], false},
		{"globex token, acme verifier", acme.Verifier(&oidc.Config{ClientID: "globex-app"}), raw["globex"], false},
		{"tampered signature", acme.Verifier(&oidc.Config{ClientID: "acme-copilot"}), string(tampered), false},
		{"expired", acme.Verifier(&oidc.Config{ClientID: "acme-copilot", Now: func() time.Time { return time.Now().Add(emulator.DefaultIDTokenLifetime + time.Minute) }}), raw["acme"], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.verifier.Verify(t.Context(), tt.token)
			if err == nil {
				t.Fatal("verified; want an error")
			}
			var te *oidc.TokenExpiredError
			if errors.As(err, &te) != tt.expired {
				t.Errorf("error %v: TokenExpiredError %v, want %v", err, !tt.expired, tt.expired)
			}
		})
	}
}

// TestInteropDiscoveryEverywhere: every place a client looks for the
// metadata names the same issuer, which go-oidc insists on.
func TestInteropDiscoveryEverywhere(t *testing.T) {
	env := emulatortest.New(t, nil)
	for _, tenant := range env.Server.Tenants() {
		for _, path := range []string{
			"/t/" + tenant + "/.well-known/openid-configuration",
			"/.well-known/openid-configuration/t/" + tenant,
			"/.well-known/oauth-authorization-server/t/" + tenant,
		} {
			req, _ := http.NewRequest(http.MethodGet, env.URL+path, nil)
			r := azDo(t, http.DefaultClient, req)
			m := r.json(t)
			if r.Status != 200 || m["issuer"] != env.Issuer(tenant) || m["authorization_response_iss_parameter_supported"] != true {
				t.Errorf("%s: HTTP %d issuer %v iss-parameter %v", path, r.Status, m["issuer"], m["authorization_response_iss_parameter_supported"])
			}
		}
	}
}
