package refagent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentsso/agentsso/emulator"
)

// The test world: what conformance/agentlab will provide, in miniature.
// An emulator (tenant "agents", and "other" for cross-AS tests) behind a
// recording wrapper that can rewrite its answers; MCP servers made with
// the go-sdk behind an RFC 6750/9449 middleware that verifies the
// emulator's tokens and serves RFC 9728 metadata; a scripted
// OpenAI-compatible model; a browser shim whose user (alice) signs in
// through login_hint. Every request to every part is recorded.

// hit is one recorded request.
type hit struct {
	Srv    string // idp, rs1, rs2, decoy, model, shim
	Method string
	Path   string
	Query  url.Values
	Form   url.Values
	Auth   string
	DPoP   string
	Body   string
	Status int
	Resp   string // the response body (idp only)
	At     time.Time
}

type recorder struct {
	mu   sync.Mutex
	hits []hit
}

func (r *recorder) add(h hit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits = append(r.hits, h)
}

// all returns the hits of srv ("" for every part) whose path has the
// suffix (any path when empty).
func (r *recorder) all(srv, pathSuffix string) []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hit
	for _, h := range r.hits {
		if (srv == "" || h.Srv == srv) && strings.HasSuffix(h.Path, pathSuffix) {
			out = append(out, h)
		}
	}
	return out
}

// capture records a request, restoring its body.
func capture(srv string, r *http.Request) hit {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	h := hit{Srv: srv, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Auth: r.Header.Get("Authorization"),
		DPoP: r.Header.Get("DPoP"), Body: string(b), At: time.Now()}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		h.Form, _ = url.ParseQuery(string(b))
	}
	return h
}

// modelStep is one scripted answer of the model: a tool call, after an
// optional delay.
type modelStep struct {
	tool  string
	args  string
	delay time.Duration
}

// rsOpts shapes one MCP server.
type rsOpts struct {
	tools          map[string]string // tool name -> scope it needs
	public         bool              // no authorization at all (the decoy)
	tenant         string            // the issuer it trusts (default agents)
	prmScopes      []string
	prmResource    string // default: the server's URL
	challengeScope string // scope in the 401 challenge
	dpopRequired   bool
	nonce          string // a DPoP nonce the server requires
	rejectCalls    []int  // reject these tools/call (1-based, valid tokens) with invalid_token
	rejectFrom     int    // reject every tools/call from this one on
}

type worldOpts struct {
	grant        string // default authorization_code
	clientAuth   string
	flaws        string
	atLifetime   time.Duration
	steps        []modelStep
	rs           map[string]*rsOpts
	requireNonce bool // the agents tenant requires DPoP nonces
	userToken    bool // mint a user token for alice: token exchange
	idpMutate    func(path string, body []byte) []byte
	redirectMut  func(loc string) string
	copilotScope []string
	jwtbotJWKS   string            // the private_key_jwt client's keys (default: the key file's)
	env          map[string]string // set over the agent's environment ("" deletes)
}

type world struct {
	t       *testing.T
	rec     *recorder
	emu     *emulator.Server
	idpURL  string
	rs      map[string]*testRS
	env     map[string]string
	opts    worldOpts
	keyFile string
	stdout  bytes.Buffer
	stderr  bytes.Buffer
}

func (w *world) issuer(tenant string) string { return w.idpURL + "/t/" + tenant }

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func defaultRS() map[string]*rsOpts {
	return map[string]*rsOpts{
		"rs1":   {tools: map[string]string{"notes_read": "notes:read", "notes_write": "notes:write"}, prmScopes: []string{"notes:read", "notes:write"}},
		"rs2":   {tools: map[string]string{"search": "search"}, prmScopes: []string{"search"}},
		"decoy": {tools: map[string]string{"lookup": ""}, public: true},
	}
}

// newWorld builds and starts everything; the agent is not run yet.
func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	if o.grant == "" {
		o.grant = GrantAuthorizationCode
	}
	if o.rs == nil {
		o.rs = defaultRS()
	}
	if o.steps == nil {
		o.steps = []modelStep{{tool: "notes_read"}, {tool: "search", args: `{"q":"x"}`}}
	}
	w := &world{t: t, rec: &recorder{}, rs: map[string]*testRS{}, opts: o}

	// Listeners first: the servers' URLs are the tenant's audiences.
	idpLn := listen(t)
	w.idpURL = "http://" + idpLn.Addr().String()
	names := []string{"rs1", "rs2", "decoy"}
	rsLn := map[string]net.Listener{}
	var audiences []string
	for _, n := range names {
		if o.rs[n] == nil {
			continue
		}
		ln := listen(t)
		rsLn[n] = ln
		audiences = append(audiences, "http://"+ln.Addr().String()+"/mcp")
	}
	redirectLn := listen(t)
	redirectURI := "http://" + redirectLn.Addr().String() + "/callback"
	redirectLn.Close() // the agent listens there

	// The client key for private_key_jwt.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	w.keyFile = filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(w.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if o.jwtbotJWKS != "" {
		jwks = []byte(o.jwtbotJWKS)
	}

	copilotScopes := o.copilotScope
	if copilotScopes == nil {
		copilotScopes = []string{"openid", "offline_access", "notes:read", "notes:write", "search"}
	}
	lt := emulator.LifetimeConfig{AccessToken: o.atLifetime}
	agents := emulator.TenantConfig{
		Name:         "agents",
		Scopes:       []string{"notes:read", "notes:write", "search", "lookup"},
		Audiences:    audiences,
		Registration: emulator.RegistrationConfig{Dynamic: true},
		DPoP:         emulator.DPoPConfig{RequireNonce: o.requireNonce},
		Clients: []emulator.ClientConfig{
			{ID: "copilot", AuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"},
				RedirectURIs: []string{redirectURI}, OptionalScopes: copilotScopes, Audiences: audiences, Lifetimes: lt},
			{ID: "bot", Secret: "bot-secret-0123456789", AuthMethod: "client_secret_basic",
				GrantTypes:     []string{"client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"},
				OptionalScopes: []string{"notes:read", "notes:write", "search"}, Audiences: audiences,
				DefaultAudience: audiences[:1], ExchangeAudiences: audiences, Lifetimes: lt},
			{ID: "jwtbot", AuthMethod: "private_key_jwt", JWKS: string(jwks), AssertionAlg: "ES256",
				GrantTypes: []string{"client_credentials"}, OptionalScopes: []string{"notes:read", "notes:write", "search"},
				Audiences: audiences, Lifetimes: lt},
		},
		Users: []emulator.UserConfig{{Username: "alice", Password: "alice-password", Subject: "user-alice", Email: "alice@agents.test", Name: "Alice"}},
	}
	other := emulator.TenantConfig{
		Name: "other", Scopes: []string{"search"}, Audiences: audiences,
		Registration: emulator.RegistrationConfig{Dynamic: true},
		Users:        []emulator.UserConfig{{Username: "alice", Password: "alice-password", Subject: "other-alice"}},
	}
	cfg := emulator.Config{
		PublicBaseURL: w.idpURL,
		Addr:          idpLn.Addr().String(),
		AdminAddr:     "127.0.0.1:0",
		Audit:         emulator.AuditConfig{Disabled: true},
		Keys:          emulator.KeysConfig{Backend: "memory"},
		Tenants:       []emulator.TenantConfig{agents, other},
	}
	w.emu, err = emulator.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	idp := &httptest.Server{Listener: idpLn, Config: &http.Server{Handler: http.HandlerFunc(w.serveIDP)}}
	idp.Start()
	t.Cleanup(func() { idp.Close(); w.emu.Close() })

	var servers []string
	for _, n := range names {
		ro := o.rs[n]
		if ro == nil {
			continue
		}
		rs := newTestRS(w, n, ro, rsLn[n])
		w.rs[n] = rs
		servers = append(servers, n+"="+rs.url)
	}
	model := httptest.NewServer(http.HandlerFunc(w.serveModel))
	shim := httptest.NewServer(http.HandlerFunc(w.serveShim))
	t.Cleanup(func() { model.Close(); shim.Close() })

	w.env = map[string]string{
		"AGENTSSO_SCENARIO":     t.Name(),
		"AGENTSSO_TASK":         "Read my notes and search for x.",
		"AGENTSSO_ISSUER":       w.issuer("agents"),
		"AGENTSSO_GRANT":        o.grant,
		"AGENTSSO_MCP_SERVERS":  strings.Join(servers, " "),
		"AGENTSSO_REDIRECT_URI": redirectURI,
		"AGENTSSO_BROWSER_URL":  shim.URL + "/browse",
		"AGENTSSO_MODEL_URL":    model.URL,
		"OPENAI_API_KEY":        "model-api-key-canary",
		EnvFlaws:                o.flaws,
	}
	switch {
	case o.grant == GrantAuthorizationCode:
		w.env["AGENTSSO_CLIENT_ID"] = "copilot"
		w.env["AGENTSSO_CLIENT_AUTH"] = "none"
	case o.clientAuth == AuthPrivateKeyJWT:
		w.env["AGENTSSO_CLIENT_ID"] = "jwtbot"
		w.env["AGENTSSO_CLIENT_AUTH"] = AuthPrivateKeyJWT
		w.env["AGENTSSO_CLIENT_KEY_FILE"] = w.keyFile
		w.env["AGENTSSO_CLIENT_KEY_ID"] = "k1"
	default:
		w.env["AGENTSSO_CLIENT_ID"] = "bot"
		w.env["AGENTSSO_CLIENT_AUTH"] = AuthClientSecretBasic
		w.env["AGENTSSO_CLIENT_SECRET"] = "bot-secret-0123456789"
	}
	if o.userToken {
		res, err := w.emu.Mint(context.Background(), "agents", emulator.MintRequest{
			Claims:   map[string]any{"sub": "user-alice", "client_id": "copilot", "scope": "notes:read search", "aud": []string{w.issuer("agents")}},
			Lifetime: 10 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		w.env["AGENTSSO_USER_TOKEN"] = res.Token
	}
	for k, v := range o.env {
		if v == "" {
			delete(w.env, k)
		} else {
			w.env[k] = v
		}
	}
	return w
}

// run runs the agent in process and returns its error.
func (w *world) run() error {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := Run(ctx, w.env, &w.stdout, &w.stderr)
	w.t.Logf("agent stderr:\n%s", w.stderr.String())
	return err
}

// serveIDP records the request, lets the emulator answer, and applies
// idpMutate to the answer.
func (w *world) serveIDP(rw http.ResponseWriter, r *http.Request) {
	h := capture("idp", r)
	rec := httptest.NewRecorder()
	w.emu.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if w.opts.idpMutate != nil {
		body = w.opts.idpMutate(r.URL.Path, body)
	}
	h.Status, h.Resp = rec.Code, string(body)
	w.rec.add(h)
	for k, v := range rec.Header() {
		rw.Header()[k] = v
	}
	rw.Header().Del("Content-Length")
	rw.WriteHeader(rec.Code)
	_, _ = rw.Write(body)
}

// serveModel answers chat completions from the script: the n-th request
// gets step n's tool call, then the final text.
func (w *world) serveModel(rw http.ResponseWriter, r *http.Request) {
	h := capture("model", r)
	w.rec.add(h)
	if r.URL.Path != "/v1/chat/completions" {
		http.NotFound(rw, r)
		return
	}
	var req struct {
		Messages []chatMessage `json:"messages"`
	}
	if err := json.Unmarshal([]byte(h.Body), &req); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	n := 0
	for _, m := range req.Messages {
		if m.Role == "assistant" {
			n++
		}
	}
	msg := map[string]any{"role": "assistant"}
	if n < len(w.opts.steps) {
		st := w.opts.steps[n]
		time.Sleep(st.delay)
		args := st.args
		if args == "" {
			args = "{}"
		}
		msg["content"] = nil
		msg["tool_calls"] = []map[string]any{{"id": fmt.Sprintf("call_%d", n), "type": "function",
			"function": map[string]any{"name": st.tool, "arguments": args}}}
	} else {
		msg["content"] = "All done: final answer."
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(map[string]any{"id": "cmpl", "object": "chat.completion",
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": "stop"}}})
}

// serveShim is the browser: alice signs in (login_hint) and consents;
// the redirect is delivered to the agent with a GET.
func (w *world) serveShim(rw http.ResponseWriter, r *http.Request) {
	h := capture("shim", r)
	w.rec.add(h)
	target := r.URL.Query().Get("url")
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		http.Error(rw, "the shim only opens http(s) URLs", http.StatusBadRequest)
		return
	}
	q := u.Query()
	q.Set("login_hint", "alice")
	u.RawQuery = q.Encode()
	nc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := nc.Get(u.String())
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if loc == "" {
		http.Error(rw, fmt.Sprintf("authorization endpoint answered %d without a redirect", resp.StatusCode), http.StatusBadGateway)
		return
	}
	if w.opts.redirectMut != nil {
		loc = w.opts.redirectMut(loc)
	}
	if resp, err := nc.Get(loc); err == nil {
		resp.Body.Close()
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(map[string]string{"redirect": loc})
}

// testRS is one MCP server with its authorization middleware.
type testRS struct {
	w      *world
	name   string
	url    string
	opts   *rsOpts
	issuer string
	mu     sync.Mutex
	seen   map[string]bool // DPoP jtis
	calls  int             // tools/call requests with a valid token
}

func newTestRS(w *world, name string, o *rsOpts, ln net.Listener) *testRS {
	rs := &testRS{w: w, name: name, url: "http://" + ln.Addr().String() + "/mcp", opts: o, seen: map[string]bool{}}
	tenant := o.tenant
	if tenant == "" {
		tenant = "agents"
	}
	rs.issuer = w.issuer(tenant)
	srv := mcp.NewServer(&mcp.Implementation{Name: name, Version: "1"}, nil)
	for tool := range o.tools {
		srv.AddTool(&mcp.Tool{Name: tool, Description: "test tool " + tool, InputSchema: map[string]any{"type": "object"}},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " result of " + req.Params.Name}}}, nil
			})
	}
	mcpH := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-protected-resource/mcp", rs.servePRM)
	mux.Handle("/mcp", rs.guard(mcpH))
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: mux}}
	hs.Start()
	w.t.Cleanup(hs.Close)
	return rs
}

func (rs *testRS) servePRM(rw http.ResponseWriter, r *http.Request) {
	rs.w.rec.add(capture(rs.name, r))
	res := rs.opts.prmResource
	if res == "" {
		res = rs.url
	}
	md := map[string]any{"resource": res, "authorization_servers": []string{rs.issuer}, "scopes_supported": rs.opts.prmScopes,
		"bearer_methods_supported": []string{"header"}}
	if rs.opts.dpopRequired {
		md["dpop_bound_access_tokens_required"] = true
		md["dpop_signing_alg_values_supported"] = []string{"ES256"}
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(md)
}

func (rs *testRS) challenge(rw http.ResponseWriter, status int, errCode, scope string) {
	params := []string{`resource_metadata="` + strings.TrimSuffix(rs.url, "/mcp") + `/.well-known/oauth-protected-resource/mcp"`}
	if errCode != "" {
		params = append(params, `error="`+errCode+`"`)
	}
	if scope != "" {
		params = append(params, `scope="`+scope+`"`)
	}
	scheme := "Bearer"
	if rs.opts.dpopRequired {
		scheme = "DPoP"
		params = append(params, `algs="ES256"`)
	}
	if rs.opts.nonce != "" && errCode == "use_dpop_nonce" {
		rw.Header().Set("DPoP-Nonce", rs.opts.nonce)
	}
	rw.Header().Set("WWW-Authenticate", scheme+" "+strings.Join(params, ", "))
	http.Error(rw, errCode, status)
}

// guard checks the token of every MCP request and the scope of tools/call.
func (rs *testRS) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := capture(rs.name, r)
		sw := &statusWriter{ResponseWriter: rw, code: http.StatusOK, done: func(code int) { h.Status = code; rs.w.rec.add(h) }}
		defer sw.fire() // an answer with no body
		if rs.opts.public {
			next.ServeHTTP(sw, r)
			return
		}
		claims, code := rs.verify(r)
		if code != "" {
			rs.challenge(sw, http.StatusUnauthorized, code, rs.opts.challengeScope)
			return
		}
		if claims == nil {
			rs.challenge(sw, http.StatusUnauthorized, "", rs.opts.challengeScope)
			return
		}
		var msg struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		_ = json.Unmarshal([]byte(h.Body), &msg)
		if msg.Method == "tools/call" {
			need := rs.opts.tools[msg.Params.Name]
			scope, _ := claims["scope"].(string)
			if need != "" && !slices.Contains(strings.Fields(scope), need) {
				rs.challenge(sw, http.StatusForbidden, "insufficient_scope", need)
				return
			}
			rs.mu.Lock()
			rs.calls++
			n := rs.calls
			rs.mu.Unlock()
			if slices.Contains(rs.opts.rejectCalls, n) || (rs.opts.rejectFrom > 0 && n >= rs.opts.rejectFrom) {
				rs.challenge(sw, http.StatusUnauthorized, "invalid_token", "")
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

// statusWriter keeps the status and calls done once, before the first
// byte of the answer leaves: a request is recorded before the agent can
// see its answer, so a check made after the agent returns sees it.
type statusWriter struct {
	http.ResponseWriter
	code int
	done func(code int)
}

func (s *statusWriter) WriteHeader(c int) {
	s.code = c
	s.fire()
	s.ResponseWriter.WriteHeader(c)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.fire()
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) fire() {
	if s.done != nil {
		s.done(s.code)
		s.done = nil
	}
}
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// verify returns the token's claims, nil without a token, or an error
// code (invalid_token, use_dpop_nonce).
func (rs *testRS) verify(r *http.Request) (map[string]any, string) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return nil, ""
	}
	scheme, tok, _ := strings.Cut(authz, " ")
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, "invalid_token"
	}
	var set jose.JSONWebKeySet
	rec := httptest.NewRecorder()
	rs.w.emu.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, rs.issuer+"/jwks", nil))
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(jws.Signatures) != 1 {
		return nil, "invalid_token"
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) == 0 {
		return nil, "invalid_token"
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, "invalid_token"
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, "invalid_token"
	}
	exp, _ := c["exp"].(float64)
	if c["iss"] != rs.issuer || !audHas(c["aud"], rs.url) || time.Now().Unix() >= int64(exp) {
		return nil, "invalid_token"
	}
	cnf, _ := c["cnf"].(map[string]any)
	jkt, _ := cnf["jkt"].(string)
	switch {
	case jkt != "":
		if !strings.EqualFold(scheme, "DPoP") {
			return nil, "invalid_token"
		}
		if code := rs.checkProof(r, tok, jkt); code != "" {
			return nil, code
		}
	case rs.opts.dpopRequired || !strings.EqualFold(scheme, "Bearer"):
		return nil, "invalid_token"
	}
	return c, ""
}

func (rs *testRS) checkProof(r *http.Request, tok, jkt string) string {
	proof, err := jose.ParseSigned(r.Header.Get("DPoP"), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(proof.Signatures) != 1 || proof.Signatures[0].Header.JSONWebKey == nil {
		return "invalid_token"
	}
	jwk := proof.Signatures[0].Header.JSONWebKey
	payload, err := proof.Verify(jwk)
	if err != nil {
		return "invalid_token"
	}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	if base64.RawURLEncoding.EncodeToString(tp) != jkt {
		return "invalid_token"
	}
	var c map[string]any
	_ = json.Unmarshal(payload, &c)
	sum := sha256.Sum256([]byte(tok))
	if c["htm"] != r.Method || c["htu"] != rs.url || c["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return "invalid_token"
	}
	if rs.opts.nonce != "" && c["nonce"] != rs.opts.nonce {
		return "use_dpop_nonce"
	}
	jti, _ := c["jti"].(string)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if jti == "" || rs.seen[jti] {
		return "invalid_token"
	}
	rs.seen[jti] = true
	return ""
}

func audHas(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []any:
		for _, x := range v {
			if x == want {
				return true
			}
		}
	}
	return false
}

// claimsOf decodes a JWT's payload without verifying it (for assertions
// about what was sent).
func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// tokenOf is the token of an Authorization header value.
func tokenOf(authz string) string {
	_, tok, _ := strings.Cut(authz, " ")
	return tok
}

// issued lists every access, refresh and ID token the emulator issued.
func (w *world) issued() []string {
	var out []string
	for _, h := range w.rec.all("idp", "/token") {
		var r map[string]any
		if json.Unmarshal([]byte(h.Resp), &r) != nil {
			continue
		}
		for _, k := range []string{"access_token", "refresh_token", "id_token"} {
			if s, _ := r[k].(string); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
