package emulator_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// admEnv is an emulator with helpers to drive its admin API over HTTP.
type admEnv struct {
	*emulatortest.Env
	adminToken string // admin token, when configured
}

func newAdmEnv(tb testing.TB, cfg *emulator.Config, opts ...emulator.Option) *admEnv {
	tb.Helper()
	e := &admEnv{Env: emulatortest.New(tb, cfg, opts...)}
	if cfg != nil {
		e.adminToken = cfg.AdminToken
	}
	return e
}

// admReply is an admin API answer.
type admReply struct {
	Status int
	Header http.Header
	Raw    []byte
}

func (r admReply) decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Raw, v); err != nil {
		tb.Fatalf("HTTP %d: body is not JSON: %v: %q", r.Status, err, r.Raw)
	}
}

func (r admReply) obj(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	r.decode(tb, &m)
	return m
}

// call sends an admin request; body is nil, a string (sent raw) or a value
// marshalled as JSON.
func (e *admEnv) call(tb testing.TB, method, path string, body any, hdr ...string) admReply {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.AdminURL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+e.adminToken)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return admDo(tb, req)
}

func admDo(tb testing.TB, req *http.Request) admReply {
	tb.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return admReply{Status: res.StatusCode, Header: res.Header, Raw: b}
}

// ok sends an admin request that must succeed and decodes its answer
// into out (if not nil).
func (e *admEnv) ok(tb testing.TB, method, path string, body, out any) {
	tb.Helper()
	r := e.call(tb, method, path, body)
	if r.Status/100 != 2 {
		tb.Fatalf("%s %s: HTTP %d: %s", method, path, r.Status, r.Raw)
	}
	if out != nil {
		r.decode(tb, out)
	}
}

// cc asks for a client_credentials token with client_secret_basic.
func (e *admEnv) cc(tb testing.TB, tenant, id, secret string) admReply {
	tb.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, e.TokenURL(tenant), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	return admDo(tb, req)
}

// token gets a support-bot token from acme.
func (e *admEnv) token(tb testing.TB) string {
	tb.Helper()
	r := e.cc(tb, "acme", "support-bot", "support-bot-secret")
	if r.Status != http.StatusOK {
		tb.Fatalf("client_credentials: HTTP %d: %s", r.Status, r.Raw)
	}
	tok, _ := r.obj(tb)["access_token"].(string)
	return tok
}

// introspect asks acme's introspection endpoint as mcp-gateway.
func (e *admEnv) introspect(tb testing.TB, tenant, tok string) map[string]any {
	tb.Helper()
	form := url.Values{"token": {tok}}
	req, _ := http.NewRequest(http.MethodPost, e.Issuer(tenant)+"/introspect", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mcp-gateway", "mcp-gateway-secret")
	r := admDo(tb, req)
	if r.Status != http.StatusOK {
		tb.Fatalf("introspect: HTTP %d: %s", r.Status, r.Raw)
	}
	return r.obj(tb)
}

func (e *admEnv) active(tb testing.TB, tok string) bool {
	tb.Helper()
	a, _ := e.introspect(tb, "acme", tok)["active"].(bool)
	return a
}

// jwksKIDs lists the kids a tenant's JWKS publishes.
func (e *admEnv) jwksKIDs(tb testing.TB, tenant string) []string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.Issuer(tenant)+"/jwks", nil)
	r := admDo(tb, req)
	var set jose.JSONWebKeySet
	r.decode(tb, &set)
	kids := []string{}
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	slices.Sort(kids)
	return kids
}

// mint mints a token on acme through the admin API.
type admMinted struct {
	Token  string           `json:"token"`
	Claims map[string]any   `json:"claims"`
	Header map[string]any   `json:"header"`
	JWK    *jose.JSONWebKey `json:"jwk"`
}

func (e *admEnv) mint(tb testing.TB, tenant string, req map[string]any) admMinted {
	tb.Helper()
	var m admMinted
	e.ok(tb, http.MethodPost, "/admin/v1/tenants/"+tenant+"/mint", req, &m)
	return m
}

func jwtHeader(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func jwtPayload(tb testing.TB, tok string) map[string]any {
	tb.Helper()
	parts := strings.Split(tok, ".")
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

// wantError checks a JSON error answer.
func wantError(tb testing.TB, r admReply, status int, mention string) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("HTTP %d, want %d: %s", r.Status, status, r.Raw)
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	r.decode(tb, &e)
	if e.Error == "" || e.Description == "" {
		tb.Fatalf("error answer without error and error_description: %s", r.Raw)
	}
	if !strings.Contains(e.Description, mention) {
		tb.Errorf("error_description %q does not mention %q", e.Description, mention)
	}
}

func TestAdminRequestChecks(t *testing.T) {
	env := newAdmEnv(t, nil)
	u, _ := url.Parse(env.AdminURL)
	port := u.Port()
	big := `{"claims":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`
	tests := []struct {
		name    string
		method  string
		path    string
		body    any
		hdr     []string
		status  int
		mention string
	}{
		{"text/plain body", "POST", "/admin/v1/tenants", `{"name":"x"}`, []string{"Content-Type", "text/plain"}, 415, "application/json"},
		{"form body", "POST", "/admin/v1/tenants/acme/clock", `{}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"body without content type", "POST", "/admin/v1/tenants/acme/clock", `{}`, []string{"Content-Type", ""}, 415, "Content-Type"},
		{"foreign origin", "GET", "/admin/v1/tenants", nil, []string{"Origin", "http://evil.example"}, 403, "Origin"},
		{"null origin", "POST", "/admin/v1/reset", nil, []string{"Origin", "null"}, 403, "Origin"},
		{"loopback origin of another port", "GET", "/admin/v1/tenants", nil, []string{"Origin", "http://127.0.0.1:1"}, 403, "Origin"},
		{"foreign host", "GET", "/admin/v1/tenants", nil, []string{"Host", "evil.example"}, 403, "Host"},
		{"rebound host with the admin port", "GET", "/admin/v1/tenants", nil, []string{"Host", "attacker.test:" + port}, 403, "Host"},
		{"cross-site fetch", "GET", "/admin/v1/tenants", nil, []string{"Sec-Fetch-Site", "cross-site"}, 403, "Sec-Fetch-Site"},
		{"bad JSON", "POST", "/admin/v1/tenants", `{"name":`, nil, 400, "body"},
		{"not an object", "POST", "/admin/v1/tenants/acme/mint", `[1,2]`, nil, 400, "object"},
		{"trailing data", "POST", "/admin/v1/tenants/acme/clock", `{} {}`, nil, 400, "after"},
		{"unknown tenant field", "POST", "/admin/v1/tenants", `{"name":"x","colour":"red"}`, nil, 400, "colour"},
		{"wrong type deep in a client", "POST", "/admin/v1/tenants/acme/clients", `{"id":"a","lifetimes":{"access_token":"ten"}}`, nil, 400, "lifetimes.access_token"},
		{"invalid tenant name", "POST", "/admin/v1/tenants", `{"name":"Bad Name"}`, nil, 400, "name"},
		{"client scope outside the catalogue", "POST", "/admin/v1/tenants/acme/clients", `{"id":"z","required_scopes":["root"]}`, nil, 400, "scopes[0]"},
		{"mint claims not an object", "POST", "/admin/v1/tenants/acme/mint", `{"claims":"x"}`, nil, 400, "claims"},
		{"mint unknown field", "POST", "/admin/v1/tenants/acme/mint", `{"claim":{}}`, nil, 400, "claim"},
		{"mint bad lifetime", "POST", "/admin/v1/tenants/acme/mint", `{"lifetime":"soon"}`, nil, 400, "lifetime"},
		{"clock bad at", "POST", "/admin/v1/tenants/acme/clock", `{"at":"tomorrow"}`, nil, 400, "at"},
		{"clock bad advance type", "POST", "/admin/v1/tenants/acme/clock", `{"advance":90}`, nil, 400, "advance"},
		{"publish without published", "POST", "/admin/v1/tenants/acme/keys/x/publish", `{}`, nil, 400, "published"},
		{"audit bad limit", "GET", "/admin/v1/audit?limit=many", nil, nil, 400, "limit"},
		{"unknown tenant", "GET", "/admin/v1/tenants/nope/clients", nil, nil, 404, "nope"},
		{"unknown tenant mint", "POST", "/admin/v1/tenants/nope/mint", `{}`, nil, 404, "nope"},
		{"unknown client", "POST", "/admin/v1/tenants/acme/clients/nope/disable", nil, nil, 404, "nope"},
		{"unknown key", "POST", "/admin/v1/tenants/acme/keys/nope/withdraw", nil, nil, 404, "nope"},
		{"no such endpoint", "GET", "/admin/v1/nothing", nil, nil, 404, "/admin/v1/nothing"},
		{"wrong method", "DELETE", "/admin/v1/tenants", nil, nil, 405, "DELETE"},
		{"tenant exists", "POST", "/admin/v1/tenants", `{"name":"acme"}`, nil, 409, "acme"},
		{"client exists", "POST", "/admin/v1/tenants/acme/clients", `{"id":"support-bot","secret":"x"}`, nil, 409, "support-bot"},
		{"too large", "POST", "/admin/v1/tenants/acme/mint", big, nil, 413, "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := env.call(t, tc.method, tc.path, tc.body, tc.hdr...)
			wantError(t, r, tc.status, tc.mention)
		})
	}
	// The checks let the API's own callers through.
	for _, hdr := range [][]string{
		{"Origin", env.AdminURL},
		{"Host", "localhost:" + port},
		{"Sec-Fetch-Site", "same-origin"},
		{"Content-Type", "application/json; charset=utf-8"},
	} {
		if r := env.call(t, "GET", "/admin/v1/tenants", nil, hdr...); r.Status != http.StatusOK {
			t.Errorf("%v: HTTP %d: %s", hdr, r.Status, r.Raw)
		}
	}
}

func TestAdminToken(t *testing.T) {
	cfg := emulator.DefaultConfig()
	cfg.AdminToken = "s3cret-admin-token"
	env := newAdmEnv(t, &cfg)
	tests := []struct {
		name, auth string
		status     int
	}{
		{"missing", "", 401},
		{"wrong", "Bearer nope", 401},
		{"prefix of the token", "Bearer s3cret", 401},
		{"basic", "Basic czNjcmV0LWFkbWluLXRva2Vu", 401},
		{"right", "Bearer s3cret-admin-token", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, env.AdminURL+"/admin/v1/tenants", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			r := admDo(t, req)
			if tc.status == 401 {
				wantError(t, r, 401, "Bearer")
				if r.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if r.Status != tc.status {
				t.Fatalf("HTTP %d: %s", r.Status, r.Raw)
			}
		})
	}
}

func TestAdminTenantLifecycle(t *testing.T) {
	env := newAdmEnv(t, nil)
	iso := map[string]any{
		"name":      "iso",
		"scopes":    []string{"x:read"},
		"audiences": []string{"https://rs.iso.test"},
		"lifetimes": map[string]any{"access_token": "2m"},
		"clients": []map[string]any{{
			"id": "bot", "secret": "bot-secret", "required_scopes": []string{"x:read"},
			"audiences": []string{"https://rs.iso.test"}, "default_audience": []string{"https://rs.iso.test"},
		}},
	}
	var created map[string]any
	r := env.call(t, "POST", "/admin/v1/tenants", iso)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: HTTP %d: %s", r.Status, r.Raw)
	}
	r.decode(t, &created)
	if lt := created["lifetimes"].(map[string]any); lt["access_token"] != "2m0s" || lt["refresh_token"] != "24h0m0s" {
		t.Errorf("lifetimes not filled from the defaults: %v", lt)
	}

	disc := func() int {
		req, _ := http.NewRequest(http.MethodGet, env.URL+"/t/iso/.well-known/openid-configuration", nil)
		return admDo(t, req).Status
	}
	if s := disc(); s != http.StatusOK {
		t.Fatalf("discovery of the new tenant: HTTP %d", s)
	}
	tr := env.cc(t, "iso", "bot", "bot-secret")
	if tr.Status != http.StatusOK {
		t.Fatalf("client_credentials at the new tenant: HTTP %d: %s", tr.Status, tr.Raw)
	}
	tok := tr.obj(t)["access_token"].(string)
	if got := jwtPayload(t, tok)["iss"]; got != env.Issuer("iso") {
		t.Errorf("iss %v, want %s", got, env.Issuer("iso"))
	}
	if env.active(t, tok) {
		t.Error("a token of tenant iso is active at tenant acme")
	}

	var infos []emulator.TenantInfo
	env.ok(t, "GET", "/admin/v1/tenants", nil, &infos)
	want := []emulator.TenantInfo{
		{Name: "acme", Issuer: env.Issuer("acme"), Configured: true},
		{Name: "globex", Issuer: env.Issuer("globex"), Configured: true},
		{Name: "iso", Issuer: env.Issuer("iso")},
	}
	if d := cmp.Diff(want, infos); d != "" {
		t.Errorf("tenants (-want +got):\n%s", d)
	}

	if r := env.call(t, "DELETE", "/admin/v1/tenants/iso", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: HTTP %d: %s", r.Status, r.Raw)
	}
	if s := disc(); s != http.StatusNotFound {
		t.Errorf("discovery after delete: HTTP %d, want 404", s)
	}
	wantError(t, env.call(t, "DELETE", "/admin/v1/tenants/iso", nil), 404, "iso")
	if ks, _ := env.Server.Keys("iso"); ks != nil {
		t.Errorf("keys of a deleted tenant: %v", ks)
	}
}

func TestAdminTenantRoundTrip(t *testing.T) {
	env := newAdmEnv(t, nil)
	var acme map[string]any
	env.ok(t, "GET", "/admin/v1/tenants/acme", nil, &acme)
	// What GET answers, PUT takes back unchanged.
	var put map[string]any
	env.ok(t, "PUT", "/admin/v1/tenants/acme", acme, &put)
	if d := cmp.Diff(acme, put); d != "" {
		t.Errorf("GET then PUT changed the configuration (-get +put):\n%s", d)
	}
	// A change of lifetimes takes effect for new tokens.
	acme["lifetimes"].(map[string]any)["access_token"] = "1m"
	for _, c := range acme["clients"].([]any) {
		delete(c.(map[string]any), "lifetimes")
	}
	env.ok(t, "PUT", "/admin/v1/tenants/acme", acme, nil)
	p := jwtPayload(t, env.token(t))
	if got := p["exp"].(float64) - p["iat"].(float64); got != 60 {
		t.Errorf("lifetime after PUT: %vs, want 60s", got)
	}
	wantError(t, env.call(t, "PUT", "/admin/v1/tenants/acme", map[string]any{"name": "other"}), 400, "name")
	wantError(t, env.call(t, "PUT", "/admin/v1/tenants/nope", map[string]any{}), 404, "nope")
}

func TestAdminDeprovisionClient(t *testing.T) {
	env := newAdmEnv(t, nil)
	held := env.token(t)
	// A token in which support-bot acts for alice, held by mcp-gateway.
	acting := env.mint(t, "acme", map[string]any{"claims": map[string]any{
		"client_id": "mcp-gateway", "sub": "user-alice",
		"act": map[string]any{"sub": "support-bot", "client_id": "support-bot"},
	}}).Token
	other := env.mint(t, "acme", map[string]any{"claims": map[string]any{"client_id": "report-bot"}}).Token
	for _, tok := range []string{held, acting, other} {
		if !env.active(t, tok) {
			t.Fatal("token inactive before deprovisioning")
		}
	}

	var c map[string]any
	env.ok(t, "POST", "/admin/v1/tenants/acme/clients/support-bot/disable", nil, &c)
	if c["disabled"] != true {
		t.Errorf("disable answered %v", c)
	}
	if env.active(t, held) {
		t.Error("a token the disabled client holds is active")
	}
	if env.active(t, acting) {
		t.Error("a token the disabled client acts in is active")
	}
	if !env.active(t, other) {
		t.Error("another client's token became inactive")
	}
	r := env.cc(t, "acme", "support-bot", "support-bot-secret")
	if r.Status != http.StatusUnauthorized || r.obj(t)["error"] != "invalid_client" {
		t.Errorf("disabled client authenticates: HTTP %d: %s", r.Status, r.Raw)
	}

	// Enabled again (a second later: revocations have a resolution of one
	// second), it gets new tokens; the old ones stay inactive.
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"advance": "2s"}, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/clients/support-bot/enable", nil, nil)
	if !env.active(t, env.token(t)) {
		t.Error("a new token of the re-enabled client is inactive")
	}
	if env.active(t, held) {
		t.Error("an old token became active again after enable")
	}

	// Deleting a client works the same way, and it is gone.
	if r := env.call(t, "DELETE", "/admin/v1/tenants/acme/clients/report-bot", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete client: HTTP %d: %s", r.Status, r.Raw)
	}
	if env.active(t, other) {
		t.Error("a token of the deleted client is active")
	}
	wantError(t, env.call(t, "GET", "/admin/v1/tenants/acme/clients/report-bot", nil), 404, "report-bot")
	if r := env.cc(t, "acme", "report-bot", "report-bot-secret"); r.Status != http.StatusUnauthorized {
		t.Errorf("deleted client authenticates: HTTP %d", r.Status)
	}
}

func TestAdminClientCRUD(t *testing.T) {
	env := newAdmEnv(t, nil)
	var c map[string]any
	r := env.call(t, "POST", "/admin/v1/tenants/acme/clients", map[string]any{
		"id": "new-bot", "required_scopes": []string{"mcp:tools"},
		"audiences": []string{"https://mcp.acme.test/slack"}, "default_audience": []string{"https://mcp.acme.test/slack"},
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: HTTP %d: %s", r.Status, r.Raw)
	}
	r.decode(t, &c)
	secret, _ := c["secret"].(string)
	if secret == "" || c["auth_method"] != "client_secret_basic" {
		t.Fatalf("a client without a secret gets a generated one and the default method: %v", c)
	}
	if r := env.cc(t, "acme", "new-bot", secret); r.Status != http.StatusOK {
		t.Fatalf("new client: HTTP %d: %s", r.Status, r.Raw)
	}
	var list []map[string]any
	env.ok(t, "GET", "/admin/v1/tenants/acme/clients", nil, &list)
	if len(list) != 6 {
		t.Errorf("%d clients, want 6", len(list))
	}
	// PUT replaces; the secret changes with it.
	c["secret"] = "rotated"
	env.ok(t, "PUT", "/admin/v1/tenants/acme/clients/new-bot", c, nil)
	if r := env.cc(t, "acme", "new-bot", secret); r.Status != http.StatusUnauthorized {
		t.Errorf("old secret after PUT: HTTP %d", r.Status)
	}
	if r := env.cc(t, "acme", "new-bot", "rotated"); r.Status != http.StatusOK {
		t.Errorf("new secret after PUT: HTTP %d: %s", r.Status, r.Raw)
	}
	wantError(t, env.call(t, "PUT", "/admin/v1/tenants/acme/clients/new-bot", map[string]any{"id": "x"}), 400, "id")
}

func TestAdminUsers(t *testing.T) {
	env := newAdmEnv(t, nil)
	var users []map[string]any
	env.ok(t, "GET", "/admin/v1/tenants/acme/users", nil, &users)
	var names []string
	for _, u := range users {
		names = append(names, u["username"].(string))
	}
	if d := cmp.Diff([]string{"alice", "bob", "mallory"}, names); d != "" {
		t.Errorf("users (-want +got):\n%s", d)
	}
	var dave map[string]any
	r := env.call(t, "POST", "/admin/v1/tenants/acme/users", map[string]any{"username": "dave", "password": "dave-password"})
	if r.Status != http.StatusCreated {
		t.Fatalf("HTTP %d: %s", r.Status, r.Raw)
	}
	r.decode(t, &dave)
	if dave["subject"] != "user:dave" {
		t.Errorf("default subject %v", dave["subject"])
	}
	wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/users", map[string]any{"username": "dave"}), 409, "dave")
	wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/users", map[string]any{"username": "eve", "subject": "support-bot"}), 400, "subject")
	if r := env.call(t, "DELETE", "/admin/v1/tenants/acme/users/dave", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: HTTP %d", r.Status)
	}
	wantError(t, env.call(t, "GET", "/admin/v1/tenants/acme/users/dave", nil), 404, "dave")
	wantError(t, env.call(t, "DELETE", "/admin/v1/tenants/acme/users/dave", nil), 404, "dave")
}

func TestAdminMint(t *testing.T) {
	env := newAdmEnv(t, nil)
	acmeKID, _ := env.Server.ActiveKID("acme")
	globexKID, _ := env.Server.ActiveKID("globex")
	now := time.Now().Unix()

	tests := []struct {
		name   string
		req    map[string]any
		active bool
		check  func(t *testing.T, m admMinted)
	}{
		{
			name:   "defaults",
			req:    map[string]any{"claims": map[string]any{"client_id": "support-bot"}},
			active: true,
			check: func(t *testing.T, m admMinted) {
				p := jwtPayload(t, m.Token)
				want := map[string]any{
					"iss": env.Issuer("acme"), "sub": "support-bot", "client_id": "support-bot",
					"aud":   "https://mcp.acme.test/zendesk",
					"scope": "zendesk:tickets:read zendesk:tickets:write postgres:support_db:read",
				}
				for k, v := range want {
					if p[k] != v {
						t.Errorf("%s = %v, want %v", k, p[k], v)
					}
				}
				if exp, iat := p["exp"].(float64), p["iat"].(float64); exp-iat != 600 || int64(iat) < now-5 {
					t.Errorf("iat %v exp %v: want real time and 10m", iat, exp)
				}
				if d := cmp.Diff(map[string]any{"alg": "ES256", "kid": acmeKID, "typ": "at+jwt"}, jwtHeader(t, m.Token)); d != "" {
					t.Errorf("header (-want +got):\n%s", d)
				}
				if m.JWK == nil || m.JWK.KeyID != acmeKID {
					t.Errorf("jwk %v", m.JWK)
				}
			},
		},
		{
			name: "any claims",
			req: map[string]any{"claims": map[string]any{
				"client_id": "mcp-gateway", "sub": "user-alice", "aud": []string{"https://a.test", "https://b.test"},
				"act": map[string]any{"sub": "support-bot", "client_id": "support-bot"},
				"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
				"ctx": map[string]any{"env": "prod", "net": []string{"10.0.0.0/8"}}, "custom": json.RawMessage("12345678901234567890"),
			}},
			active: true,
			check: func(t *testing.T, m admMinted) {
				in := env.introspect(t, "acme", m.Token)
				if in["act"].(map[string]any)["client_id"] != "support-bot" || in["cnf"] == nil || in["ctx"].(map[string]any)["env"] != "prod" {
					t.Errorf("introspection lost act, cnf or ctx: %v", in)
				}
				if !strings.Contains(string(mustB64(t, m.Token, 1)), `"custom":12345678901234567890`) {
					t.Error("a large number was not kept verbatim")
				}
			},
		},
		{
			name:   "alg none",
			req:    map[string]any{"key": "none", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				if !strings.HasSuffix(m.Token, ".") || jwtHeader(t, m.Token)["alg"] != "none" {
					t.Errorf("not an unsigned token: %s", m.Token)
				}
			},
		},
		{
			name:   "rogue key",
			req:    map[string]any{"key": "rogue", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				kid, _ := jwtHeader(t, m.Token)["kid"].(string)
				if kid == "" || slices.Contains(env.jwksKIDs(t, "acme"), kid) || kid == acmeKID {
					t.Errorf("rogue kid %q is published", kid)
				}
				jws, err := jose.ParseSigned(m.Token, []jose.SignatureAlgorithm{jose.ES256})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := jws.Verify(m.JWK); err != nil {
					t.Errorf("does not verify with the returned JWK: %v", err)
				}
			},
		},
		{
			name:   "other tenant's key",
			req:    map[string]any{"key": "other-tenant:globex", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				if h := jwtHeader(t, m.Token); h["kid"] != globexKID || m.Claims["iss"] != env.Issuer("acme") {
					t.Errorf("header %v claims %v", h, m.Claims)
				}
			},
		},
		{
			name:   "expired by offset",
			req:    map[string]any{"offset": "-15m", "lifetime": "10m", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				if exp := jwtPayload(t, m.Token)["exp"].(float64); int64(exp) > time.Now().Unix()-290 {
					t.Errorf("exp %v is not 5 minutes ago", exp)
				}
			},
		},
		{
			name:   "not yet valid by offset",
			req:    map[string]any{"offset": "1h", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
		},
		{
			name:   "hs256 with the tenant's public key (alg confusion)",
			req:    map[string]any{"key": "hs256", "hs256_secret_from": "tenant-public-pem", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				h := jwtHeader(t, m.Token)
				if h["alg"] != "HS256" || h["kid"] != acmeKID {
					t.Errorf("header %v", h)
				}
				// The HMAC key is the PEM a verifier holding the public key has.
				var set jose.JSONWebKeySet
				req, _ := http.NewRequest(http.MethodGet, env.Issuer("acme")+"/jwks", nil)
				admDo(t, req).decode(t, &set)
				der, _ := x509.MarshalPKIXPublicKey(set.Keys[0].Key)
				mac := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
				i := strings.LastIndexByte(m.Token, '.')
				mac.Write([]byte(m.Token[:i]))
				if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != m.Token[i+1:] {
					t.Error("HS256 signature is not keyed by the tenant's public key PEM")
				}
			},
		},
		{
			name:   "hs256 with a chosen secret",
			req:    map[string]any{"key": "hs256", "hs256_secret": "secret", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
		},
		{
			name:   "hs256 with an empty key and a traversal kid",
			req:    map[string]any{"key": "hs256", "hs256_secret_from": "empty", "header": map[string]any{"kid": "../../dev/null"}, "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				mac := hmac.New(sha256.New, nil)
				i := strings.LastIndexByte(m.Token, '.')
				mac.Write([]byte(m.Token[:i]))
				if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != m.Token[i+1:] || jwtHeader(t, m.Token)["kid"] != "../../dev/null" {
					t.Error("not HMAC-SHA256 with an empty key under the given kid")
				}
			},
		},
		{
			name:   "alg header overridden over a real signature",
			req:    map[string]any{"header": map[string]any{"alg": "ES384"}, "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
		},
		{
			name:   "unknown kid",
			req:    map[string]any{"header": map[string]any{"kid": "nope", "jku": "https://evil.test/jwks"}, "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				if h := jwtHeader(t, m.Token); h["jku"] != "https://evil.test/jwks" {
					t.Errorf("jku not written: %v", h)
				}
			},
		},
		{
			name:   "embedded jwk of a rogue key",
			req:    map[string]any{"key": "rogue", "header": map[string]any{"jwk": "self"}, "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				if _, ok := jwtHeader(t, m.Token)["jwk"].(map[string]any); !ok {
					t.Error("no embedded jwk")
				}
			},
		},
		{
			name:   "typ JWT",
			req:    map[string]any{"typ": "JWT", "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
		},
		{
			name:   "typ removed",
			req:    map[string]any{"header": map[string]any{"typ": nil}, "claims": map[string]any{"client_id": "support-bot"}},
			active: false,
			check: func(t *testing.T, m admMinted) {
				if _, ok := jwtHeader(t, m.Token)["typ"]; ok {
					t.Error("typ not removed")
				}
			},
		},
		{
			name:   "no aud",
			req:    map[string]any{"claims": map[string]any{"client_id": "support-bot", "aud": nil, "scope": nil}},
			active: true,
			check: func(t *testing.T, m admMinted) {
				p := jwtPayload(t, m.Token)
				if _, ok := p["aud"]; ok {
					t.Error("aud not left out")
				}
				if _, ok := p["scope"]; ok {
					t.Error("scope not left out")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := env.mint(t, "acme", tc.req)
			if got := env.active(t, m.Token); got != tc.active {
				t.Errorf("active = %v, want %v", got, tc.active)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}

	bad := []struct {
		name, field string
		req         map[string]any
	}{
		{"no client_id nor sub", "claims.client_id", map[string]any{}},
		{"no aud and no default", "claims.aud", map[string]any{"claims": map[string]any{"client_id": "stranger"}}},
		{"unknown key", "key", map[string]any{"key": "mine", "claims": map[string]any{"client_id": "support-bot"}}},
		{"unknown other tenant", "key", map[string]any{"key": "other-tenant:nope", "claims": map[string]any{"client_id": "support-bot"}}},
		{"unknown kid", "key", map[string]any{"key": "kid:nope", "claims": map[string]any{"client_id": "support-bot"}}},
		{"hs256 without secret", "hs256_secret", map[string]any{"key": "hs256", "claims": map[string]any{"client_id": "support-bot"}}},
		{"hs256 bad source", "hs256_secret_from", map[string]any{"key": "hs256", "hs256_secret_from": "moon", "claims": map[string]any{"client_id": "support-bot"}}},
		{"secret for another key", "hs256_secret", map[string]any{"hs256_secret": "x", "claims": map[string]any{"client_id": "support-bot"}}},
		{"negative lifetime", "lifetime", map[string]any{"lifetime": "-1m", "claims": map[string]any{"client_id": "support-bot"}}},
		{"self jwk without a key", "header.jwk", map[string]any{"key": "none", "header": map[string]any{"jwk": "self"}, "claims": map[string]any{"client_id": "support-bot"}}},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/mint", tc.req), 400, tc.field)
		})
	}
}

func mustB64(tb testing.TB, tok string, part int) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[part])
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAdminKeys(t *testing.T) {
	env := newAdmEnv(t, nil)
	var keys []emulator.KeyStatus
	env.ok(t, "GET", "/admin/v1/tenants/acme/keys", nil, &keys)
	if len(keys) != 1 || !keys[0].Active || !keys[0].Published || keys[0].Backend != "memory" {
		t.Fatalf("keys %+v", keys)
	}
	kid1 := keys[0].KID
	old := env.token(t)

	var k2 emulator.KeyStatus
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/rotate", nil, &k2)
	if !k2.Active || k2.KID == kid1 || k2.Alg != "ES256" {
		t.Fatalf("rotated key %+v", k2)
	}
	want := []string{kid1, k2.KID}
	slices.Sort(want)
	if d := cmp.Diff(want, env.jwksKIDs(t, "acme")); d != "" {
		t.Errorf("JWKS after rotation (-want +got):\n%s", d)
	}
	fresh := env.token(t)
	if kid := jwtHeader(t, fresh)["kid"]; kid != k2.KID {
		t.Errorf("new token kid %v, want %s", kid, k2.KID)
	}
	if !env.active(t, old) {
		t.Error("a token of the old key is inactive after rotation")
	}
	if kid := jwtHeader(t, env.mint(t, "acme", map[string]any{"key": "kid:" + kid1, "claims": map[string]any{"client_id": "support-bot"}}).Token)["kid"]; kid != kid1 {
		t.Errorf("mint with kid:%s signed with %v", kid1, kid)
	}

	var w emulator.KeyStatus
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/"+kid1+"/withdraw", nil, &w)
	if !w.Withdrawn || w.Published {
		t.Errorf("withdrawn key %+v", w)
	}
	if d := cmp.Diff([]string{k2.KID}, env.jwksKIDs(t, "acme")); d != "" {
		t.Errorf("JWKS after withdraw (-want +got):\n%s", d)
	}
	if env.active(t, old) {
		t.Error("a token of a withdrawn key is active")
	}
	if !env.active(t, fresh) {
		t.Error("a token of the active key became inactive")
	}

	// Hidden: out of the JWKS, still verified by the emulator.
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/"+k2.KID+"/publish", map[string]any{"published": false}, &w)
	if w.Published || !w.Hidden || w.Withdrawn {
		t.Errorf("hidden key %+v", w)
	}
	if kids := env.jwksKIDs(t, "acme"); len(kids) != 0 {
		t.Errorf("JWKS with the key hidden: %v", kids)
	}
	if !env.active(t, fresh) {
		t.Error("a token of a hidden key is inactive")
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/"+k2.KID+"/publish", map[string]any{"published": true}, nil)
	if d := cmp.Diff([]string{k2.KID}, env.jwksKIDs(t, "acme")); d != "" {
		t.Errorf("JWKS after publish (-want +got):\n%s", d)
	}

	if r := env.call(t, "DELETE", "/admin/v1/tenants/acme/keys/"+kid1, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete key: HTTP %d: %s", r.Status, r.Raw)
	}
	env.ok(t, "GET", "/admin/v1/tenants/acme/keys", nil, &keys)
	if len(keys) != 1 || keys[0].KID != k2.KID {
		t.Errorf("keys after delete: %+v", keys)
	}
	wantError(t, env.call(t, "DELETE", "/admin/v1/tenants/acme/keys/"+k2.KID, nil), 409, "rotate")
	wantError(t, env.call(t, "DELETE", "/admin/v1/tenants/acme/keys/"+kid1, nil), 404, kid1)

	// With every key withdrawn there is nothing to sign with: rotate.
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/"+k2.KID+"/withdraw", nil, nil)
	wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/mint", map[string]any{"claims": map[string]any{"client_id": "support-bot"}}), 409, "rotate")
}

func TestAdminFaults(t *testing.T) {
	env := newAdmEnv(t, nil)
	get := func(path string) admReply {
		req, _ := http.NewRequest(http.MethodGet, env.URL+path, nil)
		return admDo(t, req)
	}
	setFault := func(f map[string]any) {
		t.Helper()
		if r := env.call(t, "POST", "/admin/v1/tenants/acme/faults", f); r.Status != http.StatusCreated {
			t.Fatalf("set fault %v: HTTP %d: %s", f, r.Status, r.Raw)
		}
	}
	ccStatus := func() admReply { return env.cc(t, "acme", "support-bot", "support-bot-secret") }

	setFault(map[string]any{"endpoint": "token", "mode": "unavailable"})
	if r := ccStatus(); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("unavailable: HTTP %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	setFault(map[string]any{"endpoint": "token", "mode": "ratelimit"})
	if r := ccStatus(); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Errorf("ratelimit: HTTP %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	setFault(map[string]any{"endpoint": "token", "mode": "error", "status": 502})
	if r := ccStatus(); r.Status != http.StatusBadGateway {
		t.Errorf("error 502: HTTP %d", r.Status)
	}
	setFault(map[string]any{"endpoint": "discovery", "mode": "malformed"})
	if r := get("/t/acme/.well-known/openid-configuration"); r.Status != http.StatusOK || json.Valid(r.Raw) {
		t.Errorf("malformed: HTTP %d %q", r.Status, r.Raw)
	}
	setFault(map[string]any{"endpoint": "jwks", "mode": "slow", "delay": "150ms"})
	start := time.Now()
	if r := get("/t/acme/jwks"); r.Status != http.StatusOK || !json.Valid(r.Raw) {
		t.Errorf("slow: HTTP %d", r.Status)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Errorf("slow answered after %v, want at least 150ms", el)
	}

	var faults []emulator.Fault
	env.ok(t, "GET", "/admin/v1/tenants/acme/faults", nil, &faults)
	var eps []string
	for _, f := range faults {
		eps = append(eps, f.Endpoint)
	}
	if d := cmp.Diff([]string{"discovery", "jwks", "token"}, eps); d != "" {
		t.Errorf("faults (-want +got):\n%s", d)
	}
	if r := env.call(t, "DELETE", "/admin/v1/tenants/acme/faults/token", nil); r.Status != http.StatusNoContent {
		t.Errorf("clear one: HTTP %d", r.Status)
	}
	wantError(t, env.call(t, "DELETE", "/admin/v1/tenants/acme/faults/token", nil), 404, "token")
	if r := ccStatus(); r.Status != http.StatusOK {
		t.Errorf("after clearing: HTTP %d", r.Status)
	}

	// count: the fault hits that many requests, then clears itself.
	setFault(map[string]any{"endpoint": "*", "mode": "unavailable", "count": 2})
	var got []int
	for range 3 {
		got = append(got, ccStatus().Status)
	}
	if d := cmp.Diff([]int{503, 503, 200}, got); d != "" {
		t.Errorf("count 2 (-want +got):\n%s", d)
	}
	if r := env.call(t, "DELETE", "/admin/v1/tenants/acme/faults", nil); r.Status != http.StatusNoContent {
		t.Errorf("clear all: HTTP %d", r.Status)
	}
	env.ok(t, "GET", "/admin/v1/tenants/acme/faults", nil, &faults)
	if len(faults) != 0 {
		t.Errorf("faults after clear: %v", faults)
	}

	bad := []struct {
		field string
		f     map[string]any
	}{
		{"endpoint", map[string]any{"endpoint": "nope", "mode": "unavailable"}},
		{"mode", map[string]any{"endpoint": "token", "mode": "explode"}},
		{"delay", map[string]any{"endpoint": "token", "mode": "slow"}},
		{"delay", map[string]any{"endpoint": "token", "mode": "slow", "delay": "-1s"}},
		{"delay", map[string]any{"endpoint": "token", "mode": "slow", "delay": "soon"}},
		{"delay", map[string]any{"endpoint": "token", "mode": "unavailable", "delay": "1s"}},
		{"status", map[string]any{"endpoint": "token", "mode": "error", "status": 200}},
		{"status", map[string]any{"endpoint": "token", "mode": "ratelimit", "status": 500}},
		{"count", map[string]any{"endpoint": "token", "mode": "unavailable", "count": -1}},
	}
	for _, tc := range bad {
		wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/faults", tc.f), 400, tc.field)
	}
}

func TestAdminClock(t *testing.T) {
	env := newAdmEnv(t, nil)
	tok := env.token(t)
	var st emulator.ClockState
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"freeze": true}, &st)
	if !st.Frozen {
		t.Fatalf("not frozen: %+v", st)
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"advance": "11m"}, &st)
	if d := time.Until(st.Now); d < 10*time.Minute || d > 12*time.Minute {
		t.Errorf("clock at now%+v after advancing 11m", d)
	}
	if env.active(t, tok) {
		t.Error("a 10-minute token is active 11 minutes later")
	}
	env.ok(t, "GET", "/admin/v1/tenants/acme/clock", nil, &st)
	if !st.Frozen {
		t.Error("GET: not frozen")
	}
	// Only this tenant's clock moved.
	var g emulator.ClockState
	env.ok(t, "GET", "/admin/v1/tenants/globex/clock", nil, &g)
	if g.Frozen || g.Offset != "0s" {
		t.Errorf("globex clock %+v", g)
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"reset": true}, &st)
	if st.Frozen || st.Offset != "0s" || !env.active(t, tok) {
		t.Errorf("after reset %+v, token active %v", st, env.active(t, tok))
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"skew": "-30s"}, &st)
	if st.Frozen || st.Offset != "-30s" {
		t.Errorf("skew: %+v", st)
	}
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"at": at.Format(time.RFC3339), "freeze": true}, &st)
	if !st.Frozen || !st.Now.Equal(at) {
		t.Errorf("at: %+v", st)
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"freeze": false}, &st)
	if st.Frozen || st.Now.Before(at) {
		t.Errorf("unfreeze: %+v", st)
	}
	wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"at": at.Format(time.RFC3339), "skew": "1s"}), 400, "skew")
}

func TestAdminRevoke(t *testing.T) {
	env := newAdmEnv(t, nil)
	a, b := env.token(t), env.token(t)
	jti := jwtPayload(t, a)["jti"].(string)
	env.ok(t, "POST", "/admin/v1/tenants/acme/revoke", map[string]any{"jti": jti}, nil)
	if env.active(t, a) || !env.active(t, b) {
		t.Error("revoking a jti: wrong tokens inactive")
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/revoke", map[string]any{"client_id": "support-bot"}, nil)
	if env.active(t, b) {
		t.Error("revoking a client left its token active")
	}
	g := env.mint(t, "acme", map[string]any{"claims": map[string]any{"client_id": "report-bot", "grant_chain": []string{"g-parent"}}}).Token
	env.ok(t, "POST", "/admin/v1/tenants/acme/revoke", map[string]any{"grant_id": "g-parent"}, nil)
	if env.active(t, g) {
		t.Error("revoking an ancestor grant left its descendant active")
	}
	wantError(t, env.call(t, "POST", "/admin/v1/tenants/acme/revoke", map[string]any{}), 400, "jti")
}

// TestRevokeClientWithinOneSecond: iat counts whole seconds, yet a client
// revocation ends exactly the tokens issued before it. The clock is frozen,
// so every token and revocation here falls in one second.
func TestRevokeClientWithinOneSecond(t *testing.T) {
	env := newAdmEnv(t, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"freeze": true}, nil)
	before := env.token(t)
	env.ok(t, "POST", "/admin/v1/tenants/acme/revoke", map[string]any{"client_id": "support-bot"}, nil)
	after := env.token(t)
	if jwtPayload(t, before)["iat"] != jwtPayload(t, after)["iat"] {
		t.Fatal("the frozen clock gave the two tokens different iat")
	}
	if env.active(t, before) || !env.active(t, after) {
		t.Errorf("one revocation: token before it active %v (want false), after it %v (want true)", env.active(t, before), env.active(t, after))
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/revoke", map[string]any{"client_id": "support-bot"}, nil)
	if env.active(t, after) {
		t.Error("a second revocation in the same second left the token issued between the two active")
	}
	if err := env.Server.DisableClient("acme", "support-bot"); err != nil {
		t.Fatal(err)
	}
	if err := env.Server.EnableClient("acme", "support-bot"); err != nil {
		t.Fatal(err)
	}
	if tok := env.token(t); !env.active(t, tok) {
		t.Error("a token issued after the client was enabled again, in the second it was disabled, is inactive")
	}
}

func TestAdminReset(t *testing.T) {
	env := newAdmEnv(t, nil)
	ctx := context.Background()
	globexKID, _ := env.Server.ActiveKID("globex")
	acmeKID, _ := env.Server.ActiveKID("acme")

	env.ok(t, "POST", "/admin/v1/tenants", map[string]any{"name": "iso"}, nil)
	env.ok(t, "DELETE", "/admin/v1/tenants/globex", nil, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/clients/support-bot/disable", nil, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/users", map[string]any{"username": "dave"}, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/faults", map[string]any{"endpoint": "introspect", "mode": "unavailable"}, nil)
	var k2 emulator.KeyStatus
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/rotate", nil, &k2)
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/"+acmeKID+"/withdraw", nil, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/keys/"+k2.KID+"/publish", map[string]any{"published": false}, nil)
	env.ok(t, "POST", "/admin/v1/tenants/acme/clock", map[string]any{"freeze": true, "advance": "1h"}, nil)

	var infos []emulator.TenantInfo
	env.ok(t, "POST", "/admin/v1/reset", nil, &infos)
	if d := cmp.Diff(env.Server.TenantInfos(), infos); d != "" || len(infos) != 2 {
		t.Errorf("tenants after reset: %v %s", infos, d)
	}
	if kid, _ := env.Server.ActiveKID("globex"); kid != globexKID {
		t.Errorf("globex restored with kid %s, want %s", kid, globexKID)
	}
	tok := env.token(t) // support-bot enabled again
	if !env.active(t, tok) {
		t.Error("a fresh token after reset is inactive (fault, clock or revocation left over)")
	}
	if kid := jwtHeader(t, tok)["kid"]; kid != k2.KID {
		t.Errorf("rotated key did not persist across reset: token kid %v", kid)
	}
	want := []string{acmeKID, k2.KID}
	slices.Sort(want)
	if d := cmp.Diff(want, env.jwksKIDs(t, "acme")); d != "" {
		t.Errorf("JWKS after reset: withdrawn and hidden keys should be back (-want +got):\n%s", d)
	}
	if _, err := env.Server.User("acme", "dave"); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("user dave after reset: %v", err)
	}
	if st, _ := env.Server.ClockState("acme"); st.Frozen {
		t.Error("clock still frozen after reset")
	}

	// A tenant reset brings back its configured clients; a runtime tenant
	// returns to its creation config.
	if err := env.Server.DisableClient("acme", "report-bot"); err != nil {
		t.Fatal(err)
	}
	env.ok(t, "POST", "/admin/v1/tenants/acme/reset", nil, nil)
	if c, _ := env.Server.Client("acme", "report-bot"); c.Disabled {
		t.Error("report-bot still disabled after tenant reset")
	}
	if _, err := env.Server.CreateTenant(ctx, emulator.TenantConfig{Name: "iso", Scopes: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Server.CreateUser("iso", emulator.UserConfig{Username: "zed"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Server.ResetTenant(ctx, "iso"); err != nil {
		t.Fatal(err)
	}
	if us, _ := env.Server.Users("iso"); len(us) != 0 {
		t.Errorf("users of iso after its reset: %v", us)
	}
	if err := env.Server.ResetTenant(ctx, "nope"); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("reset of an unknown tenant: %v", err)
	}
}

func TestAdminPublicBaseURL(t *testing.T) {
	env := newAdmEnv(t, nil)
	var got map[string]string
	env.ok(t, "POST", "/admin/v1/public-base-url", map[string]any{"url": "http://agentsso.test:1234"}, &got)
	if got["url"] != "http://agentsso.test:1234" {
		t.Errorf("answer %v", got)
	}
	req, _ := http.NewRequest(http.MethodGet, env.URL+"/t/acme/.well-known/openid-configuration", nil)
	if iss := admDo(t, req).obj(t)["issuer"]; iss != "http://agentsso.test:1234/t/acme" {
		t.Errorf("issuer %v", iss)
	}
	wantError(t, env.call(t, "POST", "/admin/v1/public-base-url", map[string]any{"url": "ftp://x"}), 400, "url")
	wantError(t, env.call(t, "POST", "/admin/v1/public-base-url", map[string]any{}), 400, "url")
	env.ok(t, "GET", "/admin/v1/public-base-url", nil, &got)
	if got["url"] != "http://agentsso.test:1234" {
		t.Errorf("GET %v", got)
	}
}

func TestAdminAudit(t *testing.T) {
	wantError(t, newAdmEnv(t, nil).call(t, "GET", "/admin/v1/audit", nil), 404, "audit")

	cfg := emulator.DefaultConfig()
	cfg.Audit.Path = filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(cfg.Audit.Path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	env := newAdmEnv(t, &cfg, emulator.WithAuditor(l))
	var jtis []string
	for range 3 {
		jtis = append(jtis, env.mint(t, "acme", map[string]any{"claims": map[string]any{"client_id": "support-bot"}}).Claims["jti"].(string))
	}
	env.token(t)

	var page audit.Page
	env.ok(t, "GET", "/admin/v1/audit?endpoint=admin.mint&tenant=acme&limit=2", nil, &page)
	if len(page.Events) != 2 || !page.More {
		t.Fatalf("page %+v", page)
	}
	var next audit.Page
	env.ok(t, "GET", "/admin/v1/audit?endpoint=admin.mint&cursor="+itoa(page.Next), nil, &next)
	var got []string
	for _, e := range append(page.Events, next.Events...) {
		got = append(got, e.Jti)
		if e.Tenant != "acme" || e.Decision != audit.DecisionAllow {
			t.Errorf("event %+v", e)
		}
	}
	if d := cmp.Diff(jtis, got); d != "" {
		t.Errorf("minted jtis in the audit log (-want +got):\n%s", d)
	}
	env.ok(t, "GET", "/admin/v1/audit?endpoint=token&client_id=support-bot", nil, &page)
	if len(page.Events) != 1 {
		t.Errorf("token events: %+v", page.Events)
	}
	wantError(t, env.call(t, "GET", "/admin/v1/audit?decision=maybe", nil), 400, "decision")
	wantError(t, env.call(t, "GET", "/admin/v1/audit?cursor=-1", nil), 400, "cursor")
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestAdminGoAPI drives the same controls without HTTP, as the harness
// and the testcontainers module do.
func TestAdminGoAPI(t *testing.T) {
	env := newAdmEnv(t, nil)
	s, ctx := env.Server, context.Background()
	if _, err := s.CreateTenant(ctx, emulator.TenantConfig{Name: "acme"}); !errors.Is(err, emulator.ErrExists) {
		t.Errorf("create existing tenant: %v", err)
	}
	_, err := s.CreateTenant(ctx, emulator.TenantConfig{Name: "go", Clients: []emulator.ClientConfig{{ID: "x", Lifetimes: emulator.LifetimeConfig{AccessToken: -1}}}})
	var ce *emulator.ConfigError
	if !errors.As(err, &ce) || ce.Field != "clients[0].lifetimes.access_token" {
		t.Errorf("invalid tenant: %v", err)
	}
	if _, err := s.Mint(ctx, "nope", emulator.MintRequest{}); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("mint at unknown tenant: %v", err)
	}
	m, err := s.Mint(ctx, "acme", emulator.MintRequest{Claims: map[string]any{"client_id": "support-bot"}, Offset: -time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if env.active(t, m.Token) {
		t.Error("a token minted an hour in the past is active")
	}
	var re *emulator.RequestError
	if _, err := s.Mint(ctx, "acme", emulator.MintRequest{Key: "bogus", Claims: map[string]any{"sub": "x"}}); !errors.As(err, &re) || re.Field != "key" {
		t.Errorf("bad key: %v", err)
	}
	if err := s.DisableClient("acme", "nope"); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("disable unknown client: %v", err)
	}
	if _, err := s.SetFault("acme", emulator.Fault{Endpoint: "token", Mode: "slow", Delay: "1h"}); !errors.As(err, &re) || re.Field != "delay" {
		t.Errorf("fault delay too long: %v", err)
	}
}

// FuzzAdminMint sends arbitrary bodies to the mint endpoint: never a
// panic, never a 5xx, always JSON.
func FuzzAdminMint(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"claims":{"client_id":"support-bot"}}`,
		`{"claims":{"client_id":"support-bot","aud":null},"key":"none"}`,
		`{"claims":{"sub":"x","aud":[]},"key":"rogue","header":{"jwk":"self","alg":"HS256"}}`,
		`{"claims":{"sub":"x","aud":"y"},"key":"hs256","hs256_secret_from":"tenant-jwk"}`,
		`{"claims":{"sub":"x","aud":"y"},"key":"other-tenant:globex","lifetime":"87600h","offset":"-2562047h"}`,
		`{"claims":{"client_id":1e999}}`,
		`{"header":{"kid":null,"crit":["exp"]},"claims":{"sub":"x","aud":"y","exp":"soon"}}`,
		`{"key":"kid:","claims":{"sub":"x"}}`,
		`[]`, `null`, `"x"`, `{"claims":{}}{}`,
	} {
		f.Add([]byte(s))
	}
	env := newAdmEnv(f, nil)
	h := env.Server.AdminHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/admin/v1/tenants/acme/mint", bytes.NewReader(body))
		req.Host = "127.0.0.1"
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("HTTP %d for %q: %s", rec.Code, body, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("HTTP %d, body not JSON for %q: %q", rec.Code, body, rec.Body)
		}
	})
}
