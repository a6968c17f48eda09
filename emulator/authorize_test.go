package emulator_test

import (
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/oauth2"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// Fixtures of the default configuration (default.yaml).
const (
	azCallback = "http://127.0.0.1:9999/callback"
	azState    = "state-0123456789"
	azNonce    = "nonce-0123456789abcdef"
	azZendesk  = "https://mcp.acme.test/zendesk"
	azSlack    = "https://mcp.acme.test/slack"
	azPostgres = "https://mcp.acme.test/postgres"
	azScopes   = "openid profile email offline_access zendesk:tickets:read"
)

// azSecrets are the secrets of the confidential clients used here.
var azSecrets = map[string]string{"acme-portal": "acme-portal-secret", "mcp-gateway": "mcp-gateway-secret", "support-bot": "support-bot-secret"}

// azAudit records audit events.
type azAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *azAudit) Write(e audit.Event) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
	return int64(len(a.events)), nil
}

// last returns the last event of an endpoint.
func (a *azAudit) last(tb testing.TB, endpoint string) audit.Event {
	tb.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.events) - 1; i >= 0; i-- {
		if a.events[i].Endpoint == endpoint {
			return a.events[i]
		}
	}
	tb.Fatalf("no %s audit event", endpoint)
	return audit.Event{}
}

func azStart(tb testing.TB, cfg *emulator.Config) (*emulatortest.Env, *azAudit) {
	tb.Helper()
	rec := &azAudit{}
	return emulatortest.New(tb, cfg, emulator.WithAuditor(rec)), rec
}

// azNoRedirect is a client that stops at the first redirect, as a
// headless agent driving the authorization step does.
func azNoRedirect() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// azParams is a valid authorization request for alice, headless.
func azParams(clientID, verifier string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {azCallback},
		"scope":                 {azScopes},
		"state":                 {azState},
		"nonce":                 {azNonce},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
		"login_hint":            {"alice"},
	}
}

// azReply is an HTTP answer.
type azReply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r azReply) location(tb testing.TB) (*url.URL, url.Values) {
	tb.Helper()
	if r.Status != http.StatusSeeOther && r.Status != http.StatusFound {
		tb.Fatalf("HTTP %d, want a redirect; body: %s", r.Status, r.Body)
	}
	u, err := url.Parse(r.Header.Get("Location"))
	if err != nil {
		tb.Fatalf("Location %q: %v", r.Header.Get("Location"), err)
	}
	return u, u.Query()
}

func (r azReply) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("HTTP %d, body is not JSON: %q", r.Status, r.Body)
	}
	return m
}

func azDo(tb testing.TB, c *http.Client, req *http.Request) azReply {
	tb.Helper()
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return azReply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// azAuthorize sends an authorization request with GET.
func azAuthorize(tb testing.TB, env *emulatortest.Env, tenant string, q url.Values) azReply {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, env.Issuer(tenant)+"/authorize?"+q.Encode(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return azDo(tb, azNoRedirect(), req)
}

// azCode runs the authorization step headlessly and returns the code
// and its PKCE verifier.
func azCode(tb testing.TB, env *emulatortest.Env, clientID string, mutate func(url.Values)) (code, verifier string) {
	tb.Helper()
	verifier = oauth2.GenerateVerifier()
	q := azParams(clientID, verifier)
	if mutate != nil {
		mutate(q)
	}
	u, rq := azAuthorize(tb, env, "acme", q).location(tb)
	if rq.Get("code") == "" {
		tb.Fatalf("no code in %s", u)
	}
	return rq.Get("code"), verifier
}

// azPost posts a form to a tenant endpoint, with client_secret_basic for
// a client in azSecrets and client_id in the body for a public client.
func azPost(tb testing.TB, env *emulatortest.Env, tenant, endpoint, clientID string, form url.Values) azReply {
	tb.Helper()
	form = azClone(form)
	secret, confidential := azSecrets[clientID]
	if !confidential && clientID != "" {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequest(http.MethodPost, env.Issuer(tenant)+"/"+endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if confidential {
		req.SetBasicAuth(clientID, secret)
	}
	return azDo(tb, http.DefaultClient, req)
}

// azRedeem exchanges a code at acme's token endpoint.
func azRedeem(tb testing.TB, env *emulatortest.Env, clientID, code, verifier string, extra url.Values) azReply {
	tb.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {azCallback}, "code_verifier": {verifier}}
	for k, v := range extra {
		form[k] = v
	}
	return azPost(tb, env, "acme", "token", clientID, form)
}

func azRefresh(tb testing.TB, env *emulatortest.Env, clientID, rt string, extra url.Values) azReply {
	tb.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	for k, v := range extra {
		form[k] = v
	}
	return azPost(tb, env, "acme", "token", clientID, form)
}

// azTokens are the tokens of a successful token response.
type azTokens struct{ access, refresh, id string }

func azOK(tb testing.TB, r azReply) azTokens {
	tb.Helper()
	m := r.json(tb)
	if r.Status != http.StatusOK {
		tb.Fatalf("token endpoint: HTTP %d %v", r.Status, m)
	}
	s := func(k string) string { v, _ := m[k].(string); return v }
	return azTokens{access: s("access_token"), refresh: s("refresh_token"), id: s("id_token")}
}

// azWantError checks an OAuth JSON error.
func azWantError(tb testing.TB, r azReply, status int, code string) {
	tb.Helper()
	m := r.json(tb)
	if r.Status != status || m["error"] != code {
		tb.Fatalf("got HTTP %d %v, want HTTP %d error %q", r.Status, m, status, code)
	}
}

// azActive introspects a token as mcp-gateway (introspect: true).
func azActive(tb testing.TB, env *emulatortest.Env, tok string) bool {
	tb.Helper()
	r := azPost(tb, env, "acme", "introspect", "mcp-gateway", url.Values{"token": {tok}})
	m := r.json(tb)
	if r.Status != http.StatusOK {
		tb.Fatalf("introspect: HTTP %d %v", r.Status, m)
	}
	active, _ := m["active"].(bool)
	return active
}

// azClaims decodes a JWT's payload without verifying it.
func azClaims(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// azAud reads an aud claim (string or array).
func azAud(tb testing.TB, tok string) []string {
	tb.Helper()
	switch a := azClaims(tb, tok)["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	tb.Fatalf("token has no aud")
	return nil
}

func azClone(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// TestAuthorizeCodeFlow runs the headless flow for a public and a
// confidential client and checks the redirect (code, state, RFC 9207
// iss), the tokens, and the audit events.
func TestAuthorizeCodeFlow(t *testing.T) {
	for _, clientID := range []string{"acme-copilot", "acme-portal"} {
		t.Run(clientID, func(t *testing.T) {
			env, rec := azStart(t, nil)
			verifier := oauth2.GenerateVerifier()
			u, q := azAuthorize(t, env, "acme", azParams(clientID, verifier)).location(t)
			if got := u.Scheme + "://" + u.Host + u.Path; got != azCallback {
				t.Errorf("redirected to %s, want %s", got, azCallback)
			}
			if q.Get("code") == "" || q.Get("state") != azState || q.Get("iss") != env.Issuer("acme") {
				t.Errorf("redirect query %v: want a code, state %q and iss %q", q, azState, env.Issuer("acme"))
			}
			ev := rec.last(t, "authorize")
			wantEv := audit.Event{
				Tenant: "acme", Endpoint: "authorize", Method: http.MethodGet, ClientID: clientID, Sub: "user-alice",
				ScopesRequested: strings.Fields(azScopes), ScopesGranted: strings.Fields(azScopes),
				Aud: []string{azZendesk}, Decision: audit.DecisionAllow, Status: http.StatusSeeOther,
			}
			if diff := cmp.Diff(wantEv, ev, cmpopts.IgnoreFields(audit.Event{}, "Time", "Source", "Reason", "GrantID")); diff != "" {
				t.Errorf("authorize audit event (-want +got):\n%s", diff)
			}

			tok := azOK(t, azRedeem(t, env, clientID, q.Get("code"), verifier, nil))
			if tok.refresh == "" || tok.id == "" {
				t.Fatalf("want a refresh token (offline_access) and an ID token (openid): %+v", tok)
			}
			at := azClaims(t, tok.access)
			got := map[string]any{"iss": at["iss"], "sub": at["sub"], "aud": at["aud"], "client_id": at["client_id"], "scope": at["scope"]}
			want := map[string]any{"iss": env.Issuer("acme"), "sub": "user-alice", "aud": azZendesk, "client_id": clientID, "scope": azScopes}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("access token claims (-want +got):\n%s", diff)
			}
			if at["auth_time"] == nil || at["grant_id"] != ev.GrantID {
				t.Errorf("access token auth_time %v, grant_id %v; want auth_time and grant_id %q", at["auth_time"], at["grant_id"], ev.GrantID)
			}
			id := azClaims(t, tok.id)
			gotID := map[string]any{"iss": id["iss"], "sub": id["sub"], "aud": id["aud"], "nonce": id["nonce"], "name": id["name"], "email": id["email"]}
			wantID := map[string]any{"iss": env.Issuer("acme"), "sub": "user-alice", "aud": []any{clientID}, "nonce": azNonce, "name": "Alice Agentowner", "email": "alice@acme.test"}
			if diff := cmp.Diff(wantID, gotID); diff != "" {
				t.Errorf("ID token claims (-want +got):\n%s", diff)
			}
			if id["at_hash"] == nil || id["auth_time"] != at["auth_time"] {
				t.Errorf("ID token at_hash %v auth_time %v; want at_hash and auth_time %v", id["at_hash"], id["auth_time"], at["auth_time"])
			}
			tev := rec.last(t, "token")
			if tev.Sub != "user-alice" || tev.GrantID != ev.GrantID || tev.Jti == "" {
				t.Errorf("token audit event sub %q grant %q jti %q; want user-alice, %q and a jti", tev.Sub, tev.GrantID, tev.Jti, ev.GrantID)
			}
		})
	}
}

// TestAuthorizeErrors is the catalogue of refused authorization requests.
// Errors go back to a verified redirect URI with state and iss; an
// unknown client or redirect URI gets a JSON error and no redirect.
func TestAuthorizeErrors(t *testing.T) {
	env, rec := azStart(t, nil)
	tests := []struct {
		name   string
		client string
		mutate func(url.Values)
		status int    // JSON error status; 0: a redirect error
		want   string // error code
	}{
		{"PKCE missing", "acme-copilot", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, 0, "invalid_request"},
		{"PKCE missing, confidential client", "acme-portal", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, 0, "invalid_request"},
		{"PKCE plain", "acme-copilot", func(q url.Values) { q.Set("code_challenge_method", "plain") }, 0, "invalid_request"},
		{"PKCE method omitted (plain)", "acme-copilot", func(q url.Values) { q.Del("code_challenge_method") }, 0, "invalid_request"},
		{"PKCE unknown method", "acme-copilot", func(q url.Values) { q.Set("code_challenge_method", "S512") }, 0, "invalid_request"},
		{"PKCE missing, sign-in page", "acme-copilot", func(q url.Values) { q.Del("code_challenge"); q.Del("login_hint") }, 0, "invalid_request"},
		{"PKCE plain, sign-in page", "acme-copilot", func(q url.Values) { q.Set("code_challenge_method", "plain"); q.Del("login_hint") }, 0, "invalid_request"},
		{"unknown client", "nobody", nil, http.StatusBadRequest, "invalid_client"},
		{"client of another tenant", "sales-bot", nil, http.StatusBadRequest, "invalid_client"},
		{"no client_id", "", nil, http.StatusBadRequest, "invalid_client"},
		{"redirect_uri mismatch", "acme-copilot", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9999/elsewhere") }, http.StatusBadRequest, "invalid_request"},
		{"redirect_uri of another host", "acme-portal", func(q url.Values) { q.Set("redirect_uri", "https://evil.test/callback") }, http.StatusBadRequest, "invalid_request"},
		{"client without redirect URIs", "support-bot", nil, http.StatusBadRequest, "invalid_request"},
		{"resource not allowed", "acme-copilot", func(q url.Values) { q.Set("resource", azPostgres) }, 0, "invalid_target"},
		{"resource not absolute", "acme-copilot", func(q url.Values) { q.Set("resource", "zendesk") }, 0, "invalid_target"},
		{"resource with fragment", "acme-copilot", func(q url.Values) { q.Set("resource", azZendesk+"#x") }, 0, "invalid_target"},
		{"one of two resources not allowed", "acme-copilot", func(q url.Values) { q["resource"] = []string{azZendesk, azSlack} }, 0, "invalid_target"},
		{"audience not allowed", "acme-copilot", func(q url.Values) { q.Set("audience", "https://api.acme.test/upstream") }, 0, "invalid_target"},
		{"scope not allowed", "acme-copilot", func(q url.Values) { q.Set("scope", "openid postgres:support_db:read") }, 0, "invalid_scope"},
		{"scripted user denies", "acme-copilot", func(q url.Values) { q.Set("login_hint", "mallory") }, 0, "access_denied"},
		{"unknown user", "acme-copilot", func(q url.Values) { q.Set("login_hint", "nobody") }, 0, "login_required"},
		{"user of another tenant", "acme-copilot", func(q url.Values) { q.Set("login_hint", "carol") }, 0, "login_required"},
		{"prompt=none without a user", "acme-copilot", func(q url.Values) { q.Del("login_hint"); q.Set("prompt", "none") }, 0, "login_required"},
		{"unknown prompt", "acme-copilot", func(q url.Values) { q.Set("prompt", "bogus") }, 0, "invalid_request"},
		{"request object", "acme-copilot", func(q url.Values) { q.Set("request", "eyJhbGciOiJub25lIn0.e30.") }, 0, "request_not_supported"},
		{"request_uri", "acme-copilot", func(q url.Values) { q.Set("request_uri", "https://evil.test/req") }, 0, "request_uri_not_supported"},
		{"response_mode form_post", "acme-copilot", func(q url.Values) { q.Set("response_mode", "form_post") }, 0, "unsupported_response_mode"},
		{"response_type token", "acme-copilot", func(q url.Values) { q.Set("response_type", "token") }, 0, "unsupported_response_type"},
		{"response_type missing", "acme-copilot", func(q url.Values) { q.Del("response_type") }, 0, "unsupported_response_type"},
		{"state too short", "acme-copilot", func(q url.Values) { q.Set("state", "abc") }, 0, "invalid_state"},
		{"nonce too short", "acme-copilot", func(q url.Values) { q.Set("nonce", "abc") }, 0, "insufficient_entropy"},
		{"openid without redirect_uri", "acme-copilot", func(q url.Values) { q.Del("redirect_uri") }, http.StatusBadRequest, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := azParams(tt.client, oauth2.GenerateVerifier())
			if tt.client == "" {
				q.Del("client_id")
			}
			if tt.mutate != nil {
				tt.mutate(q)
			}
			r := azAuthorize(t, env, "acme", q)
			if tt.status != 0 {
				if loc := r.Header.Get("Location"); loc != "" {
					t.Fatalf("redirected to %s; an unverified client or redirect URI must get no redirect", loc)
				}
				azWantError(t, r, tt.status, tt.want)
			} else {
				u, rq := r.location(t)
				if got := u.Scheme + "://" + u.Host + u.Path; got != q.Get("redirect_uri") {
					t.Errorf("redirected to %s, want %s", got, q.Get("redirect_uri"))
				}
				got := map[string]string{"error": rq.Get("error"), "state": rq.Get("state"), "iss": rq.Get("iss"), "code": rq.Get("code")}
				want := map[string]string{"error": tt.want, "state": q.Get("state"), "iss": env.Issuer("acme"), "code": ""}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("error redirect (-want +got):\n%s\nerror_description: %s", diff, rq.Get("error_description"))
				}
				if rq.Get("error_description") == "" {
					t.Errorf("no error_description")
				}
			}
			ev := rec.last(t, "authorize")
			if ev.Decision != audit.DecisionDeny || !strings.HasPrefix(ev.Reason, tt.want+":") {
				t.Errorf("audit event decision %q reason %q; want deny for %s", ev.Decision, ev.Reason, tt.want)
			}
		})
	}
}

// TestAuthorizePOST accepts an authorization request sent with POST
// (OpenID Connect Core 3.1.2.1).
func TestAuthorizePOST(t *testing.T) {
	env, _ := azStart(t, nil)
	q := azParams("acme-copilot", oauth2.GenerateVerifier())
	req, _ := http.NewRequest(http.MethodPost, env.Issuer("acme")+"/authorize", strings.NewReader(q.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, rq := azDo(t, azNoRedirect(), req).location(t)
	if rq.Get("code") == "" || rq.Get("iss") != env.Issuer("acme") {
		t.Fatalf("redirect query %v: want a code and iss", rq)
	}
}

// TestTokenCodeErrors is the catalogue of refused code redemptions.
func TestTokenCodeErrors(t *testing.T) {
	env, _ := azStart(t, nil)
	tests := []struct {
		name   string
		client string // redeeming client
		extra  url.Values
		status int
		want   string
	}{
		{"wrong verifier", "acme-copilot", url.Values{"code_verifier": {oauth2.GenerateVerifier()}}, 400, "invalid_grant"},
		{"verifier missing", "acme-copilot", url.Values{"code_verifier": {""}}, 400, "invalid_grant"},
		{"verifier too short", "acme-copilot", url.Values{"code_verifier": {"short"}}, 400, "invalid_grant"},
		{"redirect_uri mismatch", "acme-copilot", url.Values{"redirect_uri": {"http://localhost:9999/callback"}}, 400, "invalid_grant"},
		{"code of another client", "acme-portal", nil, 400, "invalid_grant"},
		{"unknown code", "acme-copilot", url.Values{"code": {"ac.bogus.bogus"}}, 400, "invalid_grant"},
		{"resource outside the grant", "acme-copilot", url.Values{"resource": {azPostgres}}, 400, "invalid_target"},
		{"resource not absolute", "acme-copilot", url.Values{"resource": {"zendesk"}}, 400, "invalid_target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, verifier := azCode(t, env, "acme-copilot", nil)
			azWantError(t, azRedeem(t, env, tt.client, code, verifier, tt.extra), tt.status, tt.want)
		})
	}
}

// TestCodeReuseRevokesGrant: a second redemption of a code fails and, as
// fosite does (RFC 6749 section 4.1.2), revokes what the first one issued.
func TestCodeReuseRevokesGrant(t *testing.T) {
	env, _ := azStart(t, nil)
	code, verifier := azCode(t, env, "acme-copilot", nil)
	tok := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
	if !azActive(t, env, tok.access) || !azActive(t, env, tok.refresh) {
		t.Fatal("fresh tokens are not active")
	}
	azWantError(t, azRedeem(t, env, "acme-copilot", code, verifier, nil), 400, "invalid_grant")
	if azActive(t, env, tok.access) {
		t.Error("access token of the first redemption is still active after the code was reused")
	}
	if azActive(t, env, tok.refresh) {
		t.Error("refresh token of the first redemption is still active after the code was reused")
	}
	azWantError(t, azRefresh(t, env, "acme-copilot", tok.refresh, nil), 400, "invalid_grant")
}

// TestCodeExpires by the tenant's clock.
func TestCodeExpires(t *testing.T) {
	env, _ := azStart(t, nil)
	code, verifier := azCode(t, env, "acme-copilot", nil)
	env.Server.Clock("acme").Advance(emulator.DefaultCodeLifetime + time.Second)
	azWantError(t, azRedeem(t, env, "acme-copilot", code, verifier, nil), 400, "invalid_grant")
}

// TestRefreshRotationReuse: each refresh rotates the refresh token; using
// a rotated one fails and revokes the whole family, the newest refresh
// token and every access token of the grant included.
func TestRefreshRotationReuse(t *testing.T) {
	env, _ := azStart(t, nil)
	code, verifier := azCode(t, env, "acme-copilot", nil)
	first := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
	second := azOK(t, azRefresh(t, env, "acme-copilot", first.refresh, nil))
	if second.refresh == "" || second.refresh == first.refresh {
		t.Fatalf("refresh did not rotate: %q then %q", first.refresh, second.refresh)
	}
	if second.id == "" {
		t.Error("refresh with openid granted returned no ID token")
	} else if id := azClaims(t, second.id); id["sub"] != "user-alice" || id["nonce"] != nil {
		t.Errorf("refreshed ID token sub %v nonce %v; want user-alice and no nonce", id["sub"], id["nonce"])
	}
	if azActive(t, env, first.refresh) {
		t.Error("rotated refresh token is still active")
	}
	for name, tok := range map[string]string{"first access": first.access, "second access": second.access, "newest refresh": second.refresh} {
		if !azActive(t, env, tok) {
			t.Fatalf("%s token inactive before any reuse", name)
		}
	}

	azWantError(t, azRefresh(t, env, "acme-copilot", first.refresh, nil), 400, "invalid_grant")

	for name, tok := range map[string]string{"first access": first.access, "second access": second.access, "newest refresh": second.refresh} {
		if azActive(t, env, tok) {
			t.Errorf("%s token still active after the rotated refresh token was reused", name)
		}
	}
	azWantError(t, azRefresh(t, env, "acme-copilot", second.refresh, nil), 400, "invalid_grant")
}

// TestRefreshAfterClientReenabled: a grant that begins after its client
// was disabled and enabled again, within the same second, refreshes; one
// from before the disabling does not.
func TestRefreshAfterClientReenabled(t *testing.T) {
	env, _ := azStart(t, nil)
	code, verifier := azCode(t, env, "acme-copilot", nil)
	old := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
	if err := env.Server.DisableClient("acme", "acme-copilot"); err != nil {
		t.Fatal(err)
	}
	if err := env.Server.EnableClient("acme", "acme-copilot"); err != nil {
		t.Fatal(err)
	}
	code, verifier = azCode(t, env, "acme-copilot", nil)
	fresh := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
	azOK(t, azRefresh(t, env, "acme-copilot", fresh.refresh, nil))
	azWantError(t, azRefresh(t, env, "acme-copilot", old.refresh, nil), 400, "invalid_grant")
}

// TestRefreshExpires by the tenant's clock.
func TestRefreshExpires(t *testing.T) {
	env, _ := azStart(t, nil)
	code, verifier := azCode(t, env, "acme-portal", nil)
	tok := azOK(t, azRedeem(t, env, "acme-portal", code, verifier, nil))
	env.Server.Clock("acme").Advance(emulator.DefaultRefreshTokenLifetime - time.Minute)
	tok = azOK(t, azRefresh(t, env, "acme-portal", tok.refresh, nil)) // still valid, and rotated
	env.Server.Clock("acme").Advance(emulator.DefaultRefreshTokenLifetime + time.Second)
	azWantError(t, azRefresh(t, env, "acme-portal", tok.refresh, nil), 400, "invalid_grant")
}

// TestRefreshNeedsOfflineAccess: a refresh token only with offline_access.
func TestRefreshNeedsOfflineAccess(t *testing.T) {
	env, _ := azStart(t, nil)
	for _, tt := range []struct {
		scope       string
		wantRefresh bool
		wantID      bool
	}{
		{"openid zendesk:tickets:read", false, true},
		{"zendesk:tickets:read", false, false},
		{"offline_access zendesk:tickets:read", true, false},
		{"", true, true}, // the client's required scopes
	} {
		t.Run(tt.scope, func(t *testing.T) {
			code, verifier := azCode(t, env, "acme-copilot", func(q url.Values) { q.Set("scope", tt.scope) })
			tok := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
			if (tok.refresh != "") != tt.wantRefresh || (tok.id != "") != tt.wantID {
				t.Errorf("refresh token %v, ID token %v; want %v, %v", tok.refresh != "", tok.id != "", tt.wantRefresh, tt.wantID)
			}
		})
	}
}

// azTwoAudiences lets acme-copilot ask for two resources.
func azTwoAudiences() *emulator.Config {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants[0].Clients {
		if c := &cfg.Tenants[0].Clients[i]; c.ID == "acme-copilot" {
			c.Audiences = []string{azZendesk, azSlack}
		}
	}
	return &cfg
}

// TestResourceIndicators: RFC 8707 at the authorization request (the
// grant), at the code redemption and at refresh (narrowing only).
func TestResourceIndicators(t *testing.T) {
	env, _ := azStart(t, azTwoAudiences())
	both := func(q url.Values) { q["resource"] = []string{azZendesk, azSlack} }

	t.Run("default audience", func(t *testing.T) {
		code, verifier := azCode(t, env, "acme-copilot", nil)
		tok := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
		if diff := cmp.Diff([]string{azZendesk}, azAud(t, tok.access)); diff != "" {
			t.Errorf("aud (-want +got):\n%s", diff)
		}
	})
	t.Run("audience parameter", func(t *testing.T) {
		code, verifier := azCode(t, env, "acme-copilot", func(q url.Values) { q.Set("audience", azSlack) })
		tok := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil))
		if diff := cmp.Diff([]string{azSlack}, azAud(t, tok.access)); diff != "" {
			t.Errorf("aud (-want +got):\n%s", diff)
		}
	})
	t.Run("grant, narrow, widen back", func(t *testing.T) {
		code, verifier := azCode(t, env, "acme-copilot", both)
		tok := azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, url.Values{"resource": {azSlack}}))
		if diff := cmp.Diff([]string{azSlack}, azAud(t, tok.access)); diff != "" {
			t.Errorf("code narrowed to slack: aud (-want +got):\n%s", diff)
		}
		for _, s := range []struct {
			name  string
			extra url.Values
			want  []string
		}{
			{"refresh: the whole grant again", nil, []string{azZendesk, azSlack}},
			{"refresh narrowed to zendesk", url.Values{"resource": {azZendesk}}, []string{azZendesk}},
			{"refresh narrowed by audience", url.Values{"audience": {azSlack}}, []string{azSlack}},
		} {
			tok = azOK(t, azRefresh(t, env, "acme-copilot", tok.refresh, s.extra))
			if diff := cmp.Diff(s.want, azAud(t, tok.access)); diff != "" {
				t.Errorf("%s: aud (-want +got):\n%s", s.name, diff)
			}
		}
		azWantError(t, azRefresh(t, env, "acme-copilot", tok.refresh, url.Values{"resource": {azPostgres}}), 400, "invalid_target")
		azWantError(t, azRefresh(t, env, "acme-copilot", tok.refresh, url.Values{"resource": {"not a uri"}}), 400, "invalid_target")
	})
	t.Run("code: resource outside a narrow grant", func(t *testing.T) {
		code, verifier := azCode(t, env, "acme-copilot", func(q url.Values) { q.Set("resource", azZendesk) })
		azWantError(t, azRedeem(t, env, "acme-copilot", code, verifier, url.Values{"resource": {azSlack}}), 400, "invalid_target")
	})
}

// TestUserinfo is the userinfo endpoint's catalogue.
func TestUserinfo(t *testing.T) {
	env, rec := azStart(t, nil)
	userTok := func(scope string) string {
		code, verifier := azCode(t, env, "acme-copilot", func(q url.Values) { q.Set("scope", scope) })
		return azOK(t, azRedeem(t, env, "acme-copilot", code, verifier, nil)).access
	}
	full := userTok(azScopes)
	openidOnly := userTok("openid")
	emailOnly := userTok("openid email")
	noOpenID := userTok("zendesk:tickets:read")
	revoked := userTok(azScopes)
	if r := azPost(t, env, "acme", "revoke", "acme-copilot", url.Values{"token": {revoked}}); r.Status != http.StatusOK {
		t.Fatalf("revoke: HTTP %d %s", r.Status, r.Body)
	}

	get := func(tenant, tok string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, env.Issuer(tenant)+"/userinfo", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return req
	}
	post := func(form url.Values, header string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, env.Issuer("acme")+"/userinfo", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		return req
	}
	query := get("acme", "")
	query.URL.RawQuery = url.Values{"access_token": {full}}.Encode()
	basic := get("acme", "")
	basic.SetBasicAuth("alice", "alice-password")

	alice := map[string]any{"sub": "user-alice", "name": "Alice Agentowner", "email": "alice@acme.test"}
	tests := []struct {
		name      string
		req       *http.Request
		status    int
		body      map[string]any // on success
		challenge string         // error="..." in WWW-Authenticate; "-" for none
	}{
		{"bearer header", get("acme", full), 200, alice, ""},
		{"form body", post(url.Values{"access_token": {full}}, ""), 200, alice, ""},
		{"openid only", get("acme", openidOnly), 200, map[string]any{"sub": "user-alice"}, ""},
		{"openid email", get("acme", emailOnly), 200, map[string]any{"sub": "user-alice", "email": "alice@acme.test"}, ""},
		{"no openid scope", get("acme", noOpenID), 403, nil, "insufficient_scope"},
		{"no token", get("acme", ""), 401, nil, "-"},
		{"garbage token", get("acme", "not.a.token"), 401, nil, "invalid_token"},
		{"basic credentials", basic, 401, nil, "invalid_token"},
		{"token in the query", query, 400, nil, "invalid_request"},
		{"header and body", post(url.Values{"access_token": {full}}, "Bearer "+full), 400, nil, "invalid_request"},
		{"revoked token", get("acme", revoked), 401, nil, "invalid_token"},
		{"acme token at globex", get("globex", full), 401, nil, "invalid_token"},
		{"client_credentials token", get("acme", azCC(t, env)), 403, nil, "insufficient_scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := azDo(t, http.DefaultClient, tt.req)
			if r.Status != tt.status {
				t.Fatalf("HTTP %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			ch := r.Header.Get("WWW-Authenticate")
			if tt.status == 200 {
				if diff := cmp.Diff(tt.body, r.json(t)); diff != "" {
					t.Errorf("userinfo (-want +got):\n%s", diff)
				}
				if ev := rec.last(t, "userinfo"); ev.Decision != audit.DecisionAllow || ev.Sub != "user-alice" || ev.ClientID != "acme-copilot" {
					t.Errorf("audit event %+v; want allow for user-alice via acme-copilot", ev)
				}
				return
			}
			if !strings.HasPrefix(ch, "Bearer ") {
				t.Fatalf("WWW-Authenticate %q: want a Bearer challenge", ch)
			}
			if tt.challenge == "-" {
				if strings.Contains(ch, "error=") {
					t.Errorf("WWW-Authenticate %q: a request without credentials gets no error code (RFC 6750 section 3.1)", ch)
				}
			} else if !strings.Contains(ch, `error="`+tt.challenge+`"`) || !strings.Contains(ch, `error_description="`) {
				t.Errorf("WWW-Authenticate %q: want error=%q with a description", ch, tt.challenge)
			}
			if ev := rec.last(t, "userinfo"); ev.Decision != audit.DecisionDeny || ev.Status != tt.status {
				t.Errorf("audit event decision %q status %d; want deny, %d", ev.Decision, ev.Status, tt.status)
			}
		})
	}

	t.Run("expired token", func(t *testing.T) {
		env.Server.Clock("acme").Advance(emulator.DefaultAccessTokenLifetime + time.Second)
		r := azDo(t, http.DefaultClient, get("acme", full))
		if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("HTTP %d %q; want 401 invalid_token", r.Status, r.Header.Get("WWW-Authenticate"))
		}
	})
}

// azCC gets a client_credentials token of support-bot.
func azCC(tb testing.TB, env *emulatortest.Env) string {
	tb.Helper()
	return azOK(tb, azPost(tb, env, "acme", "token", "support-bot", url.Values{"grant_type": {"client_credentials"}})).access
}

var azHiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// azPageForm reads the hidden fields of the sign-in page.
func azPageForm(tb testing.TB, body []byte) url.Values {
	tb.Helper()
	form := url.Values{}
	for _, m := range azHiddenRE.FindAllStringSubmatch(string(body), -1) {
		form.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if form.Get("csrf") == "" {
		tb.Fatalf("no form token on the page:\n%s", body)
	}
	return form
}

// TestAuthorizePage drives the HTML sign-in and consent page as a
// browser would: GET the page, POST the form with its cookie.
func TestAuthorizePage(t *testing.T) {
	env, rec := azStart(t, nil)
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		c := azNoRedirect()
		c.Jar = jar
		return c
	}
	open := func(c *http.Client, q url.Values) (azReply, url.Values) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, env.Issuer("acme")+"/authorize?"+q.Encode(), nil)
		r := azDo(t, c, req)
		if r.Status != http.StatusOK {
			t.Fatalf("page: HTTP %d %s", r.Status, r.Body)
		}
		return r, azPageForm(t, r.Body)
	}
	submit := func(c *http.Client, form url.Values) azReply {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, env.Issuer("acme")+"/authorize", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return azDo(t, c, req)
	}
	signIn := func(form url.Values, user, password, action string) url.Values {
		form = azClone(form)
		form.Set("username", user)
		form.Set("password", password)
		form.Set("action", action)
		return form
	}
	verifier := oauth2.GenerateVerifier()
	q := azParams("acme-copilot", verifier)
	q.Del("login_hint")
	q.Set("resource", azZendesk)

	t.Run("renders", func(t *testing.T) {
		r, form := open(browser(), q)
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		body := string(r.Body)
		for _, want := range []string{"Copilot (public client, PKCE)", "<form method=\"post\"", "zendesk:tickets:read", azZendesk, `name="password"`} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if r.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(r.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("page can be framed: %v", r.Header)
		}
		form.Del("csrf")
		if diff := cmp.Diff(q, form); diff != "" {
			t.Errorf("hidden fields (-want +got):\n%s", diff)
		}
	})
	t.Run("wrong password re-renders", func(t *testing.T) {
		c := browser()
		_, form := open(c, q)
		for _, cred := range [][2]string{{"bob", "wrong"}, {"nobody", "x"}, {"bob", ""}} {
			r := submit(c, signIn(form, cred[0], cred[1], "approve"))
			if r.Status != http.StatusOK || r.Header.Get("Location") != "" || !strings.Contains(string(r.Body), "Unknown user or wrong password.") {
				t.Errorf("%s/%s: HTTP %d Location %q; want the page again with an error", cred[0], cred[1], r.Status, r.Header.Get("Location"))
			}
			if ev := rec.last(t, "authorize"); ev.Decision != audit.DecisionDeny {
				t.Errorf("audit decision %q, want deny", ev.Decision)
			}
		}
	})
	t.Run("approve", func(t *testing.T) {
		c := browser()
		_, form := open(c, q)
		_, rq := submit(c, signIn(form, "bob", "bob-password", "approve")).location(t)
		if rq.Get("code") == "" || rq.Get("iss") != env.Issuer("acme") || rq.Get("state") != azState {
			t.Fatalf("redirect query %v: want code, iss and state", rq)
		}
		tok := azOK(t, azRedeem(t, env, "acme-copilot", rq.Get("code"), verifier, nil))
		if sub := azClaims(t, tok.id)["sub"]; sub != "user-bob" {
			t.Errorf("ID token sub %v, want user-bob", sub)
		}
		if ev := rec.last(t, "authorize"); ev.Decision != audit.DecisionAllow || ev.Sub != "user-bob" || ev.Method != http.MethodPost {
			t.Errorf("audit event %+v; want allow for user-bob", ev)
		}
	})
	t.Run("deny", func(t *testing.T) {
		c := browser()
		_, form := open(c, q)
		_, rq := submit(c, signIn(form, "", "", "deny")).location(t)
		if rq.Get("error") != "access_denied" || rq.Get("iss") != env.Issuer("acme") || rq.Get("code") != "" {
			t.Fatalf("redirect query %v: want access_denied with iss", rq)
		}
	})
	t.Run("rejected submissions", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			send func() azReply
		}{
			{"scope tampered", func() azReply {
				c := browser()
				_, form := open(c, q)
				form.Set("scope", azScopes+" zendesk:tickets:write")
				return submit(c, signIn(form, "bob", "bob-password", "approve"))
			}},
			{"redirect_uri tampered", func() azReply {
				c := browser()
				_, form := open(c, q)
				form.Set("redirect_uri", "http://localhost:9999/callback")
				return submit(c, signIn(form, "bob", "bob-password", "approve"))
			}},
			{"no cookie", func() azReply {
				_, form := open(browser(), q)
				return submit(azNoRedirect(), signIn(form, "bob", "bob-password", "approve"))
			}},
			{"another browser's cookie", func() azReply {
				_, form := open(browser(), q)
				other := browser()
				open(other, q)
				return submit(other, signIn(form, "bob", "bob-password", "approve"))
			}},
			{"forged token", func() azReply {
				c := browser()
				_, form := open(c, q)
				form.Set("csrf", "99999999999.AAAA")
				return submit(c, signIn(form, "bob", "bob-password", "approve"))
			}},
			{"expired form", func() azReply {
				c := browser()
				_, form := open(c, q)
				env.Server.Clock("acme").Advance(11 * time.Minute)
				defer env.Server.Clock("acme").Advance(-11 * time.Minute)
				return submit(c, signIn(form, "bob", "bob-password", "approve"))
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := tt.send()
				if r.Status != http.StatusForbidden || r.Header.Get("Location") != "" || !strings.Contains(string(r.Body), "expired or was not issued to this browser") {
					t.Errorf("HTTP %d Location %q; want 403 and the page again", r.Status, r.Header.Get("Location"))
				}
			})
		}
	})
}

// TestAuthorizePageEscapes: what the configuration and the request put on
// the page is escaped.
func TestAuthorizePageEscapes(t *testing.T) {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants[0].Clients {
		if c := &cfg.Tenants[0].Clients[i]; c.ID == "acme-copilot" {
			c.Name = `<script>alert("name")</script>`
		}
	}
	env, _ := azStart(t, &cfg)
	q := azParams("acme-copilot", oauth2.GenerateVerifier())
	q.Del("login_hint")
	q.Set("state", `"><script>alert("state")</script>`)
	r := azAuthorize(t, env, "acme", q)
	if r.Status != http.StatusOK {
		t.Fatalf("HTTP %d %s", r.Status, r.Body)
	}
	if strings.Contains(string(r.Body), "<script>") {
		t.Errorf("page contains an unescaped <script>:\n%s", r.Body)
	}
	if !strings.Contains(string(r.Body), "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;") {
		t.Errorf("page lacks the escaped client name:\n%s", r.Body)
	}
	if got := azPageForm(t, r.Body).Get("state"); got != q.Get("state") {
		t.Errorf("state round trip: got %q, want %q", got, q.Get("state"))
	}
}

// FuzzAuthorizeRequest sends arbitrary query strings and bodies to the
// authorization endpoint: it must never panic, never answer 5xx, and
// redirect only to a registered URI, with iss.
func FuzzAuthorizeRequest(f *testing.F) {
	cfg := emulator.DefaultConfig()
	cfg.PublicBaseURL = "http://127.0.0.1:1"
	s, err := emulator.New(f.Context(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	iss := s.Issuer("acme")
	v := oauth2.GenerateVerifier()
	good := azParams("acme-copilot", v)
	f.Add(good.Encode(), "")
	f.Add("", good.Encode())
	for _, mutate := range []func(url.Values){
		func(q url.Values) { q.Del("code_challenge") },
		func(q url.Values) { q.Set("code_challenge_method", "plain") },
		func(q url.Values) { q.Del("login_hint") },
		func(q url.Values) { q.Del("login_hint"); q.Set("prompt", "none") },
		func(q url.Values) { q.Set("login_hint", "mallory") },
		func(q url.Values) { q.Set("resource", "https://mcp.acme.test/zendesk#frag") },
		func(q url.Values) { q.Set("request_uri", "http://127.0.0.1:1/x") },
		func(q url.Values) { q.Set("request", "a.b.c") },
		func(q url.Values) { q.Set("response_mode", "form_post") },
		func(q url.Values) { q.Set("max_age", "-9223372036854775808") },
		func(q url.Values) { q.Set("max_age", "9223372036854775807") },
		func(q url.Values) { q.Set("id_token_hint", "e30.e30.") },
		func(q url.Values) { q.Set("prompt", "none login") },
		func(q url.Values) { q.Set("acr_values", "1"); q.Set("claims", "{") },
		func(q url.Values) { q.Set("registration", "{}") },
		func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1:9999/callback#x") },
		func(q url.Values) { q.Set("scope", "openid openid "+strings.Repeat("x", 100)) },
		func(q url.Values) { q.Set("csrf", "1.2") },
	} {
		q := azClone(good)
		mutate(q)
		f.Add(q.Encode(), "")
	}
	f.Add("%zz", "")
	f.Add("client_id=acme-copilot&client_id=acme-portal", "a=%")
	f.Add("", "csrf=1&username=bob&password=bob-password&action=approve&"+good.Encode())
	f.Fuzz(func(t *testing.T, query, body string) {
		method := http.MethodGet
		var rd io.Reader
		if body != "" {
			method, rd = http.MethodPost, strings.NewReader(body)
		}
		req := httptest.NewRequest(method, "/t/acme/authorize", rd)
		req.URL.RawQuery = query
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d for query %q body %q: %s", w.Code, query, body, w.Body)
		}
		if loc := w.Header().Get("Location"); loc != "" {
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("Location %q: %v", loc, err)
			}
			// Loopback redirect URIs match on any port (RFC 8252 section 7.3).
			if h := u.Hostname(); u.Scheme != "http" || (h != "127.0.0.1" && h != "localhost") || u.Path != "/callback" {
				t.Fatalf("redirect to %q, not a registered URI", loc)
			}
			if u.Query().Get("iss") != iss {
				t.Fatalf("redirect %q without iss", loc)
			}
		}
	})
}
