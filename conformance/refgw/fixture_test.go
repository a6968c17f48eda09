package refgw_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// Scopes and tools the test gateway is configured with.
const (
	scopeRead   = "tickets:read"
	scopeWrite  = "tickets:write"
	toolGet     = "get_ticket"
	toolUpdate  = "update_ticket"
	toolOpen    = "server_time"
	agentID     = "support-bot"
	userAlice   = "user-alice"
	userBob     = "user-bob"
	gatewayID   = "mcp-gateway"
	gatewaySecr = "mcp-gateway-secret"
)

// clock is the fake clock the gateway, the IdP and the tests share.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// signingKey is a key of the fake IdP (or of an attacker).
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k signingKey) publicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

func newECKey(t testing.TB, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: jose.ES256, priv: k}
}

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

func newRSAKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) signingKey {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return signingKey{kid: kid, alg: alg, priv: rsaPriv}
}

// upstreamRequest is what the fake upstream received.
type upstreamRequest struct {
	Method        string
	Path          string
	Authorization string
}

// fixture is the harness's world in miniature: a fake IdP (two tenants'
// JWKS, introspection, token exchange), a canary for header-key fetches,
// a fake upstream, and a shared clock.
type fixture struct {
	t     testing.TB
	clock *clock

	idp      *httptest.Server
	issuer   string // tenant a
	issuerB  string // tenant b
	jwksURL  string
	ec       signingKey
	rsa      signingKey
	ps       signingKey
	tenantB  signingKey
	attacker signingKey

	upstream *httptest.Server

	mu              sync.Mutex
	published       []jose.JSONWebKey // tenant a's JWKS
	jwksFetches     int
	canaryHits      int
	upstreamGot     []upstreamRequest
	introspectHook  func(token string) (int, any)
	introspectCalls int
	exchangeHook    func(form url.Values) (int, any)
	exchangeForms   []url.Values
	exchangeCount   int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		t:        t,
		clock:    &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		ec:       newECKey(t, "ec-1"),
		rsa:      newRSAKey(t, "rsa-1", jose.RS256),
		tenantB:  newECKey(t, "b-1"),
		attacker: newECKey(t, "attacker"),
	}
	f.ps = signingKey{kid: "ps-1", alg: jose.PS256, priv: f.rsa.priv}
	f.published = []jose.JSONWebKey{f.ec.publicJWK(), f.rsa.publicJWK(), f.ps.publicJWK()}
	f.idp = httptest.NewServer(http.HandlerFunc(f.serveIdP))
	t.Cleanup(f.idp.Close)
	f.issuer = f.idp.URL + "/t/a"
	f.issuerB = f.idp.URL + "/t/b"
	f.jwksURL = f.issuer + "/jwks"
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.upstreamGot = append(f.upstreamGot, upstreamRequest{Method: r.Method, Path: r.URL.Path, Authorization: r.Header.Get("Authorization")})
		f.mu.Unlock()
		if r.URL.Path == "/api/redirect" {
			http.Redirect(w, r, f.idp.URL+"/canary/jwks", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"upstream":"ok","path":%q}`, r.URL.Path)
	}))
	t.Cleanup(f.upstream.Close)
	return f
}

func (f *fixture) serveIdP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeJSON := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch r.URL.Path {
	case "/t/a/jwks":
		f.jwksFetches++
		writeJSON(http.StatusOK, jose.JSONWebKeySet{Keys: f.published})
	case "/t/b/jwks":
		writeJSON(http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{f.tenantB.publicJWK()}})
	case "/canary/jwks":
		f.canaryHits++
		writeJSON(http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{f.attacker.publicJWK()}})
	case "/canary/cert.pem":
		f.canaryHits++
		_, _ = w.Write(f.attackerCertPEM())
	case "/introspect":
		f.introspectCalls++
		id, secret, ok := r.BasicAuth()
		if !ok || id != gatewayID || secret != gatewaySecr {
			writeJSON(http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		_ = r.ParseForm()
		hook := f.introspectHook
		if hook == nil {
			writeJSON(http.StatusOK, map[string]any{"active": true})
			return
		}
		f.mu.Unlock()
		status, body := hook(r.PostForm.Get("token"))
		f.mu.Lock()
		writeJSON(status, body)
	case "/t/a/token":
		id, secret, ok := r.BasicAuth()
		if !ok || id != gatewayID || secret != gatewaySecr {
			writeJSON(http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		_ = r.ParseForm()
		f.exchangeForms = append(f.exchangeForms, r.PostForm)
		if f.exchangeHook != nil {
			status, body := f.exchangeHook(r.PostForm)
			writeJSON(status, body)
			return
		}
		f.exchangeCount++
		writeJSON(http.StatusOK, map[string]any{
			"access_token":      fmt.Sprintf("upstream-token-%d", f.exchangeCount),
			"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
			"token_type":        "Bearer",
			"expires_in":        300,
		})
	default:
		writeJSON(http.StatusNotFound, map[string]string{"error": "not_found"})
	}
}

func (f *fixture) upstreamRequests() []upstreamRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]upstreamRequest(nil), f.upstreamGot...)
}

func (f *fixture) resetUpstream() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upstreamGot = nil
}

func (f *fixture) counters() (jwks, canary, introspect int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jwksFetches, f.canaryHits, f.introspectCalls
}

func (f *fixture) setIntrospect(h func(token string) (int, any)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.introspectHook = h
}

func (f *fixture) publish(keys ...jose.JSONWebKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = keys
}

func (f *fixture) attackerCertPEM() []byte {
	der := f.attackerCertDER()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func (f *fixture) attackerCertDER() []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, f.attacker.priv.Public(), f.attacker.priv)
	if err != nil {
		f.t.Fatal(err)
	}
	return der
}

// gateway is a running reference gateway.
type gateway struct {
	*refgw.Gateway
	srv       *httptest.Server
	url       string
	auditPath string
}

// metadataURL is the resource_metadata every challenge must carry.
func (gw *gateway) metadataURL() string { return gw.url + "/.well-known/oauth-protected-resource" }

// newGateway starts a reference gateway in front of the fixture's
// upstream, with the given flaws on and the config changed by mods.
func (f *fixture) newGateway(flaws []string, mods ...func(*refgw.Config)) *gateway {
	f.t.Helper()
	gw := &gateway{}
	var h http.Handler
	gw.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	f.t.Cleanup(gw.srv.Close)
	gw.url = gw.srv.URL
	gw.auditPath = filepath.Join(f.t.TempDir(), "audit.jsonl")
	fl, err := refgw.ParseFlaws(flaws...)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := refgw.Config{
		Issuer:       f.issuer,
		JWKSURL:      f.jwksURL,
		Audience:     gw.url,
		ToolScopes:   map[string]string{toolGet: scopeRead, toolUpdate: scopeWrite, toolOpen: ""},
		DefaultScope: scopeRead,
		Upstream:     f.upstream.URL,
		AuditPath:    gw.auditPath,
		Now:          f.clock.Now,
		Flaws:        fl,
	}
	for _, m := range mods {
		m(&cfg)
	}
	g, err := refgw.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = g.Close() })
	gw.Gateway = g
	h = g
	return gw
}

func withDPoP(c *refgw.Config) { c.DPoP = true }

func withExchange(f *fixture) func(*refgw.Config) {
	return func(c *refgw.Config) {
		c.Exchange = &refgw.ExchangeConfig{TokenURL: f.issuer + "/token", ClientID: gatewayID, ClientSecret: gatewaySecr, Audience: "https://api.example.test/upstream"}
	}
}

func withIntrospection(f *fixture) func(*refgw.Config) {
	return func(c *refgw.Config) {
		c.Introspection = &refgw.IntrospectionConfig{URL: f.idp.URL + "/introspect", ClientID: gatewayID, ClientSecret: gatewaySecr, Timeout: 300 * time.Millisecond}
	}
}

// claims returns a valid access token's claims for gw, for alice via
// support-bot with tickets:read.
func (f *fixture) claims(gw *gateway) map[string]any {
	now := f.clock.Now()
	return map[string]any{
		"iss":       f.issuer,
		"sub":       userAlice,
		"aud":       gw.url,
		"client_id": agentID,
		"scope":     "openid " + scopeRead,
		"iat":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
		"jti":       randomID(),
	}
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// mintOptions shape a token's header.
type mintOptions struct {
	key     signingKey
	noKID   bool
	typ     string // "" means at+jwt; "-" means none
	headers map[string]any
	embed   bool // embed the public jwk (go-jose EmbedJWK)
}

type mintOpt func(*mintOptions)

func withKey(k signingKey) mintOpt       { return func(o *mintOptions) { o.key = k } }
func withoutKID() mintOpt                { return func(o *mintOptions) { o.noKID = true } }
func withTyp(typ string) mintOpt         { return func(o *mintOptions) { o.typ = typ } }
func withHeader(k string, v any) mintOpt { return func(o *mintOptions) { o.headers[k] = v } }
func withEmbeddedJWK() mintOpt           { return func(o *mintOptions) { o.embed = true } }

// mint signs claims with go-jose (tenant a's EC key unless told).
func (f *fixture) mint(claims map[string]any, opts ...mintOpt) string {
	f.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.mintRaw(payload, opts...)
}

// mintRaw signs any payload.
func (f *fixture) mintRaw(payload []byte, opts ...mintOpt) string {
	f.t.Helper()
	o := mintOptions{key: f.ec, headers: map[string]any{}}
	for _, opt := range opts {
		opt(&o)
	}
	so := &jose.SignerOptions{EmbedJWK: o.embed}
	switch o.typ {
	case "":
		so.WithType("at+jwt")
	case "-":
	default:
		so.WithType(jose.ContentType(o.typ))
	}
	if !o.noKID && !o.embed {
		so.WithHeader("kid", o.key.kid)
	}
	for k, v := range o.headers {
		so.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: o.key.alg, Key: o.key.priv}, so)
	if err != nil {
		f.t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			panic(err)
		}
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// rawJWT assembles a compact JWT by hand, for tokens go-jose refuses to
// make (alg none, HS256 with a public key, broken signatures).
func rawJWT(header, claims map[string]any, sig []byte) string {
	return b64(header) + "." + b64(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func hs256(header, claims map[string]any, secret []byte) string {
	input := b64(header) + "." + b64(claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// flipSignatureBit flips one bit in the middle of the signature.
func flipSignatureBit(tok string) string {
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)/2] ^= 0x01
	return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func publicPEM(t testing.TB, k signingKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// call sends a request to gw and returns the response with its body.
type response struct {
	status int
	header http.Header
	body   string
}

func (gw *gateway) do(t testing.TB, client *http.Client, req *http.Request) response {
	t.Helper()
	if client == nil {
		client = gw.srv.Client()
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get builds GET {gw}{path} with Authorization: Bearer tok.
func (gw *gateway) get(t testing.TB, path, tok string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// clientFrom returns an HTTP client whose connections come from ip (any
// address of 127.0.0.0/8 is local on Linux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// challenge is a parsed WWW-Authenticate challenge.
type challenge struct {
	Scheme string
	Params map[string]string
}

// parseChallenges parses the WWW-Authenticate values (one challenge per
// field value, as the gateway writes them).
func parseChallenges(t testing.TB, values []string) []challenge {
	t.Helper()
	var out []challenge
	for _, v := range values {
		scheme, rest, _ := strings.Cut(v, " ")
		c := challenge{Scheme: scheme, Params: map[string]string{}}
		for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimLeft(rest, ", ") {
			name, after, ok := strings.Cut(rest, "=")
			if !ok || !strings.HasPrefix(after, `"`) {
				t.Fatalf("malformed challenge %q", v)
			}
			var val strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				val.WriteByte(after[i])
			}
			if i >= len(after) {
				t.Fatalf("unterminated quoted string in %q", v)
			}
			c.Params[name] = val.String()
			rest = after[i+1:]
		}
		out = append(out, c)
	}
	return out
}

// readAudit decodes the audit log.
func readAudit(t testing.TB, path string) ([]refgw.AuditRecord, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var recs []refgw.AuditRecord
	for _, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r refgw.AuditRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs, raw
}

func contains(b []byte, s string) bool { return s != "" && bytes.Contains(b, []byte(s)) }
