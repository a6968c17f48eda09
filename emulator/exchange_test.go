package emulator_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

const (
	exchGrant       = "urn:ietf:params:oauth:grant-type:token-exchange"
	exchTypeAccess  = "urn:ietf:params:oauth:token-type:access_token"
	exchTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
	exchTypeID      = "urn:ietf:params:oauth:token-type:id_token"
	exchTypeRefresh = "urn:ietf:params:oauth:token-type:refresh_token"

	exchUpstream = "https://api.acme.test/upstream"
	exchZendesk  = "https://mcp.acme.test/zendesk"
	exchPostgres = "https://mcp.acme.test/postgres"
)

// exchResp is a token endpoint response, success or error.
type exchResp struct {
	Status           int    `json:"-"`
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	IssuedTokenType  string `json:"issued_token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	Scope            string `json:"scope"`
	RefreshToken     string `json:"refresh_token"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// exchCred is how a request authenticates: client_secret_post when post
// is set, client_secret_basic otherwise, nothing when id is empty.
type exchCred struct {
	id, secret string
	post       bool
}

var (
	exchGateway = exchCred{id: "mcp-gateway", secret: "mcp-gateway-secret"}
	exchSupport = exchCred{id: "support-bot", secret: "support-bot-secret"}
	exchReport  = exchCred{id: "report-bot", secret: "report-bot-secret", post: true}
)

func exchPostForm(tb testing.TB, endpoint string, cred exchCred, form url.Values) (*http.Response, []byte) {
	tb.Helper()
	if cred.id != "" && cred.post {
		form = exchCloneValues(form)
		form.Set("client_id", cred.id)
		form.Set("client_secret", cred.secret)
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cred.id != "" && !cred.post {
		req.SetBasicAuth(url.QueryEscape(cred.id), url.QueryEscape(cred.secret))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res, body
}

func exchCloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func exchToken(tb testing.TB, env *emulatortest.Env, tenant string, cred exchCred, form url.Values) exchResp {
	tb.Helper()
	res, body := exchPostForm(tb, env.TokenURL(tenant), cred, form)
	var r exchResp
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatalf("token response %d is not JSON: %v: %s", res.StatusCode, err, body)
	}
	r.Status = res.StatusCode
	return r
}

// exchCC gets a client_credentials access token.
func exchCC(tb testing.TB, env *emulatortest.Env, tenant string, cred exchCred) string {
	tb.Helper()
	r := exchToken(tb, env, tenant, cred, url.Values{"grant_type": {"client_credentials"}})
	if r.Status != http.StatusOK || r.AccessToken == "" {
		tb.Fatalf("client_credentials for %s: %d %s: %s", cred.id, r.Status, r.Error, r.ErrorDescription)
	}
	return r.AccessToken
}

// exchange posts a token exchange request; extra pairs are name, value.
func exchange(tb testing.TB, env *emulatortest.Env, cred exchCred, subject string, extra ...string) exchResp {
	tb.Helper()
	form := url.Values{"grant_type": {exchGrant}}
	if subject != "" {
		form.Set("subject_token", subject)
		form.Set("subject_token_type", exchTypeAccess)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Add(extra[i], extra[i+1])
	}
	return exchToken(tb, env, "acme", cred, form)
}

func exchOK(tb testing.TB, r exchResp) {
	tb.Helper()
	if r.Status != http.StatusOK || r.AccessToken == "" {
		tb.Fatalf("token exchange: %d %s: %s", r.Status, r.Error, r.ErrorDescription)
	}
}

// exchClaims decodes a JWT's payload without verifying it (the emulator
// verified it; these tests check what it says).
func exchClaims(tb testing.TB, tok string) emulator.AccessClaims {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a compact JWS: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	var c emulator.AccessClaims
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatal(err)
	}
	return c
}

func exchIntrospect(tb testing.TB, env *emulatortest.Env, tok string) map[string]any {
	tb.Helper()
	return exchIntrospectAs(tb, env, exchGateway, tok)
}

func exchIntrospectAs(tb testing.TB, env *emulatortest.Env, cred exchCred, tok string) map[string]any {
	tb.Helper()
	res, body := exchPostForm(tb, env.Issuer("acme")+"/introspect", cred, url.Values{"token": {tok}})
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("introspect: %d %s", res.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// exchAuditor keeps the audit events in memory.
type exchAuditor struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *exchAuditor) Write(e audit.Event) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
	return int64(len(a.events)), nil
}

func (a *exchAuditor) last(endpoint string) audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.events) - 1; i >= 0; i-- {
		if a.events[i].Endpoint == endpoint {
			return a.events[i]
		}
	}
	return audit.Event{}
}

// exchView is what the tests compare of an access token.
type exchView struct {
	Sub        string
	ClientID   string
	Aud        []string
	Scope      string
	Act        *emulator.Actor
	GrantChain []string
}

func exchViewOf(c emulator.AccessClaims) exchView {
	return exchView{Sub: c.Subject, ClientID: c.ClientID, Aud: c.Audience, Scope: c.Scope, Act: c.Act, GrantChain: c.GrantChain}
}

// exchConfig is the default configuration plus edge-proxy, a second
// gateway that may exchange for the upstream API and zendesk, for
// multi-hop chains, and may introspect.
func exchConfig() *emulator.Config {
	cfg := emulator.DefaultConfig()
	cfg.Tenants[0].Clients = append(cfg.Tenants[0].Clients, emulator.ClientConfig{
		ID:                "edge-proxy",
		Secret:            "edge-proxy-secret",
		GrantTypes:        []string{exchGrant},
		ExchangeAudiences: []string{exchZendesk, exchUpstream},
		Introspect:        true,
		Lifetimes:         emulator.LifetimeConfig{AccessToken: time.Hour},
	})
	return &cfg
}

var exchEdge = exchCred{id: "edge-proxy", secret: "edge-proxy-secret"}

// The gateway pattern: mcp-gateway exchanges the token support-bot
// presented to it for one to the upstream API, narrowed, naming itself
// as the actor.
func TestTokenExchangeDelegation(t *testing.T) {
	a := &exchAuditor{}
	env := emulatortest.New(t, nil, emulator.WithAuditor(a))
	subjectTok := exchCC(t, env, "acme", exchSupport)
	subject := exchClaims(t, subjectTok)

	r := exchange(t, env, exchGateway, subjectTok, "resource", exchUpstream, "scope", "zendesk:tickets:read")
	exchOK(t, r)
	if diff := cmp.Diff(exchResp{Status: 200, TokenType: "Bearer", IssuedTokenType: exchTypeAccess, Scope: "zendesk:tickets:read"}, r,
		cmpopts.IgnoreFields(exchResp{}, "AccessToken", "ExpiresIn")); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
	if r.ExpiresIn <= 0 || r.ExpiresIn > 600 {
		t.Errorf("expires_in = %d, want (0, 600]", r.ExpiresIn)
	}
	got := exchClaims(t, r.AccessToken)
	want := exchView{
		Sub:        "support-bot",
		ClientID:   "mcp-gateway",
		Aud:        []string{exchUpstream},
		Scope:      "zendesk:tickets:read",
		Act:        &emulator.Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway"},
		GrantChain: []string{subject.GrantID, subject.ID},
	}
	if diff := cmp.Diff(want, exchViewOf(got)); diff != "" {
		t.Errorf("exchanged token (-want +got):\n%s", diff)
	}
	if got.Expiry > subject.Expiry {
		t.Errorf("exp %d is beyond the subject token's %d", got.Expiry, subject.Expiry)
	}
	if got.GrantID == "" || got.GrantID == subject.GrantID || got.ID == subject.ID {
		t.Errorf("grant_id %q / jti %q must be new (subject: %q / %q)", got.GrantID, got.ID, subject.GrantID, subject.ID)
	}

	in := exchIntrospect(t, env, r.AccessToken)
	if in["active"] != true {
		t.Fatalf("exchanged token inactive at introspection: %v", in)
	}
	wantAct := map[string]any{"sub": "mcp-gateway", "client_id": "mcp-gateway"}
	if diff := cmp.Diff(wantAct, in["act"]); diff != "" {
		t.Errorf("introspected act (-want +got):\n%s", diff)
	}

	ev := a.last("token")
	wantEv := audit.Event{
		Endpoint: "token", Tenant: "acme", Method: http.MethodPost, GrantType: exchGrant, ClientID: "mcp-gateway",
		Sub: "support-bot", Act: []string{"mcp-gateway"}, Aud: []string{exchUpstream}, Jti: got.ID, GrantID: got.GrantID,
		ScopesRequested: []string{"zendesk:tickets:read"}, ScopesGranted: []string{"zendesk:tickets:read"},
		Decision: audit.DecisionAllow, Status: http.StatusOK,
	}
	if diff := cmp.Diff(wantEv, ev, cmpopts.IgnoreFields(audit.Event{}, "Seq", "Time", "Source")); diff != "" {
		t.Errorf("audit event (-want +got):\n%s", diff)
	}
}

// A token exchanged twice carries both actors, the current one
// outermost, and both ancestors' grants; each hop only narrows.
func TestTokenExchangeSecondHop(t *testing.T) {
	env := emulatortest.New(t, exchConfig())
	env.Server.Clock("acme").Freeze(time.Time{})
	subjectTok := exchCC(t, env, "acme", exchSupport)
	subject := exchClaims(t, subjectTok)

	hop1 := exchange(t, env, exchGateway, subjectTok, "audience", exchUpstream, "scope", "zendesk:tickets:read zendesk:tickets:write")
	exchOK(t, hop1)
	c1 := exchClaims(t, hop1.AccessToken)
	env.Server.Clock("acme").Advance(2 * time.Minute)

	hop2 := exchange(t, env, exchEdge, hop1.AccessToken, "resource", exchZendesk, "scope", "zendesk:tickets:read")
	exchOK(t, hop2)
	c2 := exchClaims(t, hop2.AccessToken)
	want := exchView{
		Sub:      "support-bot",
		ClientID: "edge-proxy",
		Aud:      []string{exchZendesk},
		Scope:    "zendesk:tickets:read",
		Act: &emulator.Actor{Subject: "edge-proxy", ClientID: "edge-proxy",
			Act: &emulator.Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway"}},
		GrantChain: []string{subject.GrantID, subject.ID, c1.GrantID, c1.ID},
	}
	if diff := cmp.Diff(want, exchViewOf(c2)); diff != "" {
		t.Errorf("second hop (-want +got):\n%s", diff)
	}
	// edge-proxy's own lifetime is an hour: the hop is capped at what was
	// left of the first hop's token.
	if c2.Expiry != c1.Expiry {
		t.Errorf("exp = %d, want the first hop's %d", c2.Expiry, c1.Expiry)
	}
	if hop2.ExpiresIn > 8*60 {
		t.Errorf("expires_in = %d, want at most the 8 minutes left", hop2.ExpiresIn)
	}
	// The second hop cannot widen the first hop's scope.
	r := exchange(t, env, exchEdge, hop1.AccessToken, "resource", exchZendesk, "scope", "postgres:support_db:read")
	if r.Error != "invalid_scope" {
		t.Errorf("widening scope on the second hop: %d %s, want invalid_scope", r.Status, r.Error)
	}
}

// An agent exchanging its own token (to change audience, narrow scope)
// acts for nobody: no act claim.
func TestTokenExchangeSelf(t *testing.T) {
	env := emulatortest.New(t, nil)
	subjectTok := exchCC(t, env, "acme", exchSupport)
	r := exchange(t, env, exchSupport, subjectTok, "audience", exchPostgres, "scope", "postgres:support_db:read")
	exchOK(t, r)
	want := exchView{Sub: "support-bot", ClientID: "support-bot", Aud: []string{exchPostgres}, Scope: "postgres:support_db:read",
		GrantChain: []string{exchClaims(t, subjectTok).GrantID, exchClaims(t, subjectTok).ID}}
	if diff := cmp.Diff(want, exchViewOf(exchClaims(t, r.AccessToken))); diff != "" {
		t.Errorf("self exchange (-want +got):\n%s", diff)
	}
}

// With an actor_token, the actor is its subject, not the calling client.
func TestTokenExchangeActorToken(t *testing.T) {
	env := emulatortest.New(t, exchConfig())
	subjectTok := exchCC(t, env, "acme", exchSupport)
	actorTok := exchCC(t, env, "acme", exchGateway)
	r := exchange(t, env, exchEdge, subjectTok, "actor_token", actorTok, "actor_token_type", exchTypeJWT, "audience", exchUpstream)
	exchOK(t, r)
	want := exchView{
		Sub:        "support-bot",
		ClientID:   "edge-proxy",
		Aud:        []string{exchUpstream},
		Scope:      "zendesk:tickets:read zendesk:tickets:write postgres:support_db:read",
		Act:        &emulator.Actor{Subject: "mcp-gateway", ClientID: "mcp-gateway"},
		GrantChain: []string{exchClaims(t, subjectTok).GrantID, exchClaims(t, subjectTok).ID, exchClaims(t, actorTok).GrantID, exchClaims(t, actorTok).ID},
	}
	if diff := cmp.Diff(want, exchViewOf(exchClaims(t, r.AccessToken))); diff != "" {
		t.Errorf("actor token delegation (-want +got):\n%s", diff)
	}
}

// RFC 8693 section 2.2.2 and RFC 6749 section 5.2 errors.
func TestTokenExchangeErrors(t *testing.T) {
	a := &exchAuditor{}
	env := emulatortest.New(t, nil, emulator.WithAuditor(a))
	subjectTok := exchCC(t, env, "acme", exchSupport)
	globexTok := exchCC(t, env, "globex", exchCred{id: "sales-bot", secret: "sales-bot-secret"})
	// Change a character in the middle of the signature.
	i := len(subjectTok) - 20
	flip := byte('A')
	if subjectTok[i] == 'A' {
		flip = 'B'
	}
	badSig := subjectTok[:i] + string(flip) + subjectTok[i+1:]

	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {exchGrant}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	withSubject := func(tok string, kv ...string) url.Values {
		return form(append([]string{"subject_token", tok, "subject_token_type", exchTypeAccess}, kv...)...)
	}
	up := []string{"resource", exchUpstream}
	tests := []struct {
		name       string
		cred       exchCred
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"missing subject_token", exchGateway, form("subject_token_type", exchTypeAccess), 400, "invalid_request"},
		{"missing subject_token_type", exchGateway, form("subject_token", subjectTok), 400, "invalid_request"},
		{"id_token subject_token_type", exchGateway, form("subject_token", subjectTok, "subject_token_type", exchTypeID), 400, "invalid_request"},
		{"refresh_token subject_token_type", exchGateway, form("subject_token", subjectTok, "subject_token_type", exchTypeRefresh), 400, "invalid_request"},
		{"unknown subject_token_type", exchGateway, form("subject_token", subjectTok, "subject_token_type", "urn:x:saml2"), 400, "invalid_request"},
		{"subject_token twice", exchGateway, withSubject(subjectTok, "subject_token", subjectTok), 400, "invalid_request"},
		{"actor_token without actor_token_type", exchGateway, withSubject(subjectTok, "actor_token", subjectTok), 400, "invalid_request"},
		{"actor_token_type without actor_token", exchGateway, withSubject(subjectTok, "actor_token_type", exchTypeAccess), 400, "invalid_request"},
		{"bad actor_token", exchGateway, withSubject(subjectTok, "actor_token", "not-a-token", "actor_token_type", exchTypeAccess), 400, "invalid_request"},
		{"requested_token_type refresh_token", exchGateway, withSubject(subjectTok, "requested_token_type", exchTypeRefresh), 400, "invalid_request"},
		{"subject_token not a JWT", exchGateway, withSubject("not-a-token"), 400, "invalid_request"},
		{"refresh-token-shaped subject_token", exchGateway, withSubject("ory_rt_abcdefghijklmnop.qrstuvwxyz0123456789"), 400, "invalid_request"},
		{"bad signature", exchGateway, withSubject(badSig, up...), 400, "invalid_request"},
		{"other tenant's token", exchGateway, withSubject(globexTok, up...), 400, "invalid_request"},
		{"audience not allowed", exchGateway, withSubject(subjectTok, "audience", exchZendesk), 400, "invalid_target"},
		{"one of two audiences not allowed", exchGateway, withSubject(subjectTok, "audience", exchUpstream, "resource", exchZendesk), 400, "invalid_target"},
		{"resource with fragment", exchGateway, withSubject(subjectTok, "resource", exchUpstream+"#x"), 400, "invalid_target"},
		{"relative resource", exchGateway, withSubject(subjectTok, "resource", "/upstream"), 400, "invalid_target"},
		{"no audience, several allowed", exchSupport, withSubject(subjectTok), 400, "invalid_target"},
		{"scope escalation", exchGateway, withSubject(subjectTok, "scope", "zendesk:tickets:read upstream:read"), 400, "invalid_scope"},
		{"client without the grant type", exchReport, withSubject(subjectTok, "resource", exchPostgres), 400, "unauthorized_client"},
		{"no client authentication", exchCred{}, withSubject(subjectTok, up...), 401, "invalid_client"},
		{"wrong client secret", exchCred{id: "mcp-gateway", secret: "nope"}, withSubject(subjectTok, up...), 401, "invalid_client"},
		{"other tenant's client", exchCred{id: "globex-gateway", secret: "globex-gateway-secret"}, withSubject(subjectTok, up...), 401, "invalid_client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := exchPostForm(t, env.TokenURL("acme"), tc.cred, tc.form)
			var r exchResp
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("%d: not JSON: %s", res.StatusCode, body)
			}
			t.Logf("%d %s: %s", res.StatusCode, r.Error, r.ErrorDescription)
			if res.StatusCode != tc.wantStatus || r.Error != tc.wantError {
				t.Errorf("got %d %s (%s), want %d %s", res.StatusCode, r.Error, r.ErrorDescription, tc.wantStatus, tc.wantError)
			}
			if r.ErrorDescription == "" || r.AccessToken != "" {
				t.Errorf("want an error description and no token, got %s", body)
			}
			ev := a.last("token")
			if ev.Decision != audit.DecisionDeny || ev.Status != tc.wantStatus || !strings.HasPrefix(ev.Reason, tc.wantError+":") {
				t.Errorf("audit event = %+v, want a deny with status %d and reason %s: …", ev, tc.wantStatus, tc.wantError)
			}
		})
	}
}

// A subject token that expired by the tenant clock, or was revoked by its
// client, cannot be exchanged; one about to expire yields a token no
// longer-lived than itself.
func TestTokenExchangeSubjectLifetime(t *testing.T) {
	env := emulatortest.New(t, nil)
	clock := env.Server.Clock("acme")
	clock.Freeze(time.Time{})
	subjectTok := exchCC(t, env, "acme", exchSupport)
	subject := exchClaims(t, subjectTok)

	clock.Advance(9 * time.Minute)
	r := exchange(t, env, exchGateway, subjectTok)
	exchOK(t, r)
	if c := exchClaims(t, r.AccessToken); c.Expiry != subject.Expiry {
		t.Errorf("exp = %d, want the subject token's %d", c.Expiry, subject.Expiry)
	}
	if r.ExpiresIn > 60 {
		t.Errorf("expires_in = %d, want at most the minute left", r.ExpiresIn)
	}

	clock.Advance(time.Minute)
	r = exchange(t, env, exchGateway, subjectTok)
	if r.Status != http.StatusBadRequest || r.Error != "invalid_request" {
		t.Errorf("expired subject token: %d %s (%s), want 400 invalid_request", r.Status, r.Error, r.ErrorDescription)
	}
}

func TestTokenExchangeRevokedSubject(t *testing.T) {
	env := emulatortest.New(t, nil)
	subjectTok := exchCC(t, env, "acme", exchSupport)
	exchOK(t, exchange(t, env, exchGateway, subjectTok))
	res, body := exchPostForm(t, env.Issuer("acme")+"/revoke", exchSupport, url.Values{"token": {subjectTok}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", res.StatusCode, body)
	}
	r := exchange(t, env, exchGateway, subjectTok)
	if r.Status != http.StatusBadRequest || r.Error != "invalid_request" {
		t.Errorf("revoked subject token: %d %s (%s), want 400 invalid_request", r.Status, r.Error, r.ErrorDescription)
	}
}

// Disabling (deprovisioning) a client makes the exchanged tokens it holds
// or acts in inactive at once, whether it acted as the calling client or
// through an actor_token.
func TestTokenExchangeDisabledClient(t *testing.T) {
	tests := []struct {
		name    string
		disable string
		actor   exchCred // actor_token from this client; zero: none
		holder  exchCred
	}{
		{"calling client as actor", "mcp-gateway", exchCred{}, exchGateway},
		{"actor from actor_token", "report-bot", exchReport, exchGateway},
		{"holder with another actor", "mcp-gateway", exchReport, exchGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := emulatortest.New(t, exchConfig())
			subjectTok := exchCC(t, env, "acme", exchSupport)
			extra := []string{}
			if tc.actor.id != "" {
				extra = append(extra, "actor_token", exchCC(t, env, "acme", tc.actor), "actor_token_type", exchTypeAccess)
			}
			r := exchange(t, env, tc.holder, subjectTok, extra...)
			exchOK(t, r)
			if in := exchIntrospectAs(t, env, exchEdge, r.AccessToken); in["active"] != true {
				t.Fatalf("before disabling: %v", in)
			}
			if err := env.Server.DisableClient("acme", tc.disable); err != nil {
				t.Fatal(err)
			}
			if in := exchIntrospectAs(t, env, exchEdge, r.AccessToken); in["active"] != false {
				t.Errorf("after disabling %s: exchanged token %v, want inactive", tc.disable, in)
			}
			if in := exchIntrospectAs(t, env, exchEdge, subjectTok); in["active"] != true {
				t.Errorf("after disabling %s: subject token %v, want still active", tc.disable, in)
			}
		})
	}
}

// Subject tokens minted through the admin API: the attacker's material
// (foreign keys, alg none, HS256, wrong typ, expired) is invalid_request;
// a well-formed token with may_act is judged by it.
func TestTokenExchangeMintedSubjects(t *testing.T) {
	env := emulatortest.New(t, nil)
	claims := func(kv ...any) map[string]any {
		m := map[string]any{"sub": "support-bot", "client_id": "support-bot", "aud": exchZendesk, "scope": "zendesk:tickets:read"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name      string
		req       emulator.MintRequest
		wantError string // "": success
	}{
		{"tenant key", emulator.MintRequest{Claims: claims()}, ""},
		{"may_act names the gateway", emulator.MintRequest{Claims: claims("may_act", map[string]any{"sub": "mcp-gateway"})}, ""},
		{"may_act names another", emulator.MintRequest{Claims: claims("may_act", map[string]any{"sub": "edge-proxy"})}, "invalid_request"},
		{"rogue key", emulator.MintRequest{Claims: claims(), Key: "rogue"}, "invalid_request"},
		{"other tenant's key", emulator.MintRequest{Claims: claims(), Key: "other-tenant:globex"}, "invalid_request"},
		{"alg none", emulator.MintRequest{Claims: claims(), Key: "none"}, "invalid_request"},
		{"hs256 with the public key", emulator.MintRequest{Claims: claims(), Key: "hs256", HS256SecretFrom: "tenant-jwk"}, "invalid_request"},
		{"ID token typ", emulator.MintRequest{Claims: claims(), Typ: "JWT"}, "invalid_request"},
		{"expired", emulator.MintRequest{Claims: claims(), Offset: -15 * time.Minute, Lifetime: 10 * time.Minute}, "invalid_request"},
		{"other issuer", emulator.MintRequest{Claims: claims("iss", env.Issuer("globex"))}, "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := env.Server.Mint(t.Context(), "acme", tc.req)
			if err != nil {
				t.Fatal(err)
			}
			r := exchange(t, env, exchGateway, m.Token)
			t.Logf("%d %s: %s", r.Status, r.Error, r.ErrorDescription)
			if r.Error != tc.wantError || (tc.wantError == "") != (r.Status == http.StatusOK) {
				t.Errorf("got %d %s (%s), want %q", r.Status, r.Error, r.ErrorDescription, tc.wantError)
			}
		})
	}
}

// Revoking the subject token's grant (admin API) makes the tokens
// exchanged from it inactive at introspection.
func TestTokenExchangeGrantRevocationCascade(t *testing.T) {
	env := emulatortest.New(t, exchConfig())
	subjectTok := exchCC(t, env, "acme", exchSupport)
	hop1 := exchange(t, env, exchGateway, subjectTok)
	exchOK(t, hop1)
	hop2 := exchange(t, env, exchEdge, hop1.AccessToken, "audience", exchUpstream)
	exchOK(t, hop2)
	other := exchange(t, env, exchGateway, exchCC(t, env, "acme", exchSupport))
	exchOK(t, other)
	if err := env.Server.Revoke("acme", emulator.Revocation{GrantID: exchClaims(t, subjectTok).GrantID, Reason: "compromised agent"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for name, tok := range map[string]string{"subject": subjectTok, "hop1": hop1.AccessToken, "hop2": hop2.AccessToken, "unrelated": other.AccessToken} {
		got[name] = exchIntrospect(t, env, tok)["active"]
	}
	want := map[string]any{"subject": false, "hop1": false, "hop2": false, "unrelated": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("active after revoking the subject's grant (-want +got):\n%s", diff)
	}
	r := exchange(t, env, exchGateway, hop1.AccessToken)
	if r.Error != "invalid_request" {
		t.Errorf("exchanging a descendant of a revoked grant: %d %s, want invalid_request", r.Status, r.Error)
	}
}
