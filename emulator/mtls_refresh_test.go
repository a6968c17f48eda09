package emulator_test

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// mtRefreshFixture is mtConfig plus two authorization-code clients with
// certificate-bound tokens: public-app (auth_method none) and
// confidential-app (client_secret_basic).
type mtRefreshFixture struct {
	env    *emulatortest.Env
	m      *emulatortest.MTLS
	a, b   tls.Certificate
	public map[string]bool
}

func newMTRefreshFixture(t *testing.T) *mtRefreshFixture {
	t.Helper()
	cfg := mtConfig(t, mtSelfSigned(t, "self-agent"), mtSelfSigned(t, "self-x5c-agent"))
	app := func(id, method string) emulator.ClientConfig {
		return emulator.ClientConfig{ID: id, AuthMethod: method,
			GrantTypes:     []string{emulator.GrantAuthorizationCode, emulator.GrantRefreshToken},
			RedirectURIs:   []string{azCallback},
			RequiredScopes: []string{"openid", "offline_access", "tickets:read"},
			Audiences:      []string{mtAud}, DefaultAudience: []string{mtAud},
			TLSClientCertificateBoundAccessTokens: true}
	}
	conf := app("confidential-app", "client_secret_basic")
	conf.Secret = "confidential-app-secret"
	cfg.Tenants[0].Clients = append(cfg.Tenants[0].Clients, app("public-app", "none"), conf)
	f := &mtRefreshFixture{public: map[string]bool{"public-app": true}}
	f.env, f.m = emulatortest.NewMTLS(t, cfg)
	var err error
	if f.a, err = f.m.CA.ClientCert("app-instance-a", nil, nil); err != nil {
		t.Fatal(err)
	}
	if f.b, err = f.m.CA.ClientCert("app-instance-b", nil, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// post sends a token request of clientID to u with hc.
func (f *mtRefreshFixture) post(t *testing.T, hc *http.Client, u, clientID string, form url.Values) oauthReply {
	t.Helper()
	if f.public[clientID] {
		form.Set("client_id", clientID)
		return mtPost(t, hc, u, form)
	}
	return mtPost(t, hc, u, form, clientID, clientID+"-secret")
}

// code signs alice in headless and redeems the code at the mTLS token
// endpoint with cert.
func (f *mtRefreshFixture) code(t *testing.T, clientID string, cert tls.Certificate) oauthReply {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := azParams(clientID, verifier)
	q.Set("scope", "openid offline_access tickets:read")
	_, rq := azAuthorize(t, f.env, "acme", q).location(t)
	if rq.Get("code") == "" {
		t.Fatalf("no code: %v", rq)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {rq.Get("code")}, "redirect_uri": {azCallback}, "code_verifier": {verifier}}
	return f.post(t, f.m.Client(cert), f.m.TokenURL("acme"), clientID, form)
}

func (f *mtRefreshFixture) refresh(t *testing.T, hc *http.Client, u, clientID, rt string) oauthReply {
	t.Helper()
	return f.post(t, hc, u, clientID, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// wantBound checks a token response whose access token is bound to cert.
func wantBound(t *testing.T, r oauthReply, cert tls.Certificate) (access, refresh string) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("HTTP %d %v", r.Status, r.Body)
	}
	cnf, _ := jwtClaims(t, r.str("access_token"))["cnf"].(map[string]any)
	if cnf["x5t#S256"] != mtThumb(cert) {
		t.Errorf("cnf %v, want x5t#S256 %s", cnf, mtThumb(cert))
	}
	if r.str("refresh_token") == "" {
		t.Fatal("no refresh token")
	}
	return r.str("access_token"), r.str("refresh_token")
}

func wantGrantError(t *testing.T, r oauthReply, mention string) {
	t.Helper()
	if r.Status != http.StatusBadRequest || r.str("error") != "invalid_grant" || !strings.Contains(r.str("error_description"), mention) {
		t.Errorf("HTTP %d %v, want 400 invalid_grant mentioning %q", r.Status, r.Body, mention)
	}
}

// TestMTLSPublicClientRefresh: a public client's refresh token is bound
// to the certificate its tokens were bound to (RFC 8705 section 4): a
// refresh with another certificate, with none over the mTLS listener, or
// at the plain token endpoint is invalid_grant and consumes nothing; the
// same certificate refreshes, and the rotated refresh token stays bound.
func TestMTLSPublicClientRefresh(t *testing.T) {
	f := newMTRefreshFixture(t)
	mtlsURL, plainURL := f.m.TokenURL("acme"), f.env.TokenURL("acme")
	_, rt := wantBound(t, f.code(t, "public-app", f.a), f.a)

	wantGrantError(t, f.refresh(t, f.m.Client(f.b), mtlsURL, "public-app", rt), "bound to another client certificate")
	wantGrantError(t, f.refresh(t, f.m.Client(), mtlsURL, "public-app", rt), "mTLS token endpoint")
	wantGrantError(t, f.refresh(t, http.DefaultClient, plainURL, "public-app", rt), "mTLS token endpoint")

	_, next := wantBound(t, f.refresh(t, f.m.Client(f.a), mtlsURL, "public-app", rt), f.a)
	if next == rt {
		t.Fatal("the refresh token did not rotate")
	}
	wantGrantError(t, f.refresh(t, f.m.Client(f.b), mtlsURL, "public-app", next), "bound to another client certificate")
	wantBound(t, f.refresh(t, f.m.Client(f.a), mtlsURL, "public-app", next), f.a)

	recs, err := f.env.Server.Certificates("acme")
	if err != nil {
		t.Fatal(err)
	}
	var denied int
	for _, r := range recs {
		if r.ClientID == "public-app" && r.Result == "deny" && r.Thumbprint == mtThumb(f.b) {
			denied++
		}
	}
	if denied != 2 {
		t.Errorf("%d deny records of public-app with certificate b, want 2: %+v", denied, recs)
	}
}

// TestMTLSConfidentialClientRefresh is the control: a confidential client
// authenticates on its own, so its refresh token is not held to one
// certificate; each access token is bound to the certificate of its own
// request.
func TestMTLSConfidentialClientRefresh(t *testing.T) {
	f := newMTRefreshFixture(t)
	_, rt := wantBound(t, f.code(t, "confidential-app", f.a), f.a)
	wantBound(t, f.refresh(t, f.m.Client(f.b), f.m.TokenURL("acme"), "confidential-app", rt), f.b)
}
