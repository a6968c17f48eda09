package emulator_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// --- helpers shared by assertion_test.go and register_test.go ---

const jwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// oauthReply is an HTTP answer with its JSON body.
type oauthReply struct {
	Status int
	Body   map[string]any
	Header http.Header
}

func (r oauthReply) str(k string) string { s, _ := r.Body[k].(string); return s }

// doJSONish sends a request and decodes the JSON answer.
func doJSONish(tb testing.TB, req *http.Request) oauthReply {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := oauthReply{Status: resp.StatusCode, Header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.Body); err != nil {
			tb.Fatalf("%s %s: HTTP %d, body is not JSON: %q", req.Method, req.URL, resp.StatusCode, b)
		}
	}
	return out
}

// tokenForm POSTs a form to a token endpoint.
func tokenForm(tb testing.TB, tokenURL string, form url.Values, basic ...string) oauthReply {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	return doJSONish(tb, req)
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(tb testing.TB, tok string) map[string]any {
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

// testKey is a client's key pair.
type testKey struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv crypto.Signer
}

func newECKey(tb testing.TB, kid string) testKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return testKey{alg: jose.ES256, kid: kid, priv: k}
}

func newRSAKey(tb testing.TB, kid string, alg jose.SignatureAlgorithm) testKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return testKey{alg: alg, kid: kid, priv: k}
}

// jwks is the public JWK Set of keys, as JSON.
func jwks(tb testing.TB, keys ...testKey) string {
	tb.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// sign signs claims with key as a JWT, with extra protected headers.
func (k testKey) sign(tb testing.TB, claims map[string]any, alg jose.SignatureAlgorithm, withKID bool) string {
	tb.Helper()
	if alg == "" {
		alg = k.alg
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if withKID {
		opts = opts.WithHeader("kid", k.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k.priv}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// assertionClaims are valid claims of an assertion by clientID for aud.
func assertionClaims(clientID, aud string, now time.Time) map[string]any {
	return map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": aud,
		"iat": now.Unix(),
		"exp": now.Add(2 * time.Minute).Unix(),
		"jti": fmt.Sprintf("jti-%d-%d", now.UnixNano(), jtiSeq.Add(1)),
	}
}

var jtiSeq atomic.Int64

// assertionForm is a client_credentials request authenticated by an
// assertion.
func assertionForm(assertion string, extra ...string) url.Values {
	f := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {jwtBearerAssertionType},
		"client_assertion":      {assertion},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

// manualClock is the real clock under the tenants' virtual clocks.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: time.Now().Truncate(time.Second)} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// loopbackOnlyClient fetches only from loopback addresses, so that fuzzed
// URLs never leave the machine.
func loopbackOnlyClient() *http.Client {
	d := &net.Dialer{Timeout: time.Second}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
				return nil, fmt.Errorf("test: refusing to dial %s: loopback only", addr)
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// --- private_key_jwt with configured clients ---

type assertionEnv struct {
	env   *emulatortest.Env
	clock *manualClock
	es    testKey // es-agent, ES256
	rs    testKey // rs-agent, RS256
	ps    testKey // ps-agent, PS256
	other testKey // nobody's key, with es-agent's kid
}

func newAssertionEnv(t *testing.T) *assertionEnv {
	t.Helper()
	a := &assertionEnv{clock: newManualClock(), es: newECKey(t, "es1"), rs: newRSAKey(t, "rs1", jose.RS256), other: newECKey(t, "es1")}
	a.ps = testKey{alg: jose.PS256, kid: "ps1", priv: a.rs.priv}
	cfg := emulator.DefaultConfig()
	for _, c := range []struct {
		id  string
		key testKey
	}{{"es-agent", a.es}, {"rs-agent", a.rs}, {"ps-agent", a.ps}} {
		cfg.Tenants[0].Clients = append(cfg.Tenants[0].Clients, emulator.ClientConfig{
			ID:              c.id,
			AuthMethod:      "private_key_jwt",
			JWKS:            jwks(t, c.key),
			AssertionAlg:    string(c.key.alg),
			GrantTypes:      []string{emulator.GrantClientCredentials},
			RequiredScopes:  []string{"zendesk:tickets:read"},
			Audiences:       []string{"https://mcp.acme.test/zendesk"},
			DefaultAudience: []string{"https://mcp.acme.test/zendesk"},
		})
	}
	a.env = emulatortest.New(t, &cfg, emulator.WithRealClock(a.clock.Now))
	return a
}

func TestPrivateKeyJWT(t *testing.T) {
	a := newAssertionEnv(t)
	iss, tokenURL := a.env.Issuer("acme"), a.env.TokenURL("acme")
	now := a.clock.Now()
	hsSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		client    string
		key       testKey
		alg       jose.SignatureAlgorithm // "" = the key's
		noKID     bool
		claims    func(map[string]any)
		raw       string   // sent instead of a signed assertion
		form      []string // extra form parameters
		basic     []string
		wantError string // "" = a token
	}{
		{name: "ES256 aud issuer", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["aud"] = iss }},
		{name: "ES256 aud token endpoint", client: "es-agent", key: a.es},
		{name: "aud array holding the issuer", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["aud"] = []string{"https://elsewhere.test", iss} }},
		{name: "RS256", client: "rs-agent", key: a.rs},
		{name: "PS256", client: "ps-agent", key: a.ps, claims: func(c map[string]any) { c["aud"] = iss }},
		{name: "no kid header", client: "es-agent", key: a.es, noKID: true},
		{name: "client_id form parameter", client: "es-agent", key: a.es, form: []string{"client_id", "es-agent"}},
		{name: "exp within leeway", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }},

		{name: "wrong aud", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["aud"] = "https://elsewhere.test/token" }, wantError: "invalid_client"},
		{name: "aud of another tenant", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["aud"] = a.env.Issuer("globex") }, wantError: "invalid_client"},
		{name: "aud is the issuer with a trailing slash", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["aud"] = iss + "/" }, wantError: "invalid_client"},
		{name: "no aud", client: "es-agent", key: a.es, claims: func(c map[string]any) { delete(c, "aud") }, wantError: "invalid_client"},
		{name: "expired", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["exp"] = now.Add(-5 * time.Minute).Unix() }, wantError: "invalid_client"},
		{name: "no exp", client: "es-agent", key: a.es, claims: func(c map[string]any) { delete(c, "exp") }, wantError: "invalid_client"},
		{name: "exp too far ahead", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["exp"] = now.Add(2 * time.Hour).Unix() }, wantError: "invalid_client"},
		{name: "nbf in the future", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }, wantError: "invalid_client"},
		{name: "iat in the future", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() }, wantError: "invalid_client"},
		{name: "exp not a number", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["exp"] = "tomorrow" }, wantError: "invalid_client"},
		{name: "no jti", client: "es-agent", key: a.es, claims: func(c map[string]any) { delete(c, "jti") }, wantError: "invalid_client"},
		{name: "empty jti", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["jti"] = "" }, wantError: "invalid_client"},
		{name: "iss is not the client", client: "es-agent", key: a.es, claims: func(c map[string]any) { c["iss"] = "rs-agent" }, wantError: "invalid_client"},
		{name: "sub is not the client_id parameter", client: "es-agent", key: a.es, form: []string{"client_id", "rs-agent"}, wantError: "invalid_client"},
		{name: "no sub", client: "es-agent", key: a.es, claims: func(c map[string]any) { delete(c, "sub") }, wantError: "invalid_client"},
		{name: "unknown client", client: "nobody", key: a.es, wantError: "invalid_client"},
		{name: "client authenticating with a secret", client: "support-bot", key: a.es, wantError: "invalid_client"},
		{name: "wrong alg for the client (RS256 for an ES256 client)", client: "es-agent", key: a.rs, alg: jose.RS256, wantError: "invalid_client"},
		{name: "PS256 for an RS256 client", client: "rs-agent", key: a.rs, alg: jose.PS256, wantError: "invalid_client"},
		{name: "signed by another key with the same kid", client: "es-agent", key: a.other, wantError: "invalid_client"},
		{name: "signed by another key without kid", client: "es-agent", key: a.other, noKID: true, wantError: "invalid_client"},
		{name: "unknown kid", client: "es-agent", key: testKey{alg: jose.ES256, kid: "nope", priv: a.es.priv}, wantError: "invalid_client"},
		{name: "HS256", client: "es-agent", raw: mustSerialize(t, hsSigner, assertionClaims("es-agent", tokenURL, now)), wantError: "invalid_client"},
		{name: "alg none", client: "es-agent", raw: unsignedJWT(assertionClaims("es-agent", tokenURL, now)), wantError: "invalid_client"},
		{name: "garbage", client: "es-agent", raw: "not.a.jwt", wantError: "invalid_client"},
		{name: "wrong assertion type", client: "es-agent", key: a.es, form: []string{"client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, wantError: "invalid_request"},
		{name: "assertion and client_secret", client: "es-agent", key: a.es, form: []string{"client_secret", "x"}, wantError: "invalid_request"},
		{name: "assertion and Basic", client: "es-agent", key: a.es, basic: []string{"es-agent", "x"}, wantError: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertion := tc.raw
			if assertion == "" {
				c := assertionClaims(tc.client, tokenURL, now)
				if tc.claims != nil {
					tc.claims(c)
				}
				assertion = tc.key.sign(t, c, tc.alg, !tc.noKID)
			}
			got := tokenForm(t, tokenURL, assertionForm(assertion, tc.form...), tc.basic...)
			if tc.wantError == "" {
				if got.Status != http.StatusOK {
					t.Fatalf("HTTP %d %v, want a token", got.Status, got.Body)
				}
				c := jwtClaims(t, got.str("access_token"))
				want := map[string]any{"client_id": tc.client, "sub": tc.client, "scope": "zendesk:tickets:read", "aud": "https://mcp.acme.test/zendesk"}
				if diff := cmp.Diff(want, map[string]any{"client_id": c["client_id"], "sub": c["sub"], "scope": c["scope"], "aud": c["aud"]}); diff != "" {
					t.Errorf("access token claims (-want +got):\n%s", diff)
				}
				return
			}
			if got.Status >= 500 || got.str("error") != tc.wantError {
				t.Fatalf("HTTP %d %v, want error %s", got.Status, got.Body, tc.wantError)
			}
			if got.str("error_description") == "" {
				t.Errorf("no error_description")
			}
			t.Logf("%s: %s", got.str("error"), got.str("error_description"))
		})
	}
}

func mustSerialize(tb testing.TB, s jose.Signer, claims map[string]any) string {
	tb.Helper()
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func unsignedJWT(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// TestPrivateKeyJWTReplay: a jti is refused the second time, across
// requests and endpoints, for as long as the assertion could be valid by
// the tenant's clock; the same jti from another client is not a replay.
func TestPrivateKeyJWTReplay(t *testing.T) {
	a := newAssertionEnv(t)
	tokenURL := a.env.TokenURL("acme")
	now := a.clock.Now()
	c := assertionClaims("es-agent", tokenURL, now)
	c["jti"] = "same-jti"
	first := a.es.sign(t, c, "", true)

	if got := tokenForm(t, tokenURL, assertionForm(first)); got.Status != http.StatusOK {
		t.Fatalf("first use: HTTP %d %v", got.Status, got.Body)
	}
	if got := tokenForm(t, tokenURL, assertionForm(first)); got.str("error") != "invalid_client" {
		t.Fatalf("replay: HTTP %d %v, want invalid_client", got.Status, got.Body)
	}
	// A fresh assertion with the same jti is a replay too.
	c["iat"] = now.Add(time.Second).Unix()
	if got := tokenForm(t, tokenURL, assertionForm(a.es.sign(t, c, "", true))); got.str("error") != "invalid_client" {
		t.Fatalf("same jti, new assertion: HTTP %d %v, want invalid_client", got.Status, got.Body)
	}
	// Another client may use the same jti string.
	rc := assertionClaims("rs-agent", tokenURL, now)
	rc["jti"] = "same-jti"
	if got := tokenForm(t, tokenURL, assertionForm(a.rs.sign(t, rc, "", true))); got.Status != http.StatusOK {
		t.Fatalf("same jti, other client: HTTP %d %v", got.Status, got.Body)
	}
	// 90 s later (tenant time) the assertion, exp now+2m, is still valid
	// and still a replay, although the store prunes by the same clock.
	a.clock.Advance(90 * time.Second)
	if got := tokenForm(t, tokenURL, assertionForm(first)); got.str("error") != "invalid_client" {
		t.Fatalf("replay later: HTTP %d %v, want invalid_client", got.Status, got.Body)
	}
	// Once the tenant clock is past exp+leeway the assertion is expired
	// (and the jti may be forgotten).
	a.clock.Advance(2 * time.Minute)
	got := tokenForm(t, tokenURL, assertionForm(first))
	if got.str("error") != "invalid_client" || !strings.Contains(got.str("error_description"), "expired") {
		t.Fatalf("after exp: HTTP %d %v, want invalid_client (expired)", got.Status, got.Body)
	}
}

// --- client ID metadata documents ---

// docServer serves client metadata documents and JWK Sets on 127.0.0.1.
type docServer struct {
	*httptest.Server
	mu      sync.Mutex
	docs    map[string]docResp
	fetches map[string]int
}

type docResp struct {
	status int
	ctype  string
	header map[string]string
	body   string
}

func newDocServer(t *testing.T) *docServer {
	d := &docServer{docs: map[string]docResp{}, fetches: map[string]int{}}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		resp, ok := d.docs[r.URL.Path]
		d.fetches[r.URL.Path]++
		d.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range resp.header {
			w.Header().Set(k, v)
		}
		if resp.ctype == "" {
			resp.ctype = "application/json"
		}
		w.Header().Set("Content-Type", resp.ctype)
		if resp.status == 0 {
			resp.status = http.StatusOK
		}
		w.WriteHeader(resp.status)
		_, _ = io.WriteString(w, resp.body)
	}))
	t.Cleanup(d.Close)
	return d
}

// serve publishes a document at path and returns its URL.
func (d *docServer) serve(path string, r docResp) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs[path] = r
	return d.URL + path
}

func (d *docServer) serveJSON(path string, doc map[string]any) string {
	b, _ := json.Marshal(doc)
	return d.serve(path, docResp{body: string(b)})
}

func (d *docServer) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fetches[path]
}

func TestClientIDMetadataDocumentPrivateKeyJWT(t *testing.T) {
	a := newAssertionEnv(t)
	docs := newDocServer(t)
	tokenURL := a.env.TokenURL("acme")
	key := newECKey(t, "doc-key")
	var set map[string]any
	_ = json.Unmarshal([]byte(jwks(t, key)), &set)

	inline := docs.URL + "/agents/inline.json"
	docs.serveJSON("/agents/inline.json", map[string]any{
		"client_id":                  inline,
		"client_name":                "Document agent",
		"token_endpoint_auth_method": "private_key_jwt",
		"grant_types":                []string{"client_credentials"},
		"jwks":                       set,
		"scope":                      "mcp:tools",
	})
	docs.serve("/agents/keys.json", docResp{body: jwks(t, key)})
	remote := docs.URL + "/agents/remote.json"
	docs.serveJSON("/agents/remote.json", map[string]any{
		"client_id":                       remote,
		"token_endpoint_auth_method":      "private_key_jwt",
		"token_endpoint_auth_signing_alg": "ES256",
		"grant_types":                     []string{"client_credentials"},
		"jwks_uri":                        docs.URL + "/agents/keys.json",
	})

	for _, id := range []string{inline, remote} {
		t.Run(id, func(t *testing.T) {
			form := assertionForm(key.sign(t, assertionClaims(id, tokenURL, a.clock.Now()), "", true), "resource", "https://mcp.acme.test/slack")
			got := tokenForm(t, tokenURL, form)
			if got.Status != http.StatusOK {
				t.Fatalf("HTTP %d %v", got.Status, got.Body)
			}
			c := jwtClaims(t, got.str("access_token"))
			if c["client_id"] != id || c["aud"] != "https://mcp.acme.test/slack" {
				t.Errorf("claims %v: want client_id %s and aud https://mcp.acme.test/slack", c, id)
			}
			// Signed by another key: refused.
			got = tokenForm(t, tokenURL, assertionForm(newECKey(t, "doc-key").sign(t, assertionClaims(id, tokenURL, a.clock.Now()), "", true)))
			if got.str("error") != "invalid_client" {
				t.Errorf("another key: HTTP %d %v, want invalid_client", got.Status, got.Body)
			}
		})
	}

	// Cached by the tenant's clock: default five minutes.
	if n := docs.count("/agents/inline.json"); n != 1 {
		t.Errorf("inline document fetched %d times, want 1 (cached)", n)
	}
	a.clock.Advance(6 * time.Minute)
	tokenForm(t, tokenURL, assertionForm(key.sign(t, assertionClaims(inline, tokenURL, a.clock.Now()), "", true), "resource", "https://mcp.acme.test/slack"))
	if n := docs.count("/agents/inline.json"); n != 2 {
		t.Errorf("inline document fetched %d times after 6 min, want 2", n)
	}
}

func TestClientIDMetadataDocumentRefused(t *testing.T) {
	a := newAssertionEnv(t)
	docs := newDocServer(t)
	tokenURL := a.env.TokenURL("acme")
	key := newECKey(t, "k")
	var set map[string]any
	_ = json.Unmarshal([]byte(jwks(t, key)), &set)
	good := func(id string) map[string]any {
		return map[string]any{
			"client_id":                  id,
			"token_endpoint_auth_method": "private_key_jwt",
			"grant_types":                []string{"client_credentials"},
			"jwks":                       set,
		}
	}
	big := good(docs.URL + "/big.json")
	big["client_name"] = strings.Repeat("x", 70<<10)

	tests := []struct {
		name string
		path string
		doc  func(id string) map[string]any // nil: resp
		resp docResp
		id   string // client_id presented instead of the URL of path
		want string // in error_description
	}{
		{name: "client_id mismatch", path: "/mismatch.json", doc: func(string) map[string]any { return good(docs.URL + "/other.json") }, want: "client_id"},
		{name: "no client_id", path: "/noid.json", doc: func(id string) map[string]any { d := good(id); delete(d, "client_id"); return d }, want: "client_id"},
		{name: "client_secret", path: "/secret.json", doc: func(id string) map[string]any { d := good(id); d["client_secret"] = "s"; return d }, want: "client_secret"},
		{name: "secret auth method", path: "/basic.json", doc: func(id string) map[string]any {
			d := good(id)
			d["token_endpoint_auth_method"] = "client_secret_basic"
			delete(d, "jwks")
			return d
		}, want: "token_endpoint_auth_method"},
		{name: "private_key_jwt without keys", path: "/nokeys.json", doc: func(id string) map[string]any { d := good(id); delete(d, "jwks"); return d }, want: "jwks"},
		{name: "scope outside the catalogue", path: "/scope.json", doc: func(id string) map[string]any { d := good(id); d["scope"] = "admin:all"; return d }, want: "scope"},
		{name: "not found", path: "/missing.json", resp: docResp{status: http.StatusNotFound, body: "{}"}, want: "404"},
		{name: "redirect", path: "/redirect.json", resp: docResp{status: http.StatusFound, header: map[string]string{"Location": "/elsewhere.json"}}, want: "redirect"},
		{name: "not JSON content type", path: "/html.json", resp: docResp{ctype: "text/html", body: "{}"}, want: "Content-Type"},
		{name: "not a JSON object", path: "/array.json", resp: docResp{body: "[1,2]"}, want: "JSON object"},
		{name: "too large", path: "/big.json", doc: func(string) map[string]any { return big }, want: "larger"},
		{name: "http on a non-loopback host", id: "http://example.invalid/client.json", want: "loopback"},
		{name: "no path", id: "", path: "", want: "path"},
		{name: "dot segment", id: "PLACEHOLDER/a/../client.json", want: "'..' segment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.id
			switch {
			case tc.path == "" && tc.id == "":
				id = docs.URL
			case strings.HasPrefix(tc.id, "PLACEHOLDER"):
				id = docs.URL + strings.TrimPrefix(tc.id, "PLACEHOLDER")
			case tc.id == "":
				id = docs.URL + tc.path
				if tc.doc != nil {
					docs.serveJSON(tc.path, tc.doc(id))
				} else {
					docs.serve(tc.path, tc.resp)
				}
			}
			got := tokenForm(t, tokenURL, assertionForm(key.sign(t, assertionClaims(id, tokenURL, a.clock.Now()), "", true)))
			if got.str("error") != "invalid_client" || !strings.Contains(got.str("error_description"), tc.want) {
				t.Fatalf("HTTP %d %v, want invalid_client naming %q", got.Status, got.Body, tc.want)
			}
			// A public client presenting the same client_id gets the same
			// answer.
			got = tokenForm(t, tokenURL, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {id}, "code_verifier": {strings.Repeat("v", 43)}})
			if got.str("error") != "invalid_client" || !strings.Contains(got.str("error_description"), tc.want) {
				t.Fatalf("as public client: HTTP %d %v, want invalid_client naming %q", got.Status, got.Body, tc.want)
			}
		})
	}

	// A tenant without client ID metadata documents does not fetch.
	id := docs.serveJSON("/globex.json", good(docs.URL+"/globex.json"))
	got := tokenForm(t, a.env.TokenURL("globex"), assertionForm(key.sign(t, assertionClaims(id, a.env.TokenURL("globex"), a.clock.Now()), "", true)))
	if got.str("error") != "invalid_client" || docs.count("/globex.json") != 0 {
		t.Fatalf("globex: HTTP %d %v, %d fetches; want invalid_client and no fetch", got.Status, got.Body, docs.count("/globex.json"))
	}
}

// TestClientIDMetadataDocumentPublicClient: a public client named by a
// document is resolved at the token endpoint (the code is unknown:
// invalid_grant, not invalid_client), and a no-store document is fetched
// again. TestClientIDMetadataDocumentCodeFlow runs the whole flow.
func TestClientIDMetadataDocumentPublicClient(t *testing.T) {
	a := newAssertionEnv(t)
	docs := newDocServer(t)
	id := docs.URL + "/public.json"
	docs.serve("/public.json", docResp{header: map[string]string{"Cache-Control": "no-store"}, body: fmt.Sprintf(`{"client_id":%q,"client_name":"MCP client","redirect_uris":["http://127.0.0.1:9999/callback"],"token_endpoint_auth_method":"none"}`, id)})
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"unknown"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1:9999/callback"}, "code_verifier": {strings.Repeat("v", 43)}}
	got := tokenForm(t, a.env.TokenURL("acme"), form)
	if got.str("error") != "invalid_grant" {
		t.Fatalf("HTTP %d %v, want invalid_grant (client known, code not)", got.Status, got.Body)
	}
	before := docs.count("/public.json")
	tokenForm(t, a.env.TokenURL("acme"), form)
	if docs.count("/public.json") == before {
		t.Errorf("a no-store document was served from the cache")
	}
}

// FuzzClientAssertion sends arbitrary client_assertion strings: the token
// endpoint never panics and never answers 5xx.
func FuzzClientAssertion(f *testing.F) {
	a := &assertionEnv{clock: newManualClock(), es: newECKey(f, "es1")}
	cfg := emulator.DefaultConfig()
	cfg.Tenants[0].Clients = append(cfg.Tenants[0].Clients, emulator.ClientConfig{
		ID: "es-agent", AuthMethod: "private_key_jwt", JWKS: jwks(f, a.es), AssertionAlg: "ES256",
		GrantTypes: []string{emulator.GrantClientCredentials}, Audiences: []string{"https://mcp.acme.test/zendesk"}, DefaultAudience: []string{"https://mcp.acme.test/zendesk"},
	})
	// Client ID metadata documents stay on; a fuzzed sub that is a URL
	// must not reach beyond the loopback interface.
	env := emulatortest.New(f, &cfg, emulator.WithRealClock(a.clock.Now), emulator.WithHTTPClient(loopbackOnlyClient()))
	tokenURL := env.TokenURL("acme")
	valid := a.es.sign(f, assertionClaims("es-agent", tokenURL, a.clock.Now()), "", true)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(unsignedJWT(assertionClaims("es-agent", tokenURL, a.clock.Now())))
	f.Add("e30.e30.e30")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOjEsImF1ZCI6W3siYSI6MX1dLCJleHAiOjFlMzAwfQ.AAAA")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJodHRwOi8vMTI3LjAuMC4xOjEvYSJ9.AAAA")
	f.Add("")
	f.Add("...")
	f.Fuzz(func(t *testing.T, assertion string) {
		got := tokenForm(t, tokenURL, assertionForm(assertion))
		if got.Status >= 500 {
			t.Fatalf("HTTP %d %v for %q", got.Status, got.Body, assertion)
		}
	})
}

// TestClientIDMetadataDocumentCodeFlow: an MCP-style public client named
// by its metadata document URL runs the authorization code flow with PKCE.
func TestClientIDMetadataDocumentCodeFlow(t *testing.T) {
	env := emulatortest.New(t, nil)
	docs := newDocServer(t)
	const redirect = "http://127.0.0.1:33418/callback"
	id := docs.URL + "/mcp-client.json"
	docs.serveJSON("/mcp-client.json", map[string]any{
		"client_id":     id,
		"client_name":   "MCP client",
		"redirect_uris": []string{redirect},
		"grant_types":   []string{"authorization_code", "refresh_token"},
		"scope":         "openid mcp:tools",
	})
	tok := codeFlow(t, env, id, redirect, "openid mcp:tools", "https://mcp.acme.test/postgres")
	c := jwtClaims(t, tok.AccessToken)
	want := map[string]any{"client_id": id, "sub": "user-alice", "scope": "openid mcp:tools", "aud": "https://mcp.acme.test/postgres"}
	if diff := cmp.Diff(want, map[string]any{"client_id": c["client_id"], "sub": c["sub"], "scope": c["scope"], "aud": c["aud"]}); diff != "" {
		t.Errorf("access token (-want +got):\n%s", diff)
	}
	if n := docs.count("/mcp-client.json"); n != 1 {
		t.Errorf("document fetched %d times over the flow, want 1 (cached)", n)
	}
}
