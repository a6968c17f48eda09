package emulator

// Token exchange tests that need subject tokens no grant can produce yet
// (a user's token, may_act, deep chains, foreign keys) mint them with the
// tenant's signClaims. They live in package emulator for that; they still
// go over real HTTP on 127.0.0.1 where the outcome is an HTTP answer, and
// call the fosite provider directly where the test asserts which sentinel
// error (errors.Is) explains a refusal.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ory/fosite"
)

const (
	xUpstream = "https://api.acme.test/upstream"
	xZendesk  = "https://mcp.acme.test/zendesk"
	xPostgres = "https://mcp.acme.test/postgres"
)

// exchFixture is an emulator with the default configuration plus two
// gateways: edge-proxy (delegation) and imp-proxy (impersonate: true).
type exchFixture struct {
	s   *Server
	t   *tenant
	url string
}

var exchSecrets = map[string]string{
	"support-bot": "support-bot-secret",
	"mcp-gateway": "mcp-gateway-secret",
	"report-bot":  "report-bot-secret",
	"edge-proxy":  "edge-proxy-secret",
	"imp-proxy":   "imp-proxy-secret",
}

func exchFixtureConfig() Config {
	cfg := DefaultConfig()
	cfg.Tenants[0].Clients = append(cfg.Tenants[0].Clients,
		ClientConfig{ID: "edge-proxy", Secret: "edge-proxy-secret", GrantTypes: []string{GrantTokenExchange}, ExchangeAudiences: []string{xZendesk, xUpstream}},
		ClientConfig{ID: "imp-proxy", Secret: "imp-proxy-secret", GrantTypes: []string{GrantTokenExchange}, ExchangeAudiences: []string{xUpstream}, Impersonate: true},
	)
	return cfg
}

func newExchFixture(tb testing.TB) *exchFixture {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := exchFixtureConfig()
	cfg.PublicBaseURL = "http://" + ln.Addr().String()
	cfg.Addr, cfg.AdminAddr = ln.Addr().String(), "127.0.0.1:0"
	s, err := New(context.Background(), cfg, WithHTTPClient(&http.Client{Transport: exchNoNetwork{}}))
	if err != nil {
		tb.Fatal(err)
	}
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	hs.Start()
	tb.Cleanup(hs.Close)
	return &exchFixture{s: s, t: s.tenant("acme"), url: hs.URL}
}

// exchNoNetwork refuses every outgoing request the emulator would make
// (client JWKS, client ID metadata documents).
type exchNoNetwork struct{}

func (exchNoNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("test: no network for %s", r.URL.Redacted())
}

// mint signs access token claims with the tenant's key, filling iss, iat,
// exp (10 minutes), jti and grant_id where they are empty.
func (f *exchFixture) mint(tb testing.TB, typ string, c AccessClaims) string {
	tb.Helper()
	now := f.t.clock.Now()
	if c.Issuer == "" {
		c.Issuer = f.t.issuer()
	}
	if c.IssuedAt == 0 {
		c.IssuedAt = now.Unix()
	}
	if c.Expiry == 0 {
		c.Expiry = now.Add(10 * time.Minute).Unix()
	}
	if c.ID == "" {
		c.ID = newID()
	}
	if c.GrantID == "" {
		c.GrantID = newID()
	}
	tok, err := f.t.signClaims(typ, &c)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// alice is a token user-alice's copilot holds.
func (f *exchFixture) alice(tb testing.TB, mod func(*AccessClaims)) string {
	c := AccessClaims{Subject: "user-alice", ClientID: "acme-copilot", Audience: Audience{xZendesk}, Scope: "zendesk:tickets:read mcp:tools", GrantID: "grant-alice"}
	if mod != nil {
		mod(&c)
	}
	return f.mint(tb, "at+jwt", c)
}

type exchReply struct {
	status int
	body   map[string]any
}

func (r exchReply) str(k string) string { s, _ := r.body[k].(string); return s }

func (f *exchFixture) post(tb testing.TB, path, clientID string, form url.Values) exchReply {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url+"/t/acme"+path, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(clientID, exchSecrets[clientID])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	out := exchReply{status: res.StatusCode}
	if err := json.Unmarshal(b, &out.body); err != nil {
		tb.Fatalf("%s: %d %q is not JSON", path, res.StatusCode, b)
	}
	return out
}

func exchForm(subject string, kv ...string) url.Values {
	v := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {tokenTypeAccessToken}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// exchange runs a token exchange over HTTP and fails the test unless it
// succeeds.
func (f *exchFixture) exchange(tb testing.TB, clientID, subject string, kv ...string) (string, AccessClaims) {
	tb.Helper()
	r := f.post(tb, "/token", clientID, exchForm(subject, kv...))
	if r.status != http.StatusOK {
		tb.Fatalf("exchange by %s: %d %v", clientID, r.status, r.body)
	}
	tok := r.str("access_token")
	return tok, exchDecode(tb, tok)
}

func (f *exchFixture) cc(tb testing.TB, clientID string) (string, AccessClaims) {
	tb.Helper()
	r := f.post(tb, "/token", clientID, url.Values{"grant_type": {GrantClientCredentials}})
	if r.status != http.StatusOK {
		tb.Fatalf("client_credentials for %s: %d %v", clientID, r.status, r.body)
	}
	tok := r.str("access_token")
	return tok, exchDecode(tb, tok)
}

func (f *exchFixture) active(tb testing.TB, tok string) bool {
	tb.Helper()
	r := f.post(tb, "/introspect", "mcp-gateway", url.Values{"token": {tok}})
	if r.status != http.StatusOK {
		tb.Fatalf("introspect: %d %v", r.status, r.body)
	}
	return r.body["active"] == true
}

// direct runs the token endpoint's fosite request and response without
// HTTP, so that the error keeps its chain for errors.Is.
func (f *exchFixture) direct(clientID string, form url.Values) (*AccessClaims, error) {
	req := httptest.NewRequest(http.MethodPost, "/t/acme/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, exchSecrets[clientID])
	sess := NewSession()
	p := f.t.provider()
	ar, err := p.NewAccessRequest(context.Background(), req, sess)
	if err != nil {
		return nil, err
	}
	if _, err := p.NewAccessResponse(context.Background(), ar); err != nil {
		return nil, err
	}
	return sess.Issued, nil
}

func exchDecode(tb testing.TB, tok string) AccessClaims {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	var c AccessClaims
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatal(err)
	}
	return c
}

// A user's token goes from the app to an agent to a gateway: sub stays
// the user, the chain grows, ctx and auth_time follow, cnf does not.
func TestTokenExchangeUserChain(t *testing.T) {
	f := newExchFixture(t)
	authTime := f.t.clock.Now().Add(-time.Hour).Unix()
	ctxClaim := &TokenContext{Env: "prod", Zone: "eu-west-1a"}
	subject := f.alice(t, func(c *AccessClaims) {
		c.AuthTime = authTime
		c.Ctx = ctxClaim
		c.Cnf = map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
	})

	tok1, c1 := f.exchange(t, "support-bot", subject, "audience", xZendesk, "scope", "zendesk:tickets:read")
	_, c2 := f.exchange(t, "mcp-gateway", tok1)
	type view struct {
		Sub, ClientID, Scope string
		Aud                  Audience
		Act                  *Actor
		Ctx                  *TokenContext
		Cnf                  map[string]any
		AuthTime             int64
		GrantChain           []string
	}
	got := []view{
		{c1.Subject, c1.ClientID, c1.Scope, c1.Audience, c1.Act, c1.Ctx, c1.Cnf, c1.AuthTime, c1.GrantChain},
		{c2.Subject, c2.ClientID, c2.Scope, c2.Audience, c2.Act, c2.Ctx, c2.Cnf, c2.AuthTime, c2.GrantChain},
	}
	want := []view{
		{"user-alice", "support-bot", "zendesk:tickets:read", Audience{xZendesk},
			&Actor{Subject: "support-bot", ClientID: "support-bot"}, ctxClaim, nil, authTime, []string{"grant-alice", jtiOf(t, subject)}},
		{"user-alice", "mcp-gateway", "zendesk:tickets:read", Audience{xUpstream},
			&Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway", Act: &Actor{Subject: "support-bot", ClientID: "support-bot"}},
			ctxClaim, nil, authTime, []string{"grant-alice", jtiOf(t, subject), c1.GrantID, c1.ID}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
}

// With an actor_token the actor is the token's subject; its grants join
// the lineage.
func TestTokenExchangeUserActorToken(t *testing.T) {
	f := newExchFixture(t)
	subject := f.alice(t, nil)
	actorTok, actor := f.cc(t, "support-bot")
	_, c := f.exchange(t, "mcp-gateway", subject, "actor_token", actorTok, "actor_token_type", tokenTypeAccessToken, "resource", xUpstream)
	if diff := cmp.Diff(&Actor{Subject: "support-bot", ClientID: "support-bot"}, c.Act); diff != "" {
		t.Errorf("act (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"grant-alice", jtiOf(t, subject), actor.GrantID, actor.ID}, c.GrantChain); diff != "" {
		t.Errorf("grant_chain (-want +got):\n%s", diff)
	}
	if c.Subject != "user-alice" || c.ClientID != "mcp-gateway" {
		t.Errorf("sub, client_id = %q, %q; want user-alice, mcp-gateway", c.Subject, c.ClientID)
	}
}

// Impersonation (impersonate: true, no actor_token) adds no act link and
// keeps a prior chain; an actor_token still makes it delegation.
func TestTokenExchangeImpersonation(t *testing.T) {
	f := newExchFixture(t)
	subject, _ := f.cc(t, "support-bot")
	_, plain := f.exchange(t, "imp-proxy", subject)
	if plain.Act != nil || plain.Subject != "support-bot" || plain.ClientID != "imp-proxy" {
		t.Errorf("impersonation: sub %q client_id %q act %+v; want support-bot, imp-proxy, no act", plain.Subject, plain.ClientID, plain.Act)
	}
	delegated, _ := f.exchange(t, "mcp-gateway", subject)
	_, kept := f.exchange(t, "imp-proxy", delegated)
	if diff := cmp.Diff(&Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway"}, kept.Act); diff != "" {
		t.Errorf("impersonating a delegated token must keep its act (-want +got):\n%s", diff)
	}
	actorTok, _ := f.cc(t, "mcp-gateway")
	_, withActor := f.exchange(t, "imp-proxy", subject, "actor_token", actorTok, "actor_token_type", tokenTypeAccessToken)
	if diff := cmp.Diff(&Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway"}, withActor.Act); diff != "" {
		t.Errorf("actor_token with an impersonating client (-want +got):\n%s", diff)
	}
}

// RFC 8693 section 4.4: may_act names who may act for the subject.
func TestTokenExchangeMayAct(t *testing.T) {
	f := newExchFixture(t)
	gatewayTok, _ := f.cc(t, "mcp-gateway")
	gw := &Actor{Subject: "mcp-gateway"}
	tests := []struct {
		name    string
		mayAct  *Actor
		client  string
		extra   []string
		wantErr error // nil: allowed
	}{
		{"named client", gw, "mcp-gateway", nil, nil},
		{"other client", gw, "edge-proxy", []string{"audience", xUpstream}, ErrMayAct},
		{"named issuer", &Actor{Subject: "mcp-gateway", Issuer: f.t.issuer()}, "mcp-gateway", nil, nil},
		{"other issuer", &Actor{Subject: "mcp-gateway", Issuer: "https://elsewhere.test"}, "mcp-gateway", nil, ErrMayAct},
		{"other client_id", &Actor{Subject: "mcp-gateway", ClientID: "edge-proxy"}, "mcp-gateway", nil, ErrMayAct},
		{"named by actor_token", gw, "edge-proxy", []string{"actor_token", gatewayTok, "actor_token_type", tokenTypeAccessToken, "audience", xUpstream}, nil},
		{"actor_token of another", &Actor{Subject: "edge-proxy"}, "edge-proxy", []string{"actor_token", gatewayTok, "actor_token_type", tokenTypeAccessToken, "audience", xUpstream}, ErrMayAct},
		{"impersonation by another", gw, "imp-proxy", nil, ErrMayAct},
		{"may_act naming nobody", &Actor{}, "mcp-gateway", nil, ErrMayAct},
		{"the subject itself", &Actor{Subject: "nobody"}, "support-bot", []string{"audience", xZendesk}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			subject := f.mint(t, "at+jwt", AccessClaims{Subject: "support-bot", ClientID: "support-bot", Audience: Audience{xZendesk}, Scope: "zendesk:tickets:read", MayAct: tc.mayAct})
			issued, err := f.direct(tc.client, exchForm(subject, tc.extra...))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, fosite.ErrInvalidRequest) {
					t.Errorf("err = %v, want invalid_request", err)
				}
				return
			}
			if diff := cmp.Diff(tc.mayAct, issued.MayAct); diff != "" {
				t.Errorf("may_act must be carried over (-want +got):\n%s", diff)
			}
		})
	}

	// Re-exchanging the gateway's token as another actor is refused,
	// over HTTP as invalid_request.
	subject := f.alice(t, func(c *AccessClaims) { c.MayAct = gw })
	tok, _ := f.exchange(t, "mcp-gateway", subject)
	r := f.post(t, "/token", "edge-proxy", exchForm(tok, "audience", xUpstream))
	if r.status != http.StatusBadRequest || r.str("error") != "invalid_request" || !strings.Contains(r.str("error_description"), ErrMayAct.Error()) {
		t.Errorf("re-exchange by another actor: %d %v, want 400 invalid_request naming may_act", r.status, r.body)
	}
}

// Each way a subject or actor token can be unacceptable is
// invalid_request, and the error chain says which check failed.
func TestTokenExchangeBadTokens(t *testing.T) {
	f := newExchFixture(t)
	now := f.t.clock.Now()
	globex := f.s.tenant("globex")
	// Issued a second before the revocations below, so that they apply.
	base := AccessClaims{Subject: "support-bot", ClientID: "support-bot", Audience: Audience{xZendesk}, Scope: "zendesk:tickets:read", IssuedAt: now.Unix() - 1}
	with := func(mod func(*AccessClaims)) AccessClaims {
		c := base
		mod(&c)
		return c
	}
	revokedGrant := newID()
	f.t.rev.revokeGrant(revokedGrant, now, "test")
	var deep *Actor
	for i := range maxActDepth {
		deep = &Actor{Subject: fmt.Sprintf("hop-%d", i), Act: deep}
	}
	long := make([]string, maxGrantChain)
	for i := range long {
		long[i] = fmt.Sprintf("g%d", i)
	}
	globexTok, err := globex.signClaims("at+jwt", &AccessClaims{Issuer: f.t.issuer(), Subject: "support-bot", ClientID: "support-bot",
		Audience: Audience{xZendesk}, IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix(), ID: newID()})
	if err != nil {
		t.Fatal(err)
	}
	good := f.mint(t, "at+jwt", base)

	tests := []struct {
		name    string
		subject string
		actor   string
		wantErr error
	}{
		{"expired", f.mint(t, "at+jwt", with(func(c *AccessClaims) {
			c.IssuedAt = now.Add(-time.Hour).Unix()
			c.Expiry = now.Add(-time.Second).Unix()
		})), "", ErrTokenExpired},
		{"not yet valid", f.mint(t, "at+jwt", with(func(c *AccessClaims) { c.NotBefore = now.Add(time.Hour).Unix() })), "", ErrTokenNotYet},
		{"ID token typ", f.mint(t, "JWT", base), "", ErrTokenTyp},
		{"other tenant's key", globexTok, "", ErrTokenKey},
		{"other tenant's issuer", f.mint(t, "at+jwt", with(func(c *AccessClaims) { c.Issuer = globex.issuer() })), "", ErrTokenIssuer},
		{"revoked grant", f.mint(t, "at+jwt", with(func(c *AccessClaims) { c.GrantID = revokedGrant })), "", ErrTokenInactive},
		{"revoked ancestor grant", f.mint(t, "at+jwt", with(func(c *AccessClaims) { c.GrantChain = []string{revokedGrant} })), "", ErrTokenInactive},
		{"garbage", "a.b.c", "", ErrTokenMalformed},
		{"act chain too deep", f.mint(t, "at+jwt", with(func(c *AccessClaims) { c.Act = deep })), "", ErrLineageTooLong},
		{"grant chain too long", f.mint(t, "at+jwt", with(func(c *AccessClaims) { c.GrantChain = long })), "", ErrLineageTooLong},
		{"expired actor token", good, f.mint(t, "at+jwt", AccessClaims{Subject: "edge-proxy", ClientID: "edge-proxy", Audience: Audience{xUpstream},
			IssuedAt: now.Add(-time.Hour).Unix(), Expiry: now.Add(-time.Minute).Unix()}), ErrTokenExpired},
		{"actor token ID token typ", good, f.mint(t, "JWT", AccessClaims{Subject: "edge-proxy", ClientID: "edge-proxy", Audience: Audience{xUpstream}}), ErrTokenTyp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			form := exchForm(tc.subject)
			if tc.actor != "" {
				form.Set("actor_token", tc.actor)
				form.Set("actor_token_type", tokenTypeJWT)
			}
			_, err := f.direct("mcp-gateway", form)
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, fosite.ErrInvalidRequest) {
				t.Errorf("err = %v, want invalid_request wrapping %v", err, tc.wantErr)
			}
		})
	}
}

// Revoking any ancestor grant, or disabling a client in the chain, makes
// exchanged tokens inactive at introspection; unrelated tokens stay active.
func TestTokenExchangeRevocationCascade(t *testing.T) {
	type chain struct{ subject, hop1, hop2 string }
	build := func(t *testing.T, f *exchFixture) (chain, [3]AccessClaims) {
		s, sc := f.cc(t, "support-bot")
		h1, c1 := f.exchange(t, "mcp-gateway", s)
		h2, c2 := f.exchange(t, "edge-proxy", h1, "audience", xUpstream)
		return chain{s, h1, h2}, [3]AccessClaims{sc, c1, c2}
	}
	tests := []struct {
		name   string
		revoke func(f *exchFixture, c [3]AccessClaims)
		want   [3]bool // active: subject, hop1, hop2
	}{
		{"nothing", func(*exchFixture, [3]AccessClaims) {}, [3]bool{true, true, true}},
		{"subject's grant", func(f *exchFixture, c [3]AccessClaims) {
			f.t.rev.revokeGrant(c[0].GrantID, f.t.clock.Now(), "test")
		}, [3]bool{false, false, false}},
		{"first hop's grant", func(f *exchFixture, c [3]AccessClaims) {
			f.t.rev.revokeGrant(c[1].GrantID, f.t.clock.Now(), "test")
		}, [3]bool{true, false, false}},
		// What disabling or deleting a client records (through the
		// admin API: TestTokenExchangeDisabledClient).
		{"actor client mcp-gateway disabled", func(f *exchFixture, c [3]AccessClaims) {
			f.t.rev.revokeClient("mcp-gateway", f.t.clock.Now(), "disabled")
		}, [3]bool{true, false, false}},
		{"holder client edge-proxy disabled", func(f *exchFixture, c [3]AccessClaims) {
			f.t.rev.revokeClient("edge-proxy", f.t.clock.Now(), "disabled")
		}, [3]bool{true, true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newExchFixture(t)
			ch, claims := build(t, f)
			tc.revoke(f, claims)
			got := [3]bool{f.active(t, ch.subject), f.active(t, ch.hop1), f.active(t, ch.hop2)}
			if got != tc.want {
				t.Errorf("active (subject, hop1, hop2) = %v, want %v", got, tc.want)
			}
		})
	}

	// The actor token's grant is in the lineage too.
	f := newExchFixture(t)
	subject := f.alice(t, nil)
	actorTok, actor := f.cc(t, "support-bot")
	tok, _ := f.exchange(t, "mcp-gateway", subject, "actor_token", actorTok, "actor_token_type", tokenTypeAccessToken)
	f.t.rev.revokeGrant(actor.GrantID, f.t.clock.Now(), "test")
	if f.active(t, tok) {
		t.Error("token delegated with a revoked actor grant is still active")
	}
}

// FuzzTokenExchangeRequest feeds arbitrary token exchange parameters to
// the token endpoint: it must answer 200 or a 4xx, never panic or 5xx.
func FuzzTokenExchangeRequest(f *testing.F) {
	cfg := exchFixtureConfig()
	cfg.PublicBaseURL = "http://127.0.0.1:9"
	// A fuzzed client_id may be a URL (client ID metadata documents):
	// nothing leaves the process.
	s, err := New(context.Background(), cfg, WithHTTPClient(&http.Client{Transport: exchNoNetwork{}}))
	if err != nil {
		f.Fatal(err)
	}
	tn := s.tenant("acme")
	now := tn.clock.Now()
	mint := func(c AccessClaims) string {
		c.Issuer, c.IssuedAt, c.Expiry, c.ID, c.GrantID = tn.issuer(), now.Unix(), now.Add(time.Hour).Unix(), newID(), newID()
		tok, err := tn.signClaims("at+jwt", &c)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	sub := mint(AccessClaims{Subject: "support-bot", ClientID: "support-bot", Audience: Audience{xZendesk}, Scope: "zendesk:tickets:read mcp:tools",
		MayAct: &Actor{Subject: "mcp-gateway"}, Act: &Actor{Subject: "x", Act: &Actor{Subject: "y"}}})
	act := mint(AccessClaims{Subject: "mcp-gateway", ClientID: "mcp-gateway", Audience: Audience{xUpstream}})
	f.Add(exchForm(sub).Encode(), "mcp-gateway", true)
	f.Add(exchForm(sub, "actor_token", act, "actor_token_type", tokenTypeJWT, "scope", "mcp:tools", "resource", xUpstream).Encode(), "edge-proxy", true)
	f.Add(exchForm(sub, "audience", xZendesk, "audience", xUpstream, "requested_token_type", tokenTypeAccessToken).Encode(), "support-bot", false)
	f.Add(exchForm(sub, "resource", "%zz", "scope", "   ").Encode(), "imp-proxy", true)
	f.Add("grant_type="+url.QueryEscape(GrantTokenExchange)+"&subject_token=a.b.c&subject_token_type=x&actor_token=..&actor_token_type=", "mcp-gateway", true)
	f.Add("grant_type="+url.QueryEscape(GrantTokenExchange)+"&grant_type=client_credentials", "report-bot", false)
	f.Add("%%%&&&==", "", false)
	f.Fuzz(func(t *testing.T, body, clientID string, basic bool) {
		if !strings.Contains(body, "grant_type=") {
			body = "grant_type=" + url.QueryEscape(GrantTokenExchange) + "&" + body
		}
		if clientID != "" && !basic {
			body += "&client_id=" + url.QueryEscape(clientID) + "&client_secret=" + url.QueryEscape(exchSecrets[clientID])
		}
		req := httptest.NewRequest(http.MethodPost, "/t/acme/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if clientID != "" && basic {
			req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(exchSecrets[clientID]))
		}
		w := httptest.NewRecorder()
		start := time.Now()
		s.ServeHTTP(w, req)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("slow: %v for body %q client %q basic %v: %d %s", d, body, clientID, basic, w.Code, w.Body)
		}
		if w.Code != http.StatusOK && (w.Code < 400 || w.Code > 499) {
			t.Fatalf("status %d for body %q client %q: %s", w.Code, body, clientID, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("status %d: body is not JSON: %q", w.Code, w.Body)
		}
		if w.Code == http.StatusOK && out["issued_token_type"] == tokenTypeAccessToken {
			c := exchDecode(t, out["access_token"].(string))
			if (c.Subject != "support-bot" && c.Subject != "mcp-gateway") || c.Expiry > now.Add(time.Hour).Unix() {
				t.Fatalf("exchanged token: sub %q exp %d", c.Subject, c.Expiry)
			}
		}
	})
}

// jtiOf reads the jti of a compact JWT without verifying it.
func jtiOf(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ID string `json:"jti"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.ID
}
