package refagent

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/internal/parts"
	"github.com/agentsso/agentsso/softhsm"
)

// checkTask asserts the conforming outcome every run shares: the model's
// answer printed, the tools run on their own servers with tokens for that
// server only, the decoy untouched by tokens, nothing the agent held in
// the model traffic or on stderr, and nothing sent after the revocation.
func checkTask(t *testing.T, w *world, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(w.stdout.String(), "All done: final answer.") {
		t.Errorf("stdout = %q, want the model's answer", w.stdout.String())
	}
	for name, rs := range w.rs {
		for _, h := range w.rec.all(name, "/mcp") {
			if h.Auth == "" {
				continue
			}
			if rs.opts.public {
				t.Errorf("decoy %s got an Authorization header", name)
				continue
			}
			if c := claimsOf(t, tokenOf(h.Auth)); !audHas(c["aud"], rs.url) {
				t.Errorf("%s got a token for aud %v", name, c["aud"])
			}
			if h.Query.Has("access_token") {
				t.Errorf("%s got a token in the query", name)
			}
		}
	}
	toks := w.issued()
	if len(toks) == 0 {
		t.Fatal("the emulator issued no token")
	}
	secrets := append(toks, "bot-secret-0123456789")
	if ut := w.env["AGENTSSO_USER_TOKEN"]; ut != "" {
		secrets = append(secrets, ut)
	}
	for _, h := range w.rec.all("model", "") {
		for _, s := range secrets {
			if strings.Contains(h.Body, s) {
				t.Errorf("a token or secret reached the model: %.30s…", s)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(w.stderr.String()+w.stdout.String(), s) {
			t.Errorf("a token or secret was printed: %.30s…", s)
		}
	}
	if revs := w.rec.all("idp", "/revoke"); len(revs) > 0 {
		last := revs[0].At
		for _, name := range []string{"rs1", "rs2", "decoy"} {
			for _, h := range w.rec.all(name, "") {
				if h.At.After(last) {
					t.Errorf("%s %s %s sent after the revocation", name, h.Method, h.Path)
				}
			}
		}
	}
}

// toolCalls counts the successful tools/call requests a server answered.
func toolCalls(w *world, srv string) int {
	n := 0
	for _, h := range w.rec.all(srv, "/mcp") {
		if h.Status == 200 && strings.Contains(h.Body, `"tools/call"`) {
			n++
		}
	}
	return n
}

func TestAuthorizationCodeTwoServers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{steps: []modelStep{{tool: "notes_read"}, {tool: "search", args: `{"q":"x"}`}, {tool: "lookup"}}})
	checkTask(t, w, w.run())
	for _, s := range []string{"rs1", "rs2", "decoy"} {
		if toolCalls(w, s) != 1 {
			t.Errorf("%s answered %d tool calls, want 1", s, toolCalls(w, s))
		}
	}
	auths := w.rec.all("idp", "/authorize")
	if len(auths) != 2 {
		t.Fatalf("%d authorization requests, want 2 (rs1, rs2)", len(auths))
	}
	resources := map[string]bool{}
	for _, h := range auths {
		q := h.Query
		if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
			t.Errorf("authorization request without PKCE S256: %v", q)
		}
		if q.Get("state") == "" {
			t.Error("authorization request without state")
		}
		resources[q.Get("resource")] = true
		if sc := strings.Fields(q.Get("scope")); !contains(sc, "offline_access") {
			t.Errorf("scope %v lacks offline_access", sc)
		}
	}
	if !resources[w.rs["rs1"].url] || !resources[w.rs["rs2"].url] {
		t.Errorf("resources %v, want rs1 and rs2", resources)
	}
	var codes int
	for _, h := range w.rec.all("idp", "/token") {
		if h.Form.Get("grant_type") == "authorization_code" {
			codes++
			if h.Form.Get("code_verifier") == "" || h.Form.Get("resource") == "" || h.Form.Get("client_id") != "copilot" {
				t.Errorf("code redemption %v lacks verifier, resource or client_id", h.Form)
			}
		}
	}
	if codes != 2 {
		t.Errorf("%d code redemptions, want 2", codes)
	}
	if revs := w.rec.all("idp", "/revoke"); len(revs) != 2 {
		t.Errorf("%d revocations, want 2 (one refresh token per server)", len(revs))
	} else {
		for _, h := range revs {
			if h.Form.Get("token_type_hint") != "refresh_token" || h.Status != 200 {
				t.Errorf("revocation %v answered %d", h.Form, h.Status)
			}
		}
	}
	if n := len(w.rec.all("model", "")); n != 4 {
		t.Errorf("%d model rounds, want 4", n)
	}
}

func TestClientCredentialsTwoServers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{grant: GrantClientCredentials})
	checkTask(t, w, w.run())
	if toolCalls(w, "rs1") != 1 || toolCalls(w, "rs2") != 1 {
		t.Errorf("tool calls rs1 %d rs2 %d, want 1 each", toolCalls(w, "rs1"), toolCalls(w, "rs2"))
	}
	var cc []string
	for _, h := range w.rec.all("idp", "/token") {
		if h.Form.Get("grant_type") != "client_credentials" {
			t.Errorf("unexpected grant %q", h.Form.Get("grant_type"))
			continue
		}
		if !strings.HasPrefix(h.Auth, "Basic ") {
			t.Error("client_credentials without client_secret_basic")
		}
		cc = append(cc, h.Form.Get("resource"))
	}
	if len(cc) != 2 || cc[0] != w.rs["rs1"].url || cc[1] != w.rs["rs2"].url {
		t.Errorf("client_credentials resources %v, want [rs1 rs2]", cc)
	}
	if len(w.rec.all("idp", "/authorize")) != 0 {
		t.Error("client_credentials run opened the browser")
	}
}

func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{grant: GrantClientCredentials, clientAuth: AuthPrivateKeyJWT})
	checkTask(t, w, w.run())
	jtis := map[string]bool{}
	for _, h := range w.rec.all("idp", "/token") {
		a := h.Form.Get("client_assertion")
		if a == "" || h.Status != 200 {
			t.Fatalf("token request without an accepted assertion: %d %s", h.Status, h.Resp)
		}
		c := claimsOf(t, a)
		if c["aud"] != w.issuer("agents") || c["iss"] != "jwtbot" || c["sub"] != "jwtbot" {
			t.Errorf("assertion claims %v", c)
		}
		if life := c["exp"].(float64) - c["iat"].(float64); life > 60 {
			t.Errorf("assertion lives %vs", life)
		}
		jti := c["jti"].(string)
		if jtis[jti] {
			t.Errorf("jti %s reused", jti)
		}
		jtis[jti] = true
	}
	if len(jtis) != 2 {
		t.Errorf("%d assertions, want 2", len(jtis))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestScopeStepUp(t *testing.T) {
	t.Parallel()
	rs := defaultRS()
	delete(rs, "rs2")
	rs["rs1"].prmScopes = []string{"notes:read"}
	rs["rs1"].challengeScope = "notes:read"
	w := newWorld(t, worldOpts{rs: rs, steps: []modelStep{{tool: "notes_read"}, {tool: "notes_write"}}})
	checkTask(t, w, w.run())
	if toolCalls(w, "rs1") != 2 {
		t.Errorf("rs1 answered %d tool calls, want 2", toolCalls(w, "rs1"))
	}
	auths := w.rec.all("idp", "/authorize")
	if len(auths) != 2 {
		t.Fatalf("%d authorization requests, want 2", len(auths))
	}
	first, second := strings.Fields(auths[0].Query.Get("scope")), strings.Fields(auths[1].Query.Get("scope"))
	if contains(first, "notes:write") || !contains(first, "notes:read") {
		t.Errorf("first authorization asked %v, want notes:read without notes:write", first)
	}
	if !contains(second, "notes:read") || !contains(second, "notes:write") {
		t.Errorf("step-up asked %v, want the union notes:read notes:write", second)
	}
	// The first grant's refresh token is revoked too.
	if n := len(w.rec.all("idp", "/revoke")); n != 2 {
		t.Errorf("%d revocations, want 2 (both grants)", n)
	}
}

func TestDPoPWithNonces(t *testing.T) {
	t.Parallel()
	rs := defaultRS()
	delete(rs, "rs2")
	rs["rs1"].dpopRequired = true
	rs["rs1"].nonce = "rs-nonce-0123"
	w := newWorld(t, worldOpts{rs: rs, requireNonce: true, steps: []modelStep{{tool: "notes_read"}, {tool: "notes_read"}}})
	checkTask(t, w, w.run())
	var asNonceErr, asNonceOK bool
	for _, h := range w.rec.all("idp", "/token") {
		if h.DPoP == "" {
			t.Errorf("token request without a DPoP proof")
			continue
		}
		c := claimsOf(t, h.DPoP)
		if c["htu"] != w.issuer("agents")+"/token" || c["htm"] != "POST" || c["ath"] != nil {
			t.Errorf("token endpoint proof claims %v", c)
		}
		switch {
		case h.Status == 400 && strings.Contains(h.Resp, "use_dpop_nonce"):
			asNonceErr = true
		case h.Status == 200 && c["nonce"] != nil:
			asNonceOK = true
		}
	}
	if !asNonceErr || !asNonceOK {
		t.Errorf("AS nonce: asked %v, honoured %v", asNonceErr, asNonceOK)
	}
	var rsNonceErr, rsNonceOK bool
	for _, h := range w.rec.all("rs1", "/mcp") {
		if h.Auth == "" {
			continue
		}
		if !strings.HasPrefix(h.Auth, "DPoP ") {
			t.Errorf("rs1 got scheme %q", strings.Fields(h.Auth)[0])
		}
		c := claimsOf(t, h.DPoP)
		switch {
		case h.Status == 401:
			rsNonceErr = true
		case h.Status < 300 && c["nonce"] == "rs-nonce-0123":
			rsNonceOK = true
		}
	}
	if !rsNonceErr || !rsNonceOK {
		t.Errorf("RS nonce: asked %v, honoured %v", rsNonceErr, rsNonceOK)
	}
	if claimsOf(t, w.issued()[0])["cnf"] == nil {
		t.Error("the access token is not DPoP-bound")
	}
}

func TestTokenExchange(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{grant: GrantClientCredentials, userToken: true})
	checkTask(t, w, w.run())
	ut := w.env["AGENTSSO_USER_TOKEN"]
	var ex []string
	for _, h := range w.rec.all("idp", "/token") {
		f := h.Form
		if !strings.HasSuffix(f.Get("grant_type"), "token-exchange") {
			continue
		}
		if f.Get("subject_token") != ut || f.Get("actor_token") == "" || h.Status != 200 {
			t.Errorf("exchange %d without the user's token or an actor token: %s", h.Status, h.Resp)
		}
		ex = append(ex, f.Get("resource")+" "+f.Get("scope"))
	}
	want := []string{w.rs["rs1"].url + " notes:read", w.rs["rs2"].url + " search"}
	if strings.Join(ex, "|") != strings.Join(want, "|") {
		t.Errorf("exchanges %q, want %q (narrowed to the user's scopes)", ex, want)
	}
	for _, h := range w.rec.all("rs1", "/mcp") {
		if h.Auth != "" && claimsOf(t, tokenOf(h.Auth))["act"] == nil {
			t.Error("rs1 got a token without act")
		}
	}
}

func TestMCPConformanceContext(t *testing.T) {
	t.Parallel()
	w := newWorld(t, worldOpts{grant: GrantClientCredentials})
	ctx, _ := json.Marshal(map[string]string{"client_id": "bot", "client_secret": "bot-secret-0123456789",
		"issuer": w.issuer("agents"), "server_url": w.rs["rs1"].url})
	w.env = map[string]string{"MCP_CONFORMANCE_SCENARIO": "auth/client-credentials", "MCP_CONFORMANCE_CONTEXT": string(ctx)}
	if err := w.run(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.stderr.String(), "tools notes_read, notes_write") {
		t.Error("the tools were not listed")
	}
	toks := w.rec.all("idp", "/token")
	if len(toks) != 1 || toks[0].Form.Get("grant_type") != "client_credentials" || toks[0].Status != 200 {
		t.Errorf("token requests %+v", toks)
	}
	if len(w.rec.all("model", "")) != 0 {
		t.Error("the model was called without being configured")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	base := func() map[string]string {
		return map[string]string{
			"AGENTSSO_ISSUER": "http://127.0.0.1:1/t/a", "AGENTSSO_GRANT": "client_credentials",
			"AGENTSSO_CLIENT_ID": "c", "AGENTSSO_CLIENT_SECRET": "s", "AGENTSSO_MCP_SERVERS": "rs1=http://127.0.0.1:2/mcp",
		}
	}
	for _, tc := range []struct {
		set  map[string]string
		want string
	}{
		{map[string]string{"AGENTSSO_MCP_SERVERS": ""}, "AGENTSSO_MCP_SERVERS: required"},
		{map[string]string{"AGENTSSO_MCP_SERVERS": "rs1"}, "AGENTSSO_MCP_SERVERS: item 1"},
		{map[string]string{"AGENTSSO_MCP_SERVERS": "a=ftp://x/"}, "AGENTSSO_MCP_SERVERS: server a"},
		{map[string]string{"AGENTSSO_MCP_SERVERS": "a=http://x/ a=http://y/"}, "given twice"},
		{map[string]string{"AGENTSSO_GRANT": "password"}, "AGENTSSO_GRANT"},
		{map[string]string{"AGENTSSO_CLIENT_AUTH": "none"}, "AGENTSSO_CLIENT_AUTH"},
		{map[string]string{"AGENTSSO_CLIENT_AUTH": "tls_client_auth"}, "AGENTSSO_CLIENT_AUTH"},
		{map[string]string{"AGENTSSO_CLIENT_SECRET": ""}, "AGENTSSO_CLIENT_SECRET"},
		{map[string]string{"AGENTSSO_CLIENT_AUTH": "private_key_jwt"}, "AGENTSSO_CLIENT_KEY_FILE"},
		{map[string]string{"AGENTSSO_CLIENT_AUTH": "private_key_jwt", "AGENTSSO_CLIENT_KEY_FILE": "/nonexistent/key.pem"}, "AGENTSSO_CLIENT_KEY_FILE"},
		{map[string]string{"AGENTSSO_ISSUER": "not a url"}, "AGENTSSO_ISSUER"},
		{map[string]string{"AGENTSSO_CLIENT_ID": ""}, "AGENTSSO_CLIENT_ID"},
		{map[string]string{"AGENTSSO_GRANT": "authorization_code"}, "AGENTSSO_REDIRECT_URI"},
		{map[string]string{"AGENTSSO_GRANT": "authorization_code", "AGENTSSO_REDIRECT_URI": "http://example.com:80/cb"}, "AGENTSSO_REDIRECT_URI"},
		{map[string]string{"AGENTSSO_GRANT": "authorization_code", "AGENTSSO_REDIRECT_URI": "http://127.0.0.1:9/cb"}, "AGENTSSO_BROWSER_URL"},
		{map[string]string{"AGENTSSO_MODEL_URL": "http://127.0.0.1:3"}, "AGENTSSO_TASK"},
		{map[string]string{EnvFlaws: "pkce-plain,nope"}, `unknown flaw "nope"`},
		{map[string]string{"MCP_CONFORMANCE_CONTEXT": "{"}, "MCP_CONFORMANCE_CONTEXT"},
	} {
		env := base()
		for k, v := range tc.set {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		var stderr strings.Builder
		err := Run(context.Background(), env, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("env %v: error %v (stderr %q), want one naming %q", tc.set, err, stderr.String(), tc.want)
		}
	}
}

// TestPKCS11ClientKey: private_key_jwt with the client's key in SoftHSM2,
// addressed by AGENTSSO_CLIENT_KEY_PKCS11_URI.
func TestPKCS11ClientKey(t *testing.T) {
	parts.Require(t, "SoftHSM2 and cgo", "apt-get install -y softhsm2", softhsm.SoftHSM2Available())
	cfg, err := softhsm.SetupSoftHSM2(t.TempDir(), "refagent-test", "5678", "1234")
	if err != nil {
		t.Fatal(err)
	}
	store, err := softhsm.NewPKCS11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.Create(context.Background(), "jwtbot", softhsm.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.PublicJWK()}})
	uri := softhsm.PKCS11URI{Token: cfg.Token, ModulePath: cfg.Module, PINValue: cfg.PIN}.Encode()
	w := newWorld(t, worldOpts{grant: GrantClientCredentials, clientAuth: AuthPrivateKeyJWT, jwtbotJWKS: string(jwks),
		env: map[string]string{"AGENTSSO_CLIENT_KEY_FILE": "", "AGENTSSO_CLIENT_KEY_ID": "", "AGENTSSO_CLIENT_KEY_PKCS11_URI": uri}})
	checkTask(t, w, w.run())
	store.Close()
	for _, h := range w.rec.all("idp", "/token") {
		if h.Status != 200 || h.Form.Get("client_assertion") == "" {
			t.Errorf("token request %d: %s", h.Status, h.Resp)
		}
	}
}
