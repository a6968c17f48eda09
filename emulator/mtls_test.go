package emulator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

const (
	mtAud      = "https://api.example.test/mcp"
	mtSPIFFE   = "spiffe://example.test/agent/7"
	mtDNClient = "CN=dn-agent,O=agentsso"
)

// mtSelfSigned makes a self-signed client certificate.
func mtSelfSigned(tb testing.TB, cn string) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// mtJWKS is a JWK Set holding a certificate's public key; withX5C puts
// the certificate in x5c too.
func mtJWKS(tb testing.TB, c tls.Certificate, withX5C bool) string {
	tb.Helper()
	k := jose.JSONWebKey{Key: c.Leaf.PublicKey, KeyID: "mtls", Use: "sig"}
	if withX5C {
		k.Certificates = []*x509.Certificate{c.Leaf}
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func mtThumb(c tls.Certificate) string {
	h := sha256.Sum256(c.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// mtConfig is a tenant with mTLS clients; self and selfX5C are the
// certificates of the self-signed clients.
func mtConfig(tb testing.TB, self, selfX5C tls.Certificate) *emulator.Config {
	cc := func(id, method string) emulator.ClientConfig {
		return emulator.ClientConfig{ID: id, AuthMethod: method, GrantTypes: []string{emulator.GrantClientCredentials},
			RequiredScopes: []string{"tickets:read"}, OptionalScopes: []string{"tickets:write"},
			Audiences: []string{mtAud}, DefaultAudience: []string{mtAud}}
	}
	san := cc("cert-agent", "tls_client_auth")
	san.TLSClientAuthSANURI = mtSPIFFE
	dn := cc("dn-agent", "tls_client_auth")
	dn.TLSClientAuthSubjectDN = mtDNClient
	dnsAgent := cc("dns-agent", "tls_client_auth")
	dnsAgent.TLSClientAuthSANDNS = "agent.example.test"
	ss := cc("self-agent", "self_signed_tls_client_auth")
	ss.JWKS = mtJWKS(tb, self, false)
	ssX := cc("self-x5c-agent", "self_signed_tls_client_auth")
	ssX.JWKS = mtJWKS(tb, selfX5C, true)
	bound := cc("bound-agent", "client_secret_basic")
	bound.Secret = "bound-agent-secret"
	bound.TLSClientCertificateBoundAccessTokens = true
	plain := cc("plain-agent", "client_secret_basic")
	plain.Secret = "plain-agent-secret"
	gw := cc("gateway", "client_secret_basic")
	gw.Secret = "gateway-secret"
	gw.Introspect = true
	return &emulator.Config{Tenants: []emulator.TenantConfig{{
		Name: "acme", Scopes: []string{"tickets:read", "tickets:write"}, Audiences: []string{mtAud},
		Registration: emulator.RegistrationConfig{Dynamic: true},
		Clients:      []emulator.ClientConfig{san, dn, dnsAgent, ss, ssX, bound, plain, gw},
		Users:        []emulator.UserConfig{{Username: "alice", Password: "alice-password"}},
	}}}
}

type mtFixture struct {
	env             *emulatortest.Env
	m               *emulatortest.MTLS
	self, selfX5C   tls.Certificate
	spiffe, dnCert  tls.Certificate
	wrongURI, dnsOK tls.Certificate
}

func newMTFixture(t *testing.T) *mtFixture {
	t.Helper()
	f := &mtFixture{self: mtSelfSigned(t, "self-agent"), selfX5C: mtSelfSigned(t, "self-x5c-agent")}
	f.env, f.m = emulatortest.NewMTLS(t, mtConfig(t, f.self, f.selfX5C))
	var err error
	if f.spiffe, err = f.m.CA.ClientCert("agent-7", nil, []string{mtSPIFFE}); err != nil {
		t.Fatal(err)
	}
	if f.dnCert, err = f.m.CA.ClientCert("dn-agent", nil, nil); err != nil {
		t.Fatal(err)
	}
	if f.wrongURI, err = f.m.CA.ClientCert("agent-8", nil, []string{"spiffe://example.test/agent/8"}); err != nil {
		t.Fatal(err)
	}
	if f.dnsOK, err = f.m.CA.ClientCert("", []string{"agent.example.test"}, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// mtPost POSTs a form with an HTTP client and decodes the JSON answer.
func mtPost(tb testing.TB, hc *http.Client, u string, form url.Values, basic ...string) oauthReply {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := oauthReply{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(b, &out.Body); err != nil {
		tb.Fatalf("POST %s: HTTP %d, not JSON: %q", u, resp.StatusCode, b)
	}
	return out
}

func ccForm(id string, extra ...string) url.Values {
	v := url.Values{"grant_type": {"client_credentials"}}
	if id != "" {
		v.Set("client_id", id)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Add(extra[i], extra[i+1])
	}
	return v
}

func TestMTLSCertificateBoundToken(t *testing.T) {
	f := newMTFixture(t)
	for _, tc := range []struct {
		name, client string
		cert         tls.Certificate
		basic        []string
	}{
		{"tls_client_auth by SAN URI", "cert-agent", f.spiffe, nil},
		{"tls_client_auth by subject DN", "dn-agent", f.dnCert, nil},
		{"tls_client_auth by SAN DNS", "dns-agent", f.dnsOK, nil},
		{"self_signed_tls_client_auth by public key", "self-agent", f.self, nil},
		{"self_signed_tls_client_auth by x5c", "self-x5c-agent", f.selfX5C, nil},
		{"client_secret_basic with bound tokens", "bound-agent", f.spiffe, []string{"bound-agent", "bound-agent-secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.client
			if tc.basic != nil {
				id = ""
			}
			r := mtPost(t, f.m.Client(tc.cert), f.m.TokenURL("acme"), ccForm(id), tc.basic...)
			if r.Status != http.StatusOK {
				t.Fatalf("HTTP %d %v", r.Status, r.Body)
			}
			want := mtThumb(tc.cert)
			cl := jwtClaims(t, r.str("access_token"))
			if diff := cmp.Diff(map[string]any{"x5t#S256": want}, cl["cnf"]); diff != "" {
				t.Errorf("cnf (-want +got):\n%s", diff)
			}
			if got := r.str("token_type"); !strings.EqualFold(got, "bearer") {
				t.Errorf("token_type %q, want Bearer (RFC 8705 keeps the bearer scheme)", got)
			}
			in := tokenForm(t, f.env.Issuer("acme")+"/introspect", url.Values{"token": {r.str("access_token")}}, "gateway", "gateway-secret")
			if diff := cmp.Diff(map[string]any{"x5t#S256": want}, in.Body["cnf"]); diff != "" || in.Body["active"] != true {
				t.Errorf("introspection %v; cnf (-want +got):\n%s", in.Body, diff)
			}
		})
	}
	// A client that authenticates otherwise gets a bearer token on the
	// mTLS listener: no cnf.
	r := mtPost(t, f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm(""), "plain-agent", "plain-agent-secret")
	if r.Status != http.StatusOK || jwtClaims(t, r.str("access_token"))["cnf"] != nil {
		t.Fatalf("plain-agent on the mTLS listener: HTTP %d %v, want an unbound token", r.Status, r.Body)
	}
}

func TestMTLSRefused(t *testing.T) {
	f := newMTFixture(t)
	other := mtSelfSigned(t, "intruder")
	type want struct {
		Status int
		Error  string
	}
	for _, tc := range []struct {
		name    string
		hc      *http.Client
		url     string
		form    url.Values
		basic   []string
		want    want
		mention string
	}{
		{"certificate not registered for the client (other SAN URI)", f.m.Client(f.wrongURI), f.m.TokenURL("acme"), ccForm("cert-agent"), nil, want{401, "invalid_client"}, "no URI SAN"},
		{"self-signed certificate for tls_client_auth", f.m.Client(other), f.m.TokenURL("acme"), ccForm("cert-agent"), nil, want{401, "invalid_client"}, "does not chain"},
		{"registered DN, other certificate", f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm("dn-agent"), nil, want{401, "invalid_client"}, "subject"},
		{"self-signed certificate not in the client's JWKS", f.m.Client(other), f.m.TokenURL("acme"), ccForm("self-agent"), nil, want{401, "invalid_client"}, "not one registered"},
		{"CA certificate for a self-signed client", f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm("self-agent"), nil, want{401, "invalid_client"}, "not one registered"},
		{"another self-signed client's certificate", f.m.Client(f.selfX5C), f.m.TokenURL("acme"), ccForm("self-agent"), nil, want{401, "invalid_client"}, "not one registered"},
		{"no certificate", f.m.Client(), f.m.TokenURL("acme"), ccForm("cert-agent"), nil, want{401, "invalid_client"}, "no client certificate"},
		{"mTLS client at the plain token endpoint", http.DefaultClient, f.env.TokenURL("acme"), ccForm("cert-agent"), nil, want{401, "invalid_client"}, "mTLS endpoints"},
		{"certificate and a client secret", f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm("cert-agent", "client_secret", "x"), nil, want{401, "invalid_client"}, "no other credentials"},
		{"certificate and Basic", f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm(""), []string{"cert-agent", "x"}, want{401, "invalid_client"}, "no other credentials"},
		{"bound-token client at the plain endpoint", http.DefaultClient, f.env.TokenURL("acme"), ccForm(""), []string{"bound-agent", "bound-agent-secret"}, want{400, "invalid_request"}, "certificate-bound"},
		{"bound-token client without certificate", f.m.Client(), f.m.TokenURL("acme"), ccForm(""), []string{"bound-agent", "bound-agent-secret"}, want{400, "invalid_request"}, "certificate-bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mtPost(t, tc.hc, tc.url, tc.form, tc.basic...)
			if diff := cmp.Diff(tc.want, want{r.Status, r.str("error")}); diff != "" {
				t.Fatalf("(-want +got):\n%s\n%v", diff, r.Body)
			}
			if !strings.Contains(r.str("error_description"), tc.mention) {
				t.Errorf("error_description %q does not mention %q", r.str("error_description"), tc.mention)
			}
		})
	}
}

func TestMTLSDiscovery(t *testing.T) {
	f := newMTFixture(t)
	resp, err := http.Get(f.env.Issuer("acme") + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Aliases map[string]string `json:"mtls_endpoint_aliases"`
		Bound   bool              `json:"tls_client_certificate_bound_access_tokens"`
		Methods []string          `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	base := f.m.URL + "/t/acme"
	want := map[string]string{"token_endpoint": base + "/token", "introspection_endpoint": base + "/introspect",
		"revocation_endpoint": base + "/revoke", "userinfo_endpoint": base + "/userinfo"}
	if diff := cmp.Diff(want, md.Aliases); diff != "" {
		t.Errorf("mtls_endpoint_aliases (-want +got):\n%s", diff)
	}
	if !md.Bound || !strings.Contains(strings.Join(md.Methods, " "), "tls_client_auth self_signed_tls_client_auth") {
		t.Errorf("tls_client_certificate_bound_access_tokens %v, methods %v", md.Bound, md.Methods)
	}
	// The mTLS introspection endpoint authenticates the same way.
	tok := mtPost(t, f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm("cert-agent")).str("access_token")
	in := mtPost(t, f.m.Client(f.spiffe), base+"/introspect", url.Values{"token": {tok}}, "gateway", "gateway-secret")
	if in.Body["active"] != true {
		t.Fatalf("mTLS introspection: %v", in.Body)
	}
}

func TestAdminCertificates(t *testing.T) {
	f := newMTFixture(t)
	mtPost(t, f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm("cert-agent"))
	mtPost(t, f.m.Client(f.wrongURI), f.m.TokenURL("acme"), ccForm("cert-agent"))
	mtPost(t, f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm(""), "bound-agent", "bound-agent-secret")

	type row struct{ Client, Result, Thumb, URI string }
	want := []row{
		{"cert-agent", "allow", mtThumb(f.spiffe), mtSPIFFE},
		{"cert-agent", "deny", mtThumb(f.wrongURI), "spiffe://example.test/agent/8"},
		{"bound-agent", "bound", mtThumb(f.spiffe), mtSPIFFE},
	}
	recs, err := f.env.Server.Certificates("acme")
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for _, r := range recs {
		got = append(got, row{r.ClientID, r.Result, r.Thumbprint, strings.Join(r.SANs.URI, ",")})
		if r.Subject == "" || r.Endpoint != "token" || r.Source == "" || r.Time.IsZero() {
			t.Errorf("record %+v lacks subject, endpoint, source or time", r)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Certificates (-want +got):\n%s", diff)
	}
	resp, err := http.Get(f.env.AdminURL + "/admin/v1/tenants/acme/certificates?client_id=bound-agent")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP %d %v", resp.StatusCode, err)
	}
	if len(list) != 1 || list[0]["x5t#S256"] != mtThumb(f.spiffe) || list[0]["subject"] != "O=agentsso,CN=agent-7" && list[0]["subject"] != "CN=agent-7,O=agentsso" {
		t.Errorf("admin list: %v", list)
	}
	if _, err := f.env.Server.Certificates("nope"); !errors.Is(err, emulator.ErrNotFound) {
		t.Errorf("unknown tenant: %v, want ErrNotFound", err)
	}
}

func TestMTLSRegistration(t *testing.T) {
	f := newMTFixture(t)
	reg := func(md map[string]any) oauthReply {
		b, _ := json.Marshal(md)
		req, _ := http.NewRequest(http.MethodPost, f.env.Issuer("acme")+"/register", strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
		return doJSONish(t, req)
	}
	r := reg(map[string]any{"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_uri": mtSPIFFE,
		"grant_types": []string{"client_credentials"}, "scope": "tickets:read", "tls_client_certificate_bound_access_tokens": true})
	if r.Status != http.StatusCreated || r.str("tls_client_auth_san_uri") != mtSPIFFE || r.Body["client_secret"] != nil {
		t.Fatalf("register: HTTP %d %v", r.Status, r.Body)
	}
	tok := mtPost(t, f.m.Client(f.spiffe), f.m.TokenURL("acme"), ccForm(r.str("client_id")))
	if tok.Status != 200 || jwtClaims(t, tok.str("access_token"))["cnf"] == nil {
		t.Fatalf("registered mTLS client: HTTP %d %v", tok.Status, tok.Body)
	}
	for _, tc := range []struct {
		name  string
		md    map[string]any
		field string
	}{
		{"tls_client_auth without a name", map[string]any{"token_endpoint_auth_method": "tls_client_auth", "grant_types": []string{"client_credentials"}}, "tls_client_auth_subject_dn"},
		{"two names", map[string]any{"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_san_dns": "a.example.test", "tls_client_auth_san_uri": mtSPIFFE, "grant_types": []string{"client_credentials"}}, "tls_client_auth_subject_dn"},
		{"bad DN", map[string]any{"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN", "grant_types": []string{"client_credentials"}}, "tls_client_auth_subject_dn"},
		{"self-signed without keys", map[string]any{"token_endpoint_auth_method": "self_signed_tls_client_auth", "grant_types": []string{"client_credentials"}}, "jwks"},
		{"SAN with another method", map[string]any{"tls_client_auth_san_dns": "a.example.test", "grant_types": []string{"client_credentials"}}, "tls_client_auth_san_dns"},
		{"bound flag not a boolean", map[string]any{"tls_client_certificate_bound_access_tokens": "yes", "grant_types": []string{"client_credentials"}}, "tls_client_certificate_bound_access_tokens"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := reg(tc.md)
			if r.Status != 400 || r.str("error") != "invalid_client_metadata" || !strings.HasPrefix(r.str("error_description"), tc.field) {
				t.Fatalf("HTTP %d %v, want invalid_client_metadata naming %s", r.Status, r.Body, tc.field)
			}
		})
	}
}

func TestMTLSConfigValidation(t *testing.T) {
	base := func() emulator.ClientConfig {
		return emulator.ClientConfig{ID: "a", GrantTypes: []string{emulator.GrantClientCredentials}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*emulator.ClientConfig)
		cfg   func(*emulator.Config)
		field string
	}{
		{"tls_client_auth without a name", func(c *emulator.ClientConfig) { c.AuthMethod = "tls_client_auth" }, nil, "tls_client_auth_subject_dn"},
		{"tls_client_auth with two names", func(c *emulator.ClientConfig) {
			c.AuthMethod, c.TLSClientAuthSANDNS, c.TLSClientAuthSANEmail = "tls_client_auth", "a.example.test", "a@example.test"
		}, nil, "tls_client_auth_subject_dn"},
		{"unparsable DN", func(c *emulator.ClientConfig) { c.AuthMethod, c.TLSClientAuthSubjectDN = "tls_client_auth", "CN=a,\\" }, nil, "tls_client_auth_subject_dn"},
		{"bad SAN IP", func(c *emulator.ClientConfig) { c.AuthMethod, c.TLSClientAuthSANIP = "tls_client_auth", "10.0.0.300" }, nil, "tls_client_auth_san_ip"},
		{"relative SAN URI", func(c *emulator.ClientConfig) { c.AuthMethod, c.TLSClientAuthSANURI = "tls_client_auth", "agent/7" }, nil, "tls_client_auth_san_uri"},
		{"bad SAN email", func(c *emulator.ClientConfig) { c.AuthMethod, c.TLSClientAuthSANEmail = "tls_client_auth", "nobody" }, nil, "tls_client_auth_san_email"},
		{"SAN on a secret client", func(c *emulator.ClientConfig) { c.TLSClientAuthSANDNS = "a.example.test" }, nil, "tls_client_auth_san_dns"},
		{"self-signed without keys", func(c *emulator.ClientConfig) { c.AuthMethod = "self_signed_tls_client_auth" }, nil, "jwks"},
		{"tls_client_ca not PEM", func(c *emulator.ClientConfig) {
			c.AuthMethod, c.TLSClientAuthSANDNS, c.TLSClientCA = "tls_client_auth", "a.example.test", "nope"
		}, nil, "tls_client_ca"},
		{"bad mtls_addr", nil, func(c *emulator.Config) { c.MTLSAddr = "nope" }, "mtls_addr"},
		{"http mtls_base_url", nil, func(c *emulator.Config) { c.MTLSBaseURL = "http://127.0.0.1:8443" }, "mtls_base_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := base()
			if tc.edit != nil {
				tc.edit(&cl)
			}
			c := emulator.Config{Tenants: []emulator.TenantConfig{{Name: "acme", Clients: []emulator.ClientConfig{cl}}}}
			if tc.cfg != nil {
				tc.cfg(&c)
			}
			err := c.Validate()
			if !mentionsField(err, tc.field) {
				t.Fatalf("Validate: %v, want a *ConfigError on %s", err, tc.field)
			}
		})
	}
}

// mentionsField reports whether err joins a *ConfigError whose field ends
// with field.
func mentionsField(err error, field string) bool {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	for _, e := range errs {
		var ce *emulator.ConfigError
		if errors.As(e, &ce) && strings.HasSuffix(ce.Field, field) {
			return true
		}
	}
	return false
}

// TestMTLSUserinfoBinding: the userinfo endpoint accepts a
// certificate-bound token only over the mTLS listener with its
// certificate (RFC 8705 section 3), and a context-bound token only from
// its networks.
func TestMTLSUserinfoBinding(t *testing.T) {
	f := newMTFixture(t)
	mint := func(claims map[string]any) string {
		claims["sub"], claims["scope"], claims["client_id"], claims["aud"] = "user:alice", "openid", "plain-agent", mtAud
		res, err := f.env.Server.Mint(context.Background(), "acme", emulator.MintRequest{Claims: claims})
		if err != nil {
			t.Fatal(err)
		}
		return res.Token
	}
	bound := mint(map[string]any{"cnf": map[string]any{"x5t#S256": mtThumb(f.spiffe)}})
	netBound := mint(map[string]any{"ctx": map[string]any{"net": []string{"127.0.0.1/32"}}})
	userinfo := func(hc *http.Client, u, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	mtlsUI, plainUI := f.m.URL+"/t/acme/userinfo", f.env.Issuer("acme")+"/userinfo"
	for _, tc := range []struct {
		name     string
		hc       *http.Client
		url, tok string
		want     int
	}{
		{"bound token with its certificate", f.m.Client(f.spiffe), mtlsUI, bound, 200},
		{"bound token with another certificate", f.m.Client(f.wrongURI), mtlsUI, bound, 401},
		{"bound token without a certificate", f.m.Client(), mtlsUI, bound, 401},
		{"bound token at the plain endpoint", http.DefaultClient, plainUI, bound, 401},
		{"context-bound token from its network", fromAddr(t, "127.0.0.1"), plainUI, netBound, 200},
		{"context-bound token from 127.0.0.2", fromAddr(t, "127.0.0.2"), plainUI, netBound, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge := userinfo(tc.hc, tc.url, tc.tok)
			if status != tc.want {
				t.Fatalf("HTTP %d (%s), want %d", status, challenge, tc.want)
			}
			if tc.want == 401 && !strings.Contains(challenge, "invalid_token") {
				t.Errorf("WWW-Authenticate %q, want invalid_token", challenge)
			}
		})
	}
}
