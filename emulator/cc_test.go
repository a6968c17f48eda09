package emulator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

func TestClientCredentialsInterop(t *testing.T) {
	env := emulatortest.New(t, nil)
	for _, style := range []struct {
		name  string
		id    string
		sec   string
		style int
	}{
		{"client_secret_basic", "support-bot", "support-bot-secret", 2},
		{"client_secret_post", "report-bot", "report-bot-secret", 1},
	} {
		t.Run(style.name, func(t *testing.T) {
			cc := clientcredentials.Config{ClientID: style.id, ClientSecret: style.sec, TokenURL: env.TokenURL("acme")}
			cc.AuthStyle = 0
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.Expiry.Before(time.Now()) || !strings.EqualFold(tok.TokenType, "bearer") {
				t.Fatalf("token %+v", tok)
			}
		})
	}
	bad := clientcredentials.Config{ClientID: "support-bot", ClientSecret: "wrong", TokenURL: env.TokenURL("acme")}
	if _, err := bad.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("wrong secret: %v, want invalid_client", err)
	}
}

func form(t *testing.T, u, user, pass string, v url.Values) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]any{"_status": float64(resp.StatusCode)}
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// TestRevocationCascade: revoking a token by its jti (RFC 7009) and
// deprovisioning the agent it names both reach the tokens exchanged from
// it, without any per-token state at the IdP.
func TestRevocationCascade(t *testing.T) {
	env := emulatortest.New(t, nil)
	iss := env.Issuer("acme")
	cc := func() string {
		r := form(t, iss+"/token", "support-bot", "support-bot-secret", url.Values{"grant_type": {"client_credentials"}})
		return r["access_token"].(string)
	}
	exchange := func(sub string) string {
		r := form(t, iss+"/token", "mcp-gateway", "mcp-gateway-secret", url.Values{
			"grant_type": {emulator.GrantTokenExchange}, "subject_token": {sub},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}})
		tok, _ := r["access_token"].(string)
		if tok == "" {
			t.Fatalf("exchange: %v", r)
		}
		return tok
	}
	active := func(tok string) bool {
		r := form(t, iss+"/introspect", "mcp-gateway", "mcp-gateway-secret", url.Values{"token": {tok}})
		return r["active"] == true
	}
	sub := cc()
	x := exchange(sub)
	if !active(sub) || !active(x) {
		t.Fatal("fresh tokens must be active")
	}
	form(t, iss+"/revoke", "support-bot", "support-bot-secret", url.Values{"token": {sub}})
	if active(sub) || active(x) {
		t.Fatalf("after revoking the subject token: subject active=%v exchanged active=%v, want both inactive", active(sub), active(x))
	}

	sub2 := cc()
	x2 := exchange(sub2)
	if err := env.Server.DisableClient("acme", "support-bot"); err != nil {
		t.Fatal(err)
	}
	if active(sub2) || active(x2) {
		t.Fatalf("after deprovisioning support-bot: its token active=%v, the gateway's exchanged token active=%v", active(sub2), active(x2))
	}
	if r := form(t, iss+"/token", "support-bot", "support-bot-secret", url.Values{"grant_type": {"client_credentials"}}); r["error"] != "invalid_client" {
		t.Fatalf("a disabled agent got %v, want invalid_client", r)
	}
}
