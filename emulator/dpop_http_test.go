package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// dpopPost posts a form to an acme endpoint as clientID (client_secret_basic
// for a client in azSecrets, client_id in the body otherwise) with one
// DPoP header per proof.
func dpopPost(tb testing.TB, env *emulatortest.Env, endpoint, clientID string, form url.Values, proofs ...string) azReply {
	tb.Helper()
	form = azClone(form)
	secret, confidential := azSecrets[clientID]
	if !confidential && clientID != "" {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequest(http.MethodPost, env.Issuer("acme")+"/"+endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if confidential {
		req.SetBasicAuth(clientID, secret)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return azDo(tb, http.DefaultClient, req)
}

func dpopNow(env *emulatortest.Env) time.Time { return env.Server.Clock("acme").Now() }

// dpopTokenProof is a proof for acme's token endpoint, now.
func dpopTokenProof(tb testing.TB, env *emulatortest.Env, k *emulatortest.DPoPKey, o *emulatortest.DPoPOptions) string {
	tb.Helper()
	return k.Proof(tb, "POST", env.TokenURL("acme"), dpopNow(env), o)
}

var dpopCCForm = url.Values{"grant_type": {"client_credentials"}}

// wantDPoPToken checks a DPoP token response and the binding of its
// access token to k, at issuance and at introspection.
func wantDPoPToken(tb testing.TB, env *emulatortest.Env, r azReply, k *emulatortest.DPoPKey) azTokens {
	tb.Helper()
	toks := azOK(tb, r)
	m := r.json(tb)
	if m["token_type"] != "DPoP" {
		tb.Fatalf("token_type %v, want DPoP", m["token_type"])
	}
	want := map[string]any{"jkt": k.JKT()}
	if diff := cmp.Diff(want, jwtClaims(tb, toks.access)["cnf"]); diff != "" {
		tb.Errorf("access token cnf (-want +got):\n%s", diff)
	}
	in := azPost(tb, env, "acme", "introspect", "mcp-gateway", url.Values{"token": {toks.access}}).json(tb)
	if in["active"] != true || in["token_type"] != "DPoP" || cmp.Diff(want, in["cnf"]) != "" {
		tb.Errorf("introspection %v: want active, token_type DPoP, cnf %v", in, want)
	}
	return toks
}

func TestDPoPDiscovery(t *testing.T) {
	env := emulatortest.New(t, nil)
	r := azDo(t, http.DefaultClient, mustGet(t, env.Issuer("acme")+"/.well-known/openid-configuration"))
	got := r.json(t)["dpop_signing_alg_values_supported"]
	if diff := cmp.Diff([]any{"ES256", "ES384", "RS256", "PS256", "EdDSA"}, got); diff != "" {
		t.Errorf("dpop_signing_alg_values_supported (-want +got):\n%s", diff)
	}
}

func mustGet(tb testing.TB, u string) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return req
}

// TestDPoPClientCredentials: a proof by every allowed algorithm gets a
// DPoP token bound by cnf.jkt; no proof, a Bearer token without cnf.
func TestDPoPClientCredentials(t *testing.T) {
	env := emulatortest.New(t, nil)
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			k := emulatortest.NewDPoPKey(t, alg)
			wantDPoPToken(t, env, dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, nil)), k)
		})
	}
	t.Run("htu with a query", func(t *testing.T) {
		k := emulatortest.NewDPoPKey(t, jose.ES256)
		p := dpopTokenProof(t, env, k, &emulatortest.DPoPOptions{Claims: map[string]any{"htu": env.TokenURL("acme") + "?x=1#f"}})
		wantDPoPToken(t, env, dpopPost(t, env, "token", "support-bot", dpopCCForm, p), k)
	})
	t.Run("token exchange", func(t *testing.T) {
		k := emulatortest.NewDPoPKey(t, jose.ES256)
		form := url.Values{"grant_type": {emulator.GrantTokenExchange}, "subject_token": {azCC(t, env)},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}
		wantDPoPToken(t, env, dpopPost(t, env, "token", "mcp-gateway", form, dpopTokenProof(t, env, k, nil)), k)
	})
	t.Run("no proof", func(t *testing.T) {
		r := dpopPost(t, env, "token", "support-bot", dpopCCForm)
		toks := azOK(t, r)
		if tt := r.json(t)["token_type"]; tt != "bearer" && tt != "Bearer" {
			t.Errorf("token_type %v, want Bearer", tt)
		}
		if c, ok := jwtClaims(t, toks.access)["cnf"]; ok {
			t.Errorf("a token without proof has cnf %v", c)
		}
	})
}

// TestDPoPTokenEndpointRefused: every check of RFC 9449 section 4.3 as a
// negative case at the token endpoint, over HTTP with real keys.
func TestDPoPTokenEndpointRefused(t *testing.T) {
	env, rec := azStart(t, nil)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	other := emulatortest.NewDPoPKey(t, jose.ES256)
	now := dpopNow(env)
	tokenURL := env.TokenURL("acme")
	proof := func(h, c map[string]any) func(*testing.T) []string {
		return func(t *testing.T) []string {
			return []string{dpopTokenProof(t, env, k, &emulatortest.DPoPOptions{Header: h, Claims: c})}
		}
	}
	tests := []struct {
		name   string
		proofs func(*testing.T) []string
	}{
		{"missing typ", proof(map[string]any{"typ": nil}, nil)},
		{"typ JWT", proof(map[string]any{"typ": "JWT"}, nil)},
		{"alg none", func(t *testing.T) []string {
			h := b64(`{"typ":"dpop+jwt","alg":"none","jwk":` + jwkJSON(t, k) + `}`)
			c := b64(`{"jti":"n1","htm":"POST","htu":"` + tokenURL + `","iat":` + unix(now) + `}`)
			return []string{h + "." + c + "."}
		}},
		{"alg HS256", func(t *testing.T) []string {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")},
				(&jose.SignerOptions{}).WithType("dpop+jwt").WithHeader("jwk", k.PublicJWK()))
			if err != nil {
				t.Fatal(err)
			}
			jws, _ := s.Sign([]byte(`{"jti":"h1","htm":"POST","htu":"` + tokenURL + `","iat":` + unix(now) + `}`))
			out, _ := jws.CompactSerialize()
			return []string{out}
		}},
		{"private key in jwk", proof(map[string]any{"jwk": k.PrivateJWK()}, nil)},
		{"no jwk", proof(map[string]any{"jwk": nil}, nil)},
		{"signed by another key", proof(map[string]any{"jwk": other.PublicJWK()}, nil)},
		{"two DPoP headers", func(t *testing.T) []string {
			return []string{dpopTokenProof(t, env, k, nil), dpopTokenProof(t, env, k, nil)}
		}},
		{"two proofs in one header", func(t *testing.T) []string {
			return []string{dpopTokenProof(t, env, k, nil) + ", " + dpopTokenProof(t, env, k, nil)}
		}},
		{"empty DPoP header", func(*testing.T) []string { return []string{""} }},
		{"garbage", func(*testing.T) []string { return []string{"not-a-proof"} }},
		{"wrong htm", proof(nil, map[string]any{"htm": "GET"})},
		{"wrong htu: userinfo", proof(nil, map[string]any{"htu": env.Issuer("acme") + "/userinfo"})},
		{"wrong htu: another tenant", proof(nil, map[string]any{"htu": env.TokenURL("globex")})},
		{"wrong htu: not the public base URL", proof(nil, map[string]any{"htu": strings.Replace(tokenURL, "127.0.0.1", "localhost", 1)})},
		{"stale iat", proof(nil, map[string]any{"iat": now.Add(-2 * time.Minute).Unix()})},
		{"iat in the future", proof(nil, map[string]any{"iat": now.Add(2 * time.Minute).Unix()})},
		{"missing jti", proof(nil, map[string]any{"jti": nil})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dpopPost(t, env, "token", "support-bot", dpopCCForm, tt.proofs(t)...)
			azWantError(t, r, http.StatusBadRequest, "invalid_dpop_proof")
			if ev := rec.last(t, "token"); ev.Decision != "deny" || !strings.HasPrefix(ev.Reason, "invalid_dpop_proof") {
				t.Errorf("audit event %+v: want deny invalid_dpop_proof", ev)
			}
		})
	}
	t.Run("replayed jti", func(t *testing.T) {
		p := dpopTokenProof(t, env, k, nil)
		wantDPoPToken(t, env, dpopPost(t, env, "token", "support-bot", dpopCCForm, p), k)
		azWantError(t, dpopPost(t, env, "token", "support-bot", dpopCCForm, p), http.StatusBadRequest, "invalid_dpop_proof")
		// Another proof reusing the jti, fresh signature, still refused.
		again := dpopTokenProof(t, env, k, &emulatortest.DPoPOptions{Claims: map[string]any{"jti": jwtClaims(t, p)["jti"]}})
		azWantError(t, dpopPost(t, env, "token", "support-bot", dpopCCForm, again), http.StatusBadRequest, "invalid_dpop_proof")
	})
	t.Run("stale by the tenant clock", func(t *testing.T) {
		p := dpopTokenProof(t, env, k, nil)
		env.Server.Clock("acme").Advance(emulator.DPoPWindow + time.Second)
		t.Cleanup(func() { env.Server.Clock("acme").Reset() })
		azWantError(t, dpopPost(t, env, "token", "support-bot", dpopCCForm, p), http.StatusBadRequest, "invalid_dpop_proof")
	})
}

func jwkJSON(tb testing.TB, k *emulatortest.DPoPKey) string {
	tb.Helper()
	b, err := k.PublicJWK().MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func unix(t time.Time) string { return itoa(t.Unix()) }

// TestDPoPNonce: with dpop.require_nonce, a proof needs the server's
// current or previous nonce (RFC 9449 section 8).
func TestDPoPNonce(t *testing.T) {
	cfg := emulator.DefaultConfig()
	cfg.Tenants[0].DPoP.RequireNonce = true
	env := emulatortest.New(t, &cfg)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	withNonce := func(n string) *emulatortest.DPoPOptions {
		return &emulatortest.DPoPOptions{Claims: map[string]any{"nonce": n}}
	}

	r := dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, nil))
	azWantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
	nonce := r.Header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("use_dpop_nonce without a DPoP-Nonce header")
	}
	r = dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, withNonce("not-the-nonce")))
	azWantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
	if r.Header.Get("DPoP-Nonce") != nonce {
		t.Errorf("DPoP-Nonce %q, want the current %q", r.Header.Get("DPoP-Nonce"), nonce)
	}

	r = dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, withNonce(nonce)))
	wantDPoPToken(t, env, r, k)
	if r.Header.Get("DPoP-Nonce") != nonce {
		t.Errorf("success: DPoP-Nonce %q, want %q", r.Header.Get("DPoP-Nonce"), nonce)
	}

	// A rotation later the nonce is the previous one, still accepted.
	env.Server.Clock("acme").Advance(emulator.DPoPNonceRotation)
	r = dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, withNonce(nonce)))
	wantDPoPToken(t, env, r, k)
	next := r.Header.Get("DPoP-Nonce")
	if next == "" || next == nonce {
		t.Fatalf("after a rotation DPoP-Nonce is %q, want a new one", next)
	}
	// Two rotations later it has expired.
	env.Server.Clock("acme").Advance(emulator.DPoPNonceRotation)
	azWantError(t, dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, withNonce(nonce))), http.StatusBadRequest, "use_dpop_nonce")

	// A request without a proof needs no nonce.
	azOK(t, dpopPost(t, env, "token", "support-bot", dpopCCForm))

	st, err := env.Server.DPoP("acme")
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, n := range st.Nonces {
		statuses = append(statuses, n.Status)
	}
	if !st.RequireNonce || len(st.Nonces) < 2 || st.Nonces[0].Nonce != nonce || !slices.Contains(statuses, "current") {
		t.Errorf("admin DPoP status %+v: want require_nonce, the first nonce %q and a current one", st, nonce)
	}
}

// TestDPoPClientNonce: a client may require nonces on its own.
func TestDPoPClientNonce(t *testing.T) {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants[0].Clients {
		if cfg.Tenants[0].Clients[i].ID == "support-bot" {
			cfg.Tenants[0].Clients[i].DPoP.RequireNonce = true
		}
	}
	env := emulatortest.New(t, &cfg)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	azWantError(t, dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, nil)), http.StatusBadRequest, "use_dpop_nonce")
	azOK(t, dpopPost(t, env, "token", "mcp-gateway", dpopCCForm, dpopTokenProof(t, env, k, nil)))
}

// TestDPoPBoundAccessTokens: a client registered with
// dpop_bound_access_tokens (configured or by RFC 7591 registration) gets
// no token without a proof.
func TestDPoPBoundAccessTokens(t *testing.T) {
	env := emulatortest.New(t, nil)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	t.Run("configured", func(t *testing.T) {
		cc, err := env.Server.Client("acme", "report-bot")
		if err != nil {
			t.Fatal(err)
		}
		cc.DPoPBoundAccessTokens = true
		if _, err := env.Server.UpsertClient("acme", cc); err != nil {
			t.Fatal(err)
		}
		post := func(proofs ...string) azReply {
			form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"report-bot"}, "client_secret": {"report-bot-secret"}}
			return dpopPost(t, env, "token", "", form, proofs...)
		}
		azWantError(t, post(), http.StatusBadRequest, "invalid_dpop_proof")
		wantDPoPToken(t, env, post(dpopTokenProof(t, env, k, nil)), k)
	})
	t.Run("registered", func(t *testing.T) {
		body := `{"token_endpoint_auth_method":"client_secret_basic","grant_types":["client_credentials"],"dpop_bound_access_tokens":true,"client_name":"dpop agent"}`
		req, _ := http.NewRequest(http.MethodPost, env.Issuer("acme")+"/register", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		r := azDo(t, http.DefaultClient, req)
		m := r.json(t)
		if r.Status != http.StatusCreated || m["dpop_bound_access_tokens"] != true {
			t.Fatalf("registration: HTTP %d %v; want 201 with dpop_bound_access_tokens true", r.Status, m)
		}
		id, secret := m["client_id"].(string), m["client_secret"].(string)
		post := func(proofs ...string) azReply {
			form := url.Values{"grant_type": {"client_credentials"}, "resource": {azZendesk}}
			req, _ := http.NewRequest(http.MethodPost, env.TokenURL("acme"), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(id, secret)
			for _, p := range proofs {
				req.Header.Add("DPoP", p)
			}
			return azDo(t, http.DefaultClient, req)
		}
		azWantError(t, post(), http.StatusBadRequest, "invalid_dpop_proof")
		toks := azOK(t, post(dpopTokenProof(t, env, k, nil)))
		if got := jwtClaims(t, toks.access)["cnf"]; cmp.Diff(map[string]any{"jkt": k.JKT()}, got) != "" {
			t.Errorf("cnf %v, want jkt %s", got, k.JKT())
		}
		cc, err := env.Server.Client("acme", id)
		if err != nil || !cc.DPoPBoundAccessTokens {
			t.Errorf("registered client config %+v (%v): want dpop_bound_access_tokens", cc, err)
		}
	})
}

// dpopCode redeems a code of clientID with a proof by k.
func dpopCode(t *testing.T, env *emulatortest.Env, clientID string, k *emulatortest.DPoPKey) azReply {
	t.Helper()
	code, verifier := azCode(t, env, clientID, nil)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {azCallback}, "code_verifier": {verifier}}
	var proofs []string
	if k != nil {
		proofs = append(proofs, dpopTokenProof(t, env, k, nil))
	}
	return dpopPost(t, env, "token", clientID, form, proofs...)
}

// TestDPoPRefresh: a public client's refresh token is bound to the key of
// its proof (RFC 9449 section 5); a confidential client's is not, and
// each of its access tokens is bound to the key of its own request.
func TestDPoPRefresh(t *testing.T) {
	env := emulatortest.New(t, nil)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	other := emulatortest.NewDPoPKey(t, jose.EdDSA)
	refresh := func(clientID, rt string, key *emulatortest.DPoPKey) azReply {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		var proofs []string
		if key != nil {
			proofs = append(proofs, dpopTokenProof(t, env, key, nil))
		}
		return dpopPost(t, env, "token", clientID, form, proofs...)
	}

	t.Run("public client", func(t *testing.T) {
		toks := wantDPoPToken(t, env, dpopCode(t, env, "acme-copilot", k), k)
		if toks.refresh == "" {
			t.Fatal("no refresh token")
		}
		azWantError(t, refresh("acme-copilot", toks.refresh, nil), http.StatusBadRequest, "invalid_dpop_proof")
		azWantError(t, refresh("acme-copilot", toks.refresh, other), http.StatusBadRequest, "invalid_grant")
		// Refused attempts consumed nothing: the key's holder refreshes.
		next := wantDPoPToken(t, env, refresh("acme-copilot", toks.refresh, k), k)
		azWantError(t, refresh("acme-copilot", next.refresh, other), http.StatusBadRequest, "invalid_grant")
		wantDPoPToken(t, env, refresh("acme-copilot", next.refresh, k), k)
	})
	t.Run("public client without DPoP", func(t *testing.T) {
		toks := azOK(t, dpopCode(t, env, "acme-copilot", nil))
		r := refresh("acme-copilot", toks.refresh, nil)
		if c, ok := jwtClaims(t, azOK(t, r).access)["cnf"]; ok {
			t.Errorf("cnf %v on a token refreshed without a proof", c)
		}
	})
	t.Run("confidential client", func(t *testing.T) {
		toks := wantDPoPToken(t, env, dpopCode(t, env, "acme-portal", k), k)
		r := refresh("acme-portal", toks.refresh, nil)
		next := azOK(t, r)
		if c, ok := jwtClaims(t, next.access)["cnf"]; ok || r.json(t)["token_type"] == "DPoP" {
			t.Errorf("refreshed without a proof: token_type %v cnf %v, want a Bearer token", r.json(t)["token_type"], c)
		}
		wantDPoPToken(t, env, refresh("acme-portal", next.refresh, other), other)
	})
}

// userinfoReq is a userinfo request with an Authorization header and
// DPoP proofs.
func userinfoReq(tb testing.TB, env *emulatortest.Env, method, authz string, proofs ...string) azReply {
	tb.Helper()
	req, err := http.NewRequest(method, env.Issuer("acme")+"/userinfo", nil)
	if err != nil {
		tb.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return azDo(tb, http.DefaultClient, req)
}

// TestDPoPUserinfo: RFC 9449 section 7 at the userinfo endpoint: the DPoP
// scheme, a proof over this request by the token's key with its ath, and
// DPoP challenges.
func TestDPoPUserinfo(t *testing.T) {
	env, rec := azStart(t, nil)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	other := emulatortest.NewDPoPKey(t, jose.ES256)
	tok := wantDPoPToken(t, env, dpopCode(t, env, "acme-copilot", k), k).access
	bearer := azOK(t, dpopCode(t, env, "acme-copilot", nil)).access
	ui := env.Issuer("acme") + "/userinfo"
	proof := func(key *emulatortest.DPoPKey, method string, c map[string]any) string {
		claims := map[string]any{"ath": emulatortest.ATH(tok)}
		for n, v := range c {
			claims[n] = v
		}
		return key.Proof(t, method, ui, dpopNow(env), &emulatortest.DPoPOptions{Claims: claims})
	}

	for _, method := range []string{"GET", "POST"} {
		t.Run("valid "+method, func(t *testing.T) {
			r := userinfoReq(t, env, method, "DPoP "+tok, proof(k, method, nil))
			if r.Status != 200 || r.json(t)["sub"] != "user-alice" {
				t.Fatalf("HTTP %d %s, want alice's userinfo", r.Status, r.Body)
			}
		})
	}
	replayed := proof(k, "GET", nil)
	if r := userinfoReq(t, env, "GET", "DPoP "+tok, replayed); r.Status != 200 {
		t.Fatalf("HTTP %d %s", r.Status, r.Body)
	}

	tests := []struct {
		name   string
		authz  string
		proofs []string
		code   string
	}{
		{"bound token as Bearer", "Bearer " + tok, nil, "invalid_token"},
		{"bound token as Bearer with a proof", "Bearer " + tok, []string{proof(k, "GET", nil)}, "invalid_token"},
		{"unbound token as DPoP", "DPoP " + bearer, []string{proof(k, "GET", map[string]any{"ath": emulatortest.ATH(bearer)})}, "invalid_token"},
		{"DPoP scheme, no token", "DPoP ", nil, "invalid_token"},
		{"invalid token as DPoP", "DPoP not.a.token", []string{proof(k, "GET", nil)}, "invalid_token"},
		{"no proof", "DPoP " + tok, nil, "invalid_dpop_proof"},
		{"two proofs", "DPoP " + tok, []string{proof(k, "GET", nil), proof(k, "GET", nil)}, "invalid_dpop_proof"},
		{"no ath", "DPoP " + tok, []string{proof(k, "GET", map[string]any{"ath": nil})}, "invalid_dpop_proof"},
		{"ath of another token", "DPoP " + tok, []string{proof(k, "GET", map[string]any{"ath": emulatortest.ATH(bearer)})}, "invalid_dpop_proof"},
		{"another key", "DPoP " + tok, []string{proof(other, "GET", nil)}, "invalid_dpop_proof"},
		{"wrong htm", "DPoP " + tok, []string{proof(k, "POST", nil)}, "invalid_dpop_proof"},
		{"wrong htu", "DPoP " + tok, []string{proof(k, "GET", map[string]any{"htu": env.TokenURL("acme")})}, "invalid_dpop_proof"},
		{"stale iat", "DPoP " + tok, []string{proof(k, "GET", map[string]any{"iat": dpopNow(env).Add(-5 * time.Minute).Unix()})}, "invalid_dpop_proof"},
		{"replayed proof", "DPoP " + tok, []string{replayed}, "invalid_dpop_proof"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := userinfoReq(t, env, "GET", tt.authz, tt.proofs...)
			ch := r.Header.Get("WWW-Authenticate")
			if r.Status != http.StatusUnauthorized || r.json(t)["error"] != tt.code {
				t.Fatalf("HTTP %d %s, want 401 %s", r.Status, r.Body, tt.code)
			}
			if !strings.HasPrefix(ch, "DPoP ") || !strings.Contains(ch, `error="`+tt.code+`"`) || !strings.Contains(ch, `algs="ES256`) {
				t.Errorf("WWW-Authenticate %q: want a DPoP challenge with error=%q", ch, tt.code)
			}
			if ev := rec.last(t, "userinfo"); ev.Decision != "deny" || ev.Status != 401 {
				t.Errorf("audit event %+v: want deny 401", ev)
			}
		})
	}
	t.Run("no credentials", func(t *testing.T) {
		r := userinfoReq(t, env, "GET", "")
		chs := r.Header.Values("WWW-Authenticate")
		if r.Status != 401 || len(chs) != 2 || !strings.HasPrefix(chs[0], "Bearer ") || !strings.HasPrefix(chs[1], "DPoP algs=") {
			t.Errorf("HTTP %d challenges %q: want 401 with a Bearer and a DPoP challenge", r.Status, chs)
		}
	})
	t.Run("unbound token as Bearer", func(t *testing.T) {
		if r := userinfoReq(t, env, "GET", "Bearer "+bearer); r.Status != 200 {
			t.Errorf("HTTP %d %s", r.Status, r.Body)
		}
	})
}

// TestDPoPAdmin: GET /admin/v1/tenants/{tenant}/dpop lists the proofs seen
// (never the proofs themselves) and the nonces issued.
func TestDPoPAdmin(t *testing.T) {
	cfg := emulator.DefaultConfig()
	cfg.Tenants[0].DPoP.RequireNonce = true
	env := emulatortest.New(t, &cfg)
	k := emulatortest.NewDPoPKey(t, jose.ES256)
	first := dpopTokenProof(t, env, k, nil)
	r := dpopPost(t, env, "token", "support-bot", dpopCCForm, first)
	nonce := r.Header.Get("DPoP-Nonce")
	ok := dpopTokenProof(t, env, k, &emulatortest.DPoPOptions{Claims: map[string]any{"nonce": nonce}})
	azOK(t, dpopPost(t, env, "token", "support-bot", dpopCCForm, ok))
	dpopPost(t, env, "token", "support-bot", dpopCCForm, dpopTokenProof(t, env, k, &emulatortest.DPoPOptions{Claims: map[string]any{"htm": "PUT"}}))

	resp, err := http.Get(env.AdminURL + "/admin/v1/tenants/acme/dpop")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		RequireNonce bool `json:"require_nonce"`
		Proofs       []map[string]any
		Nonces       []map[string]any
	}
	raw := new(strings.Builder)
	if err := json.NewDecoder(io.TeeReader(resp.Body, raw)).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP %d: %v", resp.StatusCode, err)
	}
	for _, p := range []string{first, ok} {
		if strings.Contains(raw.String(), p) || strings.Contains(raw.String(), strings.Split(p, ".")[2]) {
			t.Fatal("the admin API shows a proof")
		}
	}
	type row struct{ JTI, JKT, HTM, Client, Result string }
	var got []row
	for _, p := range body.Proofs {
		s := func(k string) string { v, _ := p[k].(string); return v }
		got = append(got, row{s("jti"), s("jkt"), s("htm"), s("client_id"), s("result")})
	}
	want := []row{
		{jwtClaims(t, first)["jti"].(string), k.JKT(), "POST", "support-bot", "use_dpop_nonce"},
		{jwtClaims(t, ok)["jti"].(string), k.JKT(), "POST", "support-bot", "accepted"},
		{"", k.JKT(), "PUT", "support-bot", "invalid_dpop_proof"},
	}
	want[2].JTI = got[len(got)-1].JTI // random, checked non-empty below
	if diff := cmp.Diff(want, got); diff != "" || want[2].JTI == "" {
		t.Errorf("proofs (-want +got):\n%s", diff)
	}
	if !body.RequireNonce || len(body.Nonces) != 1 || body.Nonces[0]["nonce"] != nonce || body.Nonces[0]["status"] != "current" {
		t.Errorf("nonces %v, require_nonce %v: want the one current nonce %q", body.Nonces, body.RequireNonce, nonce)
	}

	if _, err := env.Server.DPoP("nope"); err == nil {
		t.Error("DPoP of an unknown tenant: no error")
	}
	if err := env.Server.ResetTenant(t.Context(), "acme"); err != nil {
		t.Fatal(err)
	}
	if st, _ := env.Server.DPoP("acme"); len(st.Proofs) != 0 || len(st.Nonces) != 0 {
		t.Errorf("after a reset: %+v, want nothing recorded", st)
	}
}
