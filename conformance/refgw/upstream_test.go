package refgw_test

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// revoked-token-rejected, introspection-checks.
func TestIntrospection(t *testing.T) {
	type answer struct {
		status int
		body   any
		delay  time.Duration
	}
	for _, tc := range []struct {
		name   string
		answer answer
		status int
		code   string
		// flaws under which the same request must pass
		flaws []string
	}{
		{name: "active", answer: answer{200, map[string]any{"active": true, "scope": "openid " + scopeRead}, 0}, status: 200},
		{name: "revoked (active false)", answer: answer{200, map[string]any{"active": false}, 0}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection}},
		{name: "active for another audience", answer: answer{200, map[string]any{"active": true, "aud": "https://other.example.test"}, 0}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection}},
		{name: "active for another subject", answer: answer{200, map[string]any{"active": true, "sub": userBob}, 0}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection}},
		{name: "active without the needed scope", answer: answer{200, map[string]any{"active": true, "scope": "openid"}, 0}, status: s403, code: iS,
			flaws: []string{refgw.FlawSkipIntrospection}},
		{name: "expired according to the issuer", answer: answer{200, map[string]any{"active": true, "exp": 1}, 0}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection}},
		{name: "endpoint fails with 500", answer: answer{500, map[string]any{"error": "server_error"}, 0}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection, refgw.FlawIntrospectionFailOpen}},
		{name: "endpoint times out", answer: answer{200, map[string]any{"active": true}, 2 * time.Second}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection, refgw.FlawIntrospectionFailOpen}},
		{name: "answer without active", answer: answer{200, map[string]any{"scope": scopeRead}, 0}, status: s401, code: iT,
			flaws: []string{refgw.FlawSkipIntrospection, refgw.FlawIntrospectionFailOpen}},
	} {
		run := func(t *testing.T, flaws []string, want int) {
			f := newFixture(t)
			gw := f.newGateway(flaws, withIntrospection(f))
			tok := f.mint(f.claims(gw))
			var mu sync.Mutex
			var gotToken string
			f.setIntrospect(func(token string) (int, any) {
				mu.Lock()
				gotToken = token
				mu.Unlock()
				time.Sleep(tc.answer.delay)
				return tc.answer.status, tc.answer.body
			})
			resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok))
			if want == http.StatusOK {
				if resp.status != http.StatusOK {
					t.Fatalf("status %d, want 200; %q", resp.status, resp.header.Values("WWW-Authenticate"))
				}
			} else {
				checkRefusal(t, gw, resp, want, "Bearer", tc.code, tok)
				if got := f.upstreamRequests(); len(got) != 0 {
					t.Errorf("upstream got %v", got)
				}
			}
			_, _, calls := f.counters()
			mu.Lock()
			defer mu.Unlock()
			skip := len(flaws) > 0 && flaws[0] == refgw.FlawSkipIntrospection
			switch {
			case skip && calls != 0:
				t.Errorf("introspected %d times with %s", calls, refgw.FlawSkipIntrospection)
			case !skip && (calls != 1 || gotToken != tok):
				t.Errorf("introspection calls %d, token sent %v; want 1 call with the token", calls, gotToken == tok)
			}
		}
		t.Run(tc.name, func(t *testing.T) {
			run(t, nil, tc.status)
			for _, fl := range tc.flaws {
				t.Run("with "+fl, func(t *testing.T) { run(t, []string{fl}, http.StatusOK) })
			}
		})
	}
}

// Without a cache every request is introspected, so a revocation counts
// at once; with one, no answer outlives the token's exp.
func TestIntrospectionCache(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, withIntrospection(f))
	f.setIntrospect(func(string) (int, any) { return 200, map[string]any{"active": true} })
	tok := f.mint(f.claims(gw))
	if resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok)); resp.status != http.StatusOK {
		t.Fatalf("status %d", resp.status)
	}
	f.setIntrospect(func(string) (int, any) { return 200, map[string]any{"active": false} })
	if resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok)); resp.status != http.StatusUnauthorized {
		t.Fatalf("after revocation: status %d, want 401", resp.status)
	}

	// CacheTTL 1 h, token exp 5 min (expiry check off to observe the cache
	// on its own): the cached answer goes with the token's exp.
	f = newFixture(t)
	gw = f.newGateway([]string{refgw.FlawSkipExpiry}, withIntrospection(f), func(c *refgw.Config) { c.Introspection.CacheTTL = time.Hour })
	tok = f.mint(f.claims(gw))
	for i := 0; i < 3; i++ {
		gw.do(t, nil, gw.get(t, "/api/tickets", tok))
	}
	if _, _, calls := f.counters(); calls != 1 {
		t.Errorf("%d introspection calls within the TTL, want 1", calls)
	}
	f.clock.Add(6 * time.Minute)
	gw.do(t, nil, gw.get(t, "/api/tickets", tok))
	if _, _, calls := f.counters(); calls != 2 {
		t.Errorf("%d introspection calls after exp, want 2", calls)
	}
}

// token-passthrough: what the upstream receives.
func TestUpstreamToken(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flaws []string
		mods  func(f *fixture) []func(*refgw.Config)
		// want is the upstream Authorization; "inbound" stands for the
		// inbound token.
		want string
	}{
		{name: "no exchange configured: no token", want: ""},
		{name: "exchange", mods: func(f *fixture) []func(*refgw.Config) { return []func(*refgw.Config){withExchange(f)} }, want: "Bearer upstream-token-1"},
		{name: "passthrough flaw", flaws: []string{refgw.FlawPassthrough}, want: "inbound"},
		{name: "passthrough flaw beats exchange", flaws: []string{refgw.FlawPassthrough},
			mods: func(f *fixture) []func(*refgw.Config) { return []func(*refgw.Config){withExchange(f)} }, want: "inbound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var mods []func(*refgw.Config)
			if tc.mods != nil {
				mods = tc.mods(f)
			}
			gw := f.newGateway(tc.flaws, mods...)
			tok := f.mint(f.claims(gw))
			if resp := gw.do(t, nil, gw.get(t, "/api/tickets?page=2", tok)); resp.status != http.StatusOK {
				t.Fatalf("status %d %s", resp.status, resp.body)
			}
			want := tc.want
			if want == "inbound" {
				want = "Bearer " + tok
			}
			if diff := cmp.Diff([]upstreamRequest{{Method: "GET", Path: "/api/tickets", Authorization: want}}, f.upstreamRequests()); diff != "" {
				t.Errorf("upstream (-want +got):\n%s", diff)
			}
			recs, raw := readAudit(t, gw.auditPath)
			wantKind := map[string]string{"": "none", "inbound": "passthrough"}[tc.want]
			if wantKind == "" {
				wantKind = "exchanged"
			}
			if recs[0].UpstreamToken != wantKind {
				t.Errorf("audit upstream_token %q, want %q", recs[0].UpstreamToken, wantKind)
			}
			if contains(raw, tok) {
				t.Errorf("the audit log holds the token")
			}
		})
	}
}

func TestExchangeRequestAndCache(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, withExchange(f))
	tok := f.mint(f.claims(gw))
	for i := 0; i < 2; i++ {
		if resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok)); resp.status != http.StatusOK {
			t.Fatalf("status %d", resp.status)
		}
	}
	other := f.mint(f.claims(gw))
	if resp := gw.do(t, nil, gw.get(t, "/api/tickets", other)); resp.status != http.StatusOK {
		t.Fatalf("status %d", resp.status)
	}
	f.mu.Lock()
	forms := f.exchangeForms
	f.mu.Unlock()
	want := []url.Values{
		{
			"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":        {tok},
			"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"audience":             {"https://api.example.test/upstream"},
		},
		{
			"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":        {other},
			"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"audience":             {"https://api.example.test/upstream"},
		},
	}
	if diff := cmp.Diff(want, forms); diff != "" {
		t.Errorf("exchange requests (-want +got):\n%s", diff)
	}
	got := f.upstreamRequests()
	auths := []string{got[0].Authorization, got[1].Authorization, got[2].Authorization}
	if diff := cmp.Diff([]string{"Bearer upstream-token-1", "Bearer upstream-token-1", "Bearer upstream-token-2"}, auths); diff != "" {
		t.Errorf("upstream tokens (-want +got):\n%s", diff)
	}

	// The cached token is not used past the inbound token's exp: with the
	// expiry check off, 6 minutes later the gateway exchanges again.
	f2 := newFixture(t)
	gw2 := f2.newGateway([]string{refgw.FlawSkipExpiry}, withExchange(f2))
	tok2 := f2.mint(f2.claims(gw2))
	gw2.do(t, nil, gw2.get(t, "/api/tickets", tok2))
	f2.clock.Add(6 * time.Minute)
	gw2.do(t, nil, gw2.get(t, "/api/tickets", tok2))
	f2.mu.Lock()
	n := len(f2.exchangeForms)
	f2.mu.Unlock()
	if n != 2 {
		t.Errorf("%d exchanges, want 2 (cache must not outlive exp)", n)
	}
}

func TestExchangeFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   any
	}{
		{"invalid_target", 400, map[string]any{"error": "invalid_target"}},
		{"no access_token", 200, map[string]any{"issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer"}},
		{"DPoP-bound upstream token", 200, map[string]any{"access_token": "x", "token_type": "DPoP"}},
		{"refresh token issued", 200, map[string]any{"access_token": "x", "token_type": "N_A", "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			gw := f.newGateway(nil, withExchange(f))
			f.mu.Lock()
			f.exchangeHook = func(url.Values) (int, any) { return tc.status, tc.body }
			f.mu.Unlock()
			tok := f.mint(f.claims(gw))
			resp := gw.do(t, nil, gw.get(t, "/api/tickets", tok))
			if resp.status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502", resp.status)
			}
			if got := f.upstreamRequests(); len(got) != 0 {
				t.Errorf("upstream got %v", got)
			}
			if contains([]byte(resp.body), f.idp.URL) {
				t.Errorf("the answer names the token endpoint: %s", resp.body)
			}
			recs, _ := readAudit(t, gw.auditPath)
			if recs[0].Decision != refgw.DecisionDeny {
				t.Errorf("audit %+v", recs[0])
			}
		})
	}
}

// A redirect from the upstream is relayed, never followed: the upstream
// token must not travel to wherever it points.
func TestUpstreamRedirectNotFollowed(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, withExchange(f))
	resp := gw.do(t, nil, gw.get(t, "/api/redirect", f.mint(f.claims(gw))))
	if resp.status != http.StatusFound {
		t.Errorf("status %d, want the upstream's 302", resp.status)
	}
	if _, canary, _ := f.counters(); canary != 0 {
		t.Errorf("the gateway followed the redirect (%d canary hits)", canary)
	}
}
