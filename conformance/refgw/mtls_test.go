package refgw_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/tlsca"
)

// mtlsWorld is a CA with a server certificate and two client
// certificates: the one tokens are bound to, and another.
type mtlsWorld struct {
	ca           *tlsca.CA
	server       tls.Certificate
	bound, other tls.Certificate
}

func newMTLSWorld(t *testing.T) *mtlsWorld {
	t.Helper()
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &mtlsWorld{ca: ca}
	if w.server, err = ca.ServerCert(nil); err != nil {
		t.Fatal(err)
	}
	if w.bound, err = ca.ClientCert("agent-bound", nil, nil); err != nil {
		t.Fatal(err)
	}
	if w.other, err = ca.ClientCert("agent-other", nil, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// newMTLSGateway serves a reference gateway over TLS with TLSConfig.
func (f *fixture) newMTLSGateway(w *mtlsWorld, flaws []string, mods ...func(*refgw.Config)) *gateway {
	f.t.Helper()
	gw := &gateway{}
	var h http.Handler
	gw.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { h.ServeHTTP(rw, r) }))
	gw.srv.TLS = refgw.TLSConfig(w.server, w.ca.Pool())
	gw.srv.StartTLS()
	f.t.Cleanup(gw.srv.Close)
	gw.url = gw.srv.URL
	gw.auditPath = filepath.Join(f.t.TempDir(), "audit.jsonl")
	fl, err := refgw.ParseFlaws(flaws...)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := refgw.Config{
		Issuer: f.issuer, JWKSURL: f.jwksURL, Audience: gw.url, DefaultScope: scopeRead,
		ToolScopes: map[string]string{toolGet: scopeRead}, Upstream: f.upstream.URL,
		AuditPath: gw.auditPath, Now: f.clock.Now, Flaws: fl, MTLS: true,
	}
	for _, m := range mods {
		m(&cfg)
	}
	g, err := refgw.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = g.Close() })
	gw.Gateway, h = g, g
	return gw
}

// tlsClient trusts w's CA, presents cert (none when nil) and connects
// from the loopback address from.
func (w *mtlsWorld) tlsClient(cert *tls.Certificate, from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	tc := &tls.Config{RootCAs: w.ca.Pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tc, DisableKeepAlives: true}}
}

func thumbprint(c tls.Certificate) string {
	sum := sha256.Sum256(c.Leaf.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// certHeaders are the ways a TLS-terminating proxy forwards a client
// certificate, each carrying c.
func certHeaders(c tls.Certificate) map[string]string {
	der := c.Leaf.Raw
	escaped := url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	sum := sha256.Sum256(der)
	return map[string]string{
		"Client-Cert":             ":" + base64.StdEncoding.EncodeToString(der) + ":",
		"X-Client-Cert":           escaped,
		"X-SSL-Client-Cert":       escaped,
		"X-Forwarded-Client-Cert": "Hash=" + hex.EncodeToString(sum[:]) + `;Cert="` + escaped + `"`,
		"X-ARR-ClientCert":        base64.StdEncoding.EncodeToString(der),
	}
}

// TestMTLSBinding: with MTLS a cnf.x5t#S256 token is accepted only over
// its own client certificate (RFC 8705 section 3); forwarded certificate
// and address headers are ignored, and each flaw undoes one check.
func TestMTLSBinding(t *testing.T) {
	w := newMTLSWorld(t)
	type tc struct {
		name    string
		flaws   []string
		cert    *tls.Certificate
		headers map[string]string
		from    string
		ctxNet  bool
		noMTLS  bool
		unbound bool
		status  int
		reason  string
	}
	cases := []tc{
		{name: "over the bound certificate", cert: &w.bound, status: http.StatusOK},
		{name: "over another certificate", cert: &w.other, status: http.StatusUnauthorized, reason: "does not match"},
		{name: "without a certificate", status: http.StatusUnauthorized, reason: "without a client certificate"},
		{name: "an unbound token without a certificate", unbound: true, status: http.StatusOK},
		{name: "MTLS off", noMTLS: true, cert: &w.bound, status: http.StatusUnauthorized, reason: "unsupported confirmation method"},
		{name: "binding-unchecked, another certificate", flaws: []string{refgw.FlawMTLSBindingUnchecked}, cert: &w.other, status: http.StatusOK},
		{name: "binding-unchecked, no certificate", flaws: []string{refgw.FlawMTLSBindingUnchecked}, status: http.StatusOK},
		{name: "trusts-cert-header, another certificate and no header", flaws: []string{refgw.FlawMTLSTrustsCertHeader}, cert: &w.other, status: http.StatusUnauthorized, reason: "does not match"},
		{name: "bound to 127.0.0.1, from 127.0.0.2, spoofed forwarding headers", cert: &w.bound, from: "127.0.0.2", ctxNet: true, status: http.StatusUnauthorized, reason: "outside the token's networks",
			headers: map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}},
	}
	for name, v := range certHeaders(w.bound) {
		h := map[string]string{name: v}
		cases = append(cases,
			tc{name: "no certificate, the bound one in " + name, headers: h, status: http.StatusUnauthorized, reason: "without a client certificate"},
			tc{name: "another certificate, the bound one in " + name, cert: &w.other, headers: h, status: http.StatusUnauthorized, reason: "does not match"},
			tc{name: "trusts-cert-header, the bound one in " + name, flaws: []string{refgw.FlawMTLSTrustsCertHeader}, headers: h, status: http.StatusOK})
	}
	for name, v := range map[string]string{"X-Forwarded-For": "127.0.0.1, 10.0.0.7", "X-Real-IP": "127.0.0.1", "Forwarded": `for="127.0.0.1:4711";proto=https`} {
		cases = append(cases, tc{name: "trusts-forwarded-for, " + name, flaws: []string{refgw.FlawTrustsForwardedFor}, cert: &w.bound, from: "127.0.0.2", ctxNet: true,
			headers: map[string]string{name: v}, status: http.StatusOK})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			gw := f.newMTLSGateway(w, c.flaws, func(cfg *refgw.Config) { cfg.MTLS = !c.noMTLS })
			cl := f.claims(gw)
			if !c.unbound {
				cl["cnf"] = map[string]any{"x5t#S256": thumbprint(w.bound)}
			}
			if c.ctxNet {
				cl["ctx"] = map[string]any{"net": []string{"127.0.0.1/32"}}
			}
			tok := f.mint(cl)
			req := gw.get(t, "/api/tickets", tok)
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			from := c.from
			if from == "" {
				from = "127.0.0.1"
			}
			resp := gw.do(t, w.tlsClient(c.cert, from), req)
			checkRefusal(t, gw, resp, c.status, "Bearer", iT, tok)
			if c.status == http.StatusOK {
				if len(f.upstreamRequests()) != 1 {
					t.Errorf("accepted, but the upstream got %v", f.upstreamRequests())
				}
				return
			}
			if got := f.upstreamRequests(); len(got) != 0 {
				t.Errorf("refused, but the upstream got %v", got)
			}
			recs, _ := readAudit(t, gw.auditPath)
			if len(recs) != 1 || !strings.Contains(recs[0].Reason, c.reason) {
				t.Fatalf("audit %+v, want one deny whose reason says %q", recs, c.reason)
			}
		})
	}
}

// TestMTLSMetadata: an MTLS gateway says so in its RFC 9728 metadata.
func TestMTLSMetadata(t *testing.T) {
	w := newMTLSWorld(t)
	f := newFixture(t)
	gw := f.newMTLSGateway(w, nil)
	resp := gw.do(t, w.tlsClient(nil, "127.0.0.1"), gw.get(t, "/.well-known/oauth-protected-resource", ""))
	var md map[string]any
	if err := json.Unmarshal([]byte(resp.body), &md); err != nil || resp.status != http.StatusOK {
		t.Fatalf("metadata: %d %s", resp.status, resp.body)
	}
	if md["tls_client_certificate_bound_access_tokens"] != true || md["resource"] != gw.url {
		t.Errorf("metadata %v: want tls_client_certificate_bound_access_tokens true and resource %s", md, gw.url)
	}
}
