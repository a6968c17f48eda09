package emulator_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// FuzzTokenRequest sends arbitrary form bodies and Basic credentials to
// the token endpoint and the introspection and revocation endpoints: every
// answer is JSON with a 2xx or 4xx status, never a panic or a 5xx.
func FuzzTokenRequest(f *testing.F) {
	f.Add("grant_type=client_credentials", "support-bot", "support-bot-secret")
	f.Add("grant_type=client_credentials&resource=https%3A%2F%2Fmcp.acme.test%2Fzendesk&scope=zendesk%3Atickets%3Aread", "support-bot", "support-bot-secret")
	f.Add("grant_type=refresh_token&refresh_token=x.y", "acme-portal", "acme-portal-secret")
	f.Add("grant_type=authorization_code&code=a.b&code_verifier=c&redirect_uri=http%3A%2F%2F127.0.0.1%3A9999%2Fcallback", "acme-portal", "acme-portal-secret")
	f.Add("grant_type=client_credentials&resource=%25zz&audience=a%20b", "support-bot", "support-bot-secret")
	f.Add("token=eyJhbGciOiJub25lIn0.e30.&token_type_hint=access_token", "mcp-gateway", "mcp-gateway-secret")
	env := emulatortest.New(f, nil)
	f.Fuzz(func(t *testing.T, body, user, pass string) {
		for _, path := range []string{"/t/acme/token", "/t/acme/introspect", "/t/acme/revoke"} {
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if user != "" {
				r.SetBasicAuth(user, pass)
			}
			w := httptest.NewRecorder()
			env.Server.ServeHTTP(w, r)
			if w.Code >= 500 || w.Code < 200 {
				t.Fatalf("%s %q: HTTP %d %s", path, body, w.Code, w.Body)
			}
			if w.Body.Len() > 0 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
				t.Fatalf("%s: non-JSON answer %q", path, w.Header().Get("Content-Type"))
			}
		}
	})
}
