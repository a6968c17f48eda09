package emulator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// registerURL is a tenant's registration endpoint.
func registerURL(env *emulatortest.Env, tenant string) string {
	return env.Issuer(tenant) + "/register"
}

// registerRaw POSTs body to the registration endpoint.
func registerRaw(tb testing.TB, u, contentType, body string) oauthReply {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return doJSONish(tb, req)
}

// registerJSON registers metadata and wants 201.
func registerJSON(tb testing.TB, env *emulatortest.Env, tenant string, md map[string]any) oauthReply {
	tb.Helper()
	b, _ := json.Marshal(md)
	got := registerRaw(tb, registerURL(env, tenant), "application/json", string(b))
	if got.Status != http.StatusCreated {
		tb.Fatalf("register %s: HTTP %d %v", b, got.Status, got.Body)
	}
	return got
}

// recordingAuditor keeps audit events in memory.
type recordingAuditor struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *recordingAuditor) Write(e audit.Event) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
	return int64(len(a.events)), nil
}

func (a *recordingAuditor) endpoint(name string) []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, e := range a.events {
		if e.Endpoint == name {
			out = append(out, e)
		}
	}
	return out
}

func TestRegisterConfidentialClient(t *testing.T) {
	aud := &recordingAuditor{}
	env := emulatortest.New(t, nil, emulator.WithAuditor(aud))
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			got := registerJSON(t, env, "acme", map[string]any{
				"client_name":                "Registered agent",
				"grant_types":                []string{"client_credentials"},
				"token_endpoint_auth_method": method,
				"scope":                      "zendesk:tickets:read mcp:tools",
				"software_id":                "agentsso-test",
				"unknown_member":             "ignored",
			})
			want := map[string]any{
				"client_name":                "Registered agent",
				"grant_types":                []any{"client_credentials"},
				"response_types":             []any{},
				"token_endpoint_auth_method": method,
				"scope":                      "zendesk:tickets:read mcp:tools",
				"software_id":                "agentsso-test",
				"client_secret_expires_at":   float64(0),
			}
			if diff := cmp.Diff(want, got.Body, cmpopts.IgnoreMapEntries(func(k string, _ any) bool {
				return k == "client_id" || k == "client_secret" || k == "client_id_issued_at"
			})); diff != "" {
				t.Errorf("registration response (-want +got):\n%s", diff)
			}
			id, secret := got.str("client_id"), got.str("client_secret")
			if id == "" || len(secret) < 32 || got.Body["client_id_issued_at"] == nil {
				t.Fatalf("client_id %q, client_secret %q, client_id_issued_at %v", id, secret, got.Body["client_id_issued_at"])
			}
			if got.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", got.Header.Get("Cache-Control"))
			}
			if s, err := env.Server.ClientSecret("acme", id); err != nil || s != secret {
				t.Errorf("Server.ClientSecret = %q, %v; want the issued secret", s, err)
			}

			// golang.org/x/oauth2 gets a token with it; a registered client
			// has no default audience when the tenant has several, so it
			// names a resource (RFC 8707).
			style := oauth2.AuthStyleInHeader
			if method == "client_secret_post" {
				style = oauth2.AuthStyleInParams
			}
			cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: env.TokenURL("acme"), AuthStyle: style,
				EndpointParams: url.Values{"resource": {"https://mcp.acme.test/zendesk"}}}
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			c := jwtClaims(t, tok.AccessToken)
			if diff := cmp.Diff(map[string]any{"client_id": id, "scope": "zendesk:tickets:read mcp:tools", "aud": "https://mcp.acme.test/zendesk"},
				map[string]any{"client_id": c["client_id"], "scope": c["scope"], "aud": c["aud"]}); diff != "" {
				t.Errorf("access token (-want +got):\n%s", diff)
			}
			// Scopes beyond the registered ones are refused.
			if r := tokenForm(t, env.TokenURL("acme"), withCreds(method, id, secret, url.Values{"grant_type": {"client_credentials"}, "scope": {"slack:channels:read"}, "resource": {"https://mcp.acme.test/zendesk"}}), ifBasic(method, id, secret)...); r.str("error") != "invalid_scope" {
				t.Errorf("unregistered scope: HTTP %d %v, want invalid_scope", r.Status, r.Body)
			}
			// No resource: invalid_target.
			if r := tokenForm(t, env.TokenURL("acme"), withCreds(method, id, secret, url.Values{"grant_type": {"client_credentials"}}), ifBasic(method, id, secret)...); r.str("error") != "invalid_target" {
				t.Errorf("no resource: HTTP %d %v, want invalid_target", r.Status, r.Body)
			}
			// Wrong secret: invalid_client.
			if r := tokenForm(t, env.TokenURL("acme"), url.Values{"grant_type": {"client_credentials"}, "resource": {"https://mcp.acme.test/zendesk"}}, id, "wrong"); r.str("error") != "invalid_client" {
				t.Errorf("wrong secret: HTTP %d %v, want invalid_client", r.Status, r.Body)
			}
		})
	}
	evs := aud.endpoint("register")
	if len(evs) != 2 || evs[0].Decision != audit.DecisionAllow || evs[0].Status != http.StatusCreated || evs[0].ClientID == "" || evs[0].Tenant != "acme" {
		t.Errorf("register audit events: %+v", evs)
	}
}

// withCreds adds client_secret_post credentials to form.
func withCreds(method, id, secret string, form url.Values) url.Values {
	if method == "client_secret_post" {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	return form
}

// ifBasic returns Basic credentials for client_secret_basic and nothing
// for client_secret_post (whose form holds them).
func ifBasic(method, id, secret string) []string {
	if method == "client_secret_basic" {
		return []string{id, secret}
	}
	return nil
}

// TestRegisterPublicClient registers a public client. The token endpoint
// knows it: an unknown code gets invalid_grant, where an unknown client
// gets invalid_client. TestRegisteredPublicClientCodeFlow runs the flow.
func TestRegisterPublicClient(t *testing.T) {
	env := emulatortest.New(t, nil)
	got := registerJSON(t, env, "acme", map[string]any{
		"client_name":                "MCP desktop client",
		"redirect_uris":              []string{"http://127.0.0.1:33418/callback", "http://[::1]:33418/callback", "com.example.app:/oauth2redirect"},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
	})
	if _, ok := got.Body["client_secret"]; ok {
		t.Errorf("a public client was given a secret: %v", got.Body)
	}
	if got.str("token_endpoint_auth_method") != "none" || !strings.Contains(got.str("scope"), "mcp:tools") {
		t.Errorf("response %v: want auth method none and the tenant's catalogue as scope", got.Body)
	}
	id := got.str("client_id")
	form := func(client string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {"unknown"}, "client_id": {client},
			"redirect_uri": {"http://127.0.0.1:33418/callback"}, "code_verifier": {strings.Repeat("v", 43)}}
	}
	if r := tokenForm(t, env.TokenURL("acme"), form(id)); r.str("error") != "invalid_grant" {
		t.Errorf("registered public client: HTTP %d %v, want invalid_grant", r.Status, r.Body)
	}
	if r := tokenForm(t, env.TokenURL("acme"), form("dcr-not-registered")); r.str("error") != "invalid_client" {
		t.Errorf("unknown client: HTTP %d %v, want invalid_client", r.Status, r.Body)
	}
	// The public client may not use client_credentials.
	if r := tokenForm(t, env.TokenURL("acme"), url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "resource": {"https://mcp.acme.test/zendesk"}}); r.Status == http.StatusOK {
		t.Errorf("public client got a client_credentials token: %v", r.Body)
	}
}

// TestRegisterPrivateKeyJWT registers a client with its public keys and
// authenticates it with an assertion.
func TestRegisterPrivateKeyJWT(t *testing.T) {
	env := emulatortest.New(t, nil)
	key := newECKey(t, "reg-key")
	var set map[string]any
	_ = json.Unmarshal([]byte(jwks(t, key)), &set)
	got := registerJSON(t, env, "acme", map[string]any{
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "private_key_jwt",
		"jwks":                       set,
		"scope":                      "mcp:tools",
	})
	if _, ok := got.Body["client_secret"]; ok || got.str("token_endpoint_auth_signing_alg") != "ES256" {
		t.Errorf("response %v: want no secret and token_endpoint_auth_signing_alg ES256", got.Body)
	}
	id := got.str("client_id")
	now := newManualClock().Now()
	r := tokenForm(t, env.TokenURL("acme"), assertionForm(key.sign(t, assertionClaims(id, env.Issuer("acme"), now), "", true), "resource", "https://mcp.acme.test/zendesk"))
	if r.Status != http.StatusOK {
		t.Fatalf("HTTP %d %v", r.Status, r.Body)
	}
	if c := jwtClaims(t, r.str("access_token")); c["client_id"] != id || c["scope"] != "mcp:tools" {
		t.Errorf("claims %v", c)
	}
}

func TestRegisterDisabled(t *testing.T) {
	env := emulatortest.New(t, nil)
	got := registerRaw(t, registerURL(env, "globex"), "application/json", `{"grant_types":["client_credentials"]}`)
	if got.Status != http.StatusForbidden || got.str("error") != "access_denied" || !strings.Contains(got.str("error_description"), "registration.dynamic") {
		t.Errorf("HTTP %d %v, want 403 access_denied naming registration.dynamic", got.Status, got.Body)
	}
	md := doJSONish(t, mustRequest(t, http.MethodGet, env.Issuer("globex")+"/.well-known/openid-configuration"))
	if _, ok := md.Body["registration_endpoint"]; ok {
		t.Errorf("globex advertises a registration_endpoint")
	}
	md = doJSONish(t, mustRequest(t, http.MethodGet, env.Issuer("acme")+"/.well-known/openid-configuration"))
	if md.str("registration_endpoint") != registerURL(env, "acme") {
		t.Errorf("acme registration_endpoint %q", md.str("registration_endpoint"))
	}
}

func mustRequest(tb testing.TB, method, u string) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

func TestRegisterInvalidMetadata(t *testing.T) {
	env := emulatortest.New(t, nil)
	ec := newECKey(t, "k")
	rsaKey := newRSAKey(t, "r", jose.RS256)
	pub := jwks(t, ec)
	priv := func() string {
		b, _ := json.Marshal(map[string]any{"keys": []any{json.RawMessage(mustJWK(t, ec.priv))}})
		return string(b)
	}()
	cc := `"grant_types":["client_credentials"]`
	pk := `"token_endpoint_auth_method":"private_key_jwt",` + cc
	tests := []struct {
		name        string
		contentType string // default application/json
		body        string
		wantError   string
		wantField   string // error_description starts with it
	}{
		{name: "not JSON", body: `{`, wantError: "invalid_client_metadata"},
		{name: "JSON array", body: `[]`, wantError: "invalid_client_metadata"},
		{name: "JSON null", body: `null`, wantError: "invalid_client_metadata"},
		{name: "form content type", contentType: "application/x-www-form-urlencoded", body: `{}`, wantError: "invalid_client_metadata"},
		{name: "no content type", contentType: "-", body: `{}`, wantError: "invalid_client_metadata"},

		{name: "default grant without redirect_uris", body: `{}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris"},
		{name: "redirect_uris not an array", body: `{"redirect_uris":"https://a.test/cb"}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris"},
		{name: "relative redirect URI", body: `{"redirect_uris":["/cb"]}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris[0]"},
		{name: "redirect URI with fragment", body: `{"redirect_uris":["https://a.test/cb#x"]}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris[0]"},
		{name: "redirect URI with empty fragment", body: `{"redirect_uris":["https://a.test/cb#"]}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris[0]"},
		{name: "http redirect URI on a public host", body: `{"redirect_uris":["https://a.test/cb","http://a.test/cb"]}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris[1]"},
		{name: "javascript redirect URI", body: `{"redirect_uris":["javascript:alert(1)"]}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris[0]"},
		{name: "redirect URI with user info", body: `{"redirect_uris":["https://u:p@a.test/cb"]}`, wantError: "invalid_redirect_uri", wantField: "redirect_uris[0]"},

		{name: "unknown auth method", body: `{"token_endpoint_auth_method":"client_secret_jwt",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "token_endpoint_auth_method"},
		{name: "auth method not a string", body: `{"token_endpoint_auth_method":1,` + cc + `}`, wantError: "invalid_client_metadata", wantField: "token_endpoint_auth_method"},
		{name: "private_key_jwt without keys", body: `{` + pk + `}`, wantError: "invalid_client_metadata", wantField: "jwks"},
		{name: "jwks and jwks_uri", body: `{` + pk + `,"jwks":` + pub + `,"jwks_uri":"https://a.test/jwks"}`, wantError: "invalid_client_metadata", wantField: "jwks"},
		{name: "private key in jwks", body: `{` + pk + `,"jwks":` + priv + `}`, wantError: "invalid_client_metadata", wantField: "jwks.keys[0]"},
		{name: "symmetric key in jwks", body: `{` + pk + `,"jwks":{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}]}}`, wantError: "invalid_client_metadata", wantField: "jwks.keys[0]"},
		{name: "jwks not a set", body: `{` + pk + `,"jwks":{"kty":"EC"}}`, wantError: "invalid_client_metadata", wantField: "jwks"},
		{name: "empty jwks", body: `{` + pk + `,"jwks":{"keys":[]}}`, wantError: "invalid_client_metadata", wantField: "jwks"},
		{name: "jwks_uri over http", body: `{` + pk + `,"jwks_uri":"http://a.test/jwks"}`, wantError: "invalid_client_metadata", wantField: "jwks_uri"},
		{name: "signing alg HS256", body: `{` + pk + `,"jwks":` + pub + `,"token_endpoint_auth_signing_alg":"HS256"}`, wantError: "invalid_client_metadata", wantField: "token_endpoint_auth_signing_alg"},
		{name: "signing alg without a fitting key", body: `{` + pk + `,"jwks":` + jwks(t, rsaKey) + `,"token_endpoint_auth_signing_alg":"ES256"}`, wantError: "invalid_client_metadata", wantField: "jwks"},
		{name: "signing alg for a secret client", body: `{"token_endpoint_auth_signing_alg":"RS256",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "token_endpoint_auth_signing_alg"},

		{name: "unknown grant type", body: `{"grant_types":["password"]}`, wantError: "invalid_client_metadata", wantField: "grant_types[0]"},
		{name: "empty grant types", body: `{"grant_types":[]}`, wantError: "invalid_client_metadata", wantField: "grant_types"},
		{name: "grant types not strings", body: `{"grant_types":[1]}`, wantError: "invalid_client_metadata", wantField: "grant_types"},
		{name: "public client_credentials", body: `{"token_endpoint_auth_method":"none",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "grant_types"},
		{name: "response type token", body: `{"redirect_uris":["https://a.test/cb"],"response_types":["token"]}`, wantError: "invalid_client_metadata", wantField: "response_types[0]"},
		{name: "response type code without the grant", body: `{"response_types":["code"],` + cc + `}`, wantError: "invalid_client_metadata", wantField: "response_types"},
		{name: "authorization_code without response type code", body: `{"redirect_uris":["https://a.test/cb"],"response_types":[]}`, wantError: "invalid_client_metadata", wantField: "response_types"},

		{name: "scope outside the catalogue", body: `{"scope":"zendesk:tickets:read admin",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "scope"},
		{name: "scope of another tenant", body: `{"scope":"crm:read",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "scope"},
		{name: "scope not a string", body: `{"scope":["mcp:tools"],` + cc + `}`, wantError: "invalid_client_metadata", wantField: "scope"},
		{name: "client_uri not a URL", body: `{"client_uri":"ftp://a.test",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "client_uri"},
		{name: "contacts not an array", body: `{"contacts":"me@a.test",` + cc + `}`, wantError: "invalid_client_metadata", wantField: "contacts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			switch ct {
			case "":
				ct = "application/json"
			case "-":
				ct = ""
			}
			got := registerRaw(t, registerURL(env, "acme"), ct, tc.body)
			if got.Status != http.StatusBadRequest || got.str("error") != tc.wantError {
				t.Fatalf("HTTP %d %v, want 400 %s", got.Status, got.Body, tc.wantError)
			}
			desc := got.str("error_description")
			if tc.wantField != "" && !strings.HasPrefix(desc, tc.wantField+":") {
				t.Errorf("error_description %q does not start with %q", desc, tc.wantField+":")
			}
			t.Logf("%s: %s", got.str("error"), desc)
		})
	}
}

func mustJWK(tb testing.TB, key any) []byte {
	tb.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzRegister posts arbitrary bodies to the registration endpoint: it
// never panics and never answers 5xx.
func FuzzRegister(f *testing.F) {
	env := emulatortest.New(f, nil)
	u := registerURL(env, "acme")
	for _, s := range []string{
		`{}`, `null`, `[]`, `""`, `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`,
		`{"grant_types":["client_credentials"],"scope":"mcp:tools"}`,
		`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}}`,
		`{"grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}}`,
		`{"grant_types":null,"redirect_uris":[null],"jwks":{"keys":null}}`,
		`{"redirect_uris":["https://a.test/cb"],"response_types":["code","code"],"grant_types":["authorization_code","authorization_code"]}`,
		`{"scope":"` + strings.Repeat("x ", 1000) + `"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := registerRaw(t, u, "application/json", body)
		if got.Status >= 500 {
			t.Fatalf("HTTP %d %v for %q", got.Status, got.Body, body)
		}
		if got.Status == http.StatusCreated && got.str("client_id") == "" {
			t.Fatalf("201 without client_id for %q", body)
		}
	})
}

// codeFlow runs the authorization code flow with PKCE for a public client
// through golang.org/x/oauth2, alice signing in headlessly (login_hint).
func codeFlow(tb testing.TB, env *emulatortest.Env, clientID, redirect, scope, resource string) *oauth2.Token {
	tb.Helper()
	oc := oauth2.Config{
		ClientID:    clientID,
		RedirectURL: redirect,
		Scopes:      strings.Fields(scope),
		Endpoint:    oauth2.Endpoint{AuthURL: env.Issuer("acme") + "/authorize", TokenURL: env.TokenURL("acme"), AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	const state = "state-0123456789"
	u := oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "alice"), oauth2.SetAuthURLParam("resource", resource))
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode/100 != 3 {
		tb.Fatalf("authorize: HTTP %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("code") == "" || q.Get("state") != state || q.Get("iss") != env.Issuer("acme") {
		tb.Fatalf("authorize redirected to %s: want a code, the state and iss", loc)
	}
	tok, err := oc.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// TestRegisteredPublicClientCodeFlow: a public client registered
// dynamically, as an MCP client does, runs the authorization code flow
// with PKCE and gets tokens.
func TestRegisteredPublicClientCodeFlow(t *testing.T) {
	env := emulatortest.New(t, nil)
	const redirect = "http://127.0.0.1:33418/callback"
	got := registerJSON(t, env, "acme", map[string]any{
		"client_name":                "MCP desktop client",
		"redirect_uris":              []string{redirect},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
	})
	id := got.str("client_id")
	tok := codeFlow(t, env, id, redirect, "openid offline_access mcp:tools", "https://mcp.acme.test/zendesk")
	c := jwtClaims(t, tok.AccessToken)
	want := map[string]any{"client_id": id, "sub": "user-alice", "scope": "openid offline_access mcp:tools", "aud": "https://mcp.acme.test/zendesk"}
	if diff := cmp.Diff(want, map[string]any{"client_id": c["client_id"], "sub": c["sub"], "scope": c["scope"], "aud": c["aud"]}); diff != "" {
		t.Errorf("access token (-want +got):\n%s", diff)
	}
	if tok.RefreshToken == "" {
		t.Errorf("no refresh token for offline_access")
	}
}

// TestRegisteredClientsSurviveAdminChanges: registered clients are part of
// the tenant's configuration, so the admin API lists them and keeps them
// (they pass its validation) when it changes another client; a reset
// removes them.
func TestRegisteredClientsSurviveAdminChanges(t *testing.T) {
	env := emulatortest.New(t, nil)
	key := newRSAKey(t, "r1", jose.RS256)
	var set map[string]any
	_ = json.Unmarshal([]byte(jwks(t, key)), &set)
	var ids []string
	for _, md := range []map[string]any{
		{"grant_types": []string{"client_credentials"}, "scope": "mcp:tools"},
		{"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks": set},
		{"redirect_uris": []string{"http://localhost:1/cb", "com.example.app:/cb"}, "token_endpoint_auth_method": "none"},
	} {
		ids = append(ids, registerJSON(t, env, "acme", md).str("client_id"))
	}
	cs, err := env.Server.Clients("acme")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range cs {
		listed[c.ID] = true
	}
	for _, id := range ids {
		if !listed[id] {
			t.Errorf("registered client %s is not listed by the admin API", id)
		}
	}
	rb, err := env.Server.Client("acme", "report-bot")
	if err != nil {
		t.Fatal(err)
	}
	rb.Name = "renamed"
	if _, err := env.Server.UpsertClient("acme", rb); err != nil {
		t.Fatalf("admin change with registered clients present: %v", err)
	}
	secret, err := env.Server.ClientSecret("acme", ids[0])
	if err != nil {
		t.Fatalf("registered client lost after an admin change: %v", err)
	}
	r := tokenForm(t, env.TokenURL("acme"), url.Values{"grant_type": {"client_credentials"}, "resource": {"https://mcp.acme.test/zendesk"}}, ids[0], secret)
	if r.Status != http.StatusOK {
		t.Errorf("token after an admin change: HTTP %d %v", r.Status, r.Body)
	}
	r = tokenForm(t, env.TokenURL("acme"), assertionForm(key.sign(t, assertionClaims(ids[1], env.TokenURL("acme"), time.Now()), "", true), "resource", "https://mcp.acme.test/zendesk"))
	if r.Status != http.StatusOK {
		t.Errorf("private_key_jwt token after an admin change: HTTP %d %v", r.Status, r.Body)
	}
	if err := env.Server.ResetTenant(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Server.ClientSecret("acme", ids[0]); err == nil {
		t.Errorf("registered client survived a tenant reset")
	}
}
