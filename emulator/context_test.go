package emulator_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

// fromAddr is an HTTP client whose connections come from a loopback
// source address such as 127.0.0.2.
func fromAddr(tb testing.TB, ip string) *http.Client {
	tb.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func ctxConfig() *emulator.Config {
	cc := func(id string, pol *emulator.ContextPolicy) emulator.ClientConfig {
		return emulator.ClientConfig{ID: id, Secret: id + "-secret", GrantTypes: []string{emulator.GrantClientCredentials, emulator.GrantTokenExchange},
			RequiredScopes: []string{"tickets:read"}, Audiences: []string{mtAud}, DefaultAudience: []string{mtAud},
			ExchangeAudiences: []string{mtAud}, Context: pol, Introspect: true}
	}
	return &emulator.Config{Tenants: []emulator.TenantConfig{{
		Name: "acme", Scopes: []string{"tickets:read"}, Audiences: []string{mtAud},
		Clients: []emulator.ClientConfig{
			cc("pinned", &emulator.ContextPolicy{Networks: []string{"127.0.0.1/32"}, Zones: []string{"eu-west-1a", "eu-west-1b"}, Envs: []string{"prod"}, Require: true}),
			cc("loopback", &emulator.ContextPolicy{Networks: []string{"127.0.0.0/8"}, Zones: []string{"eu-west-1a"}}),
			cc("free", nil),
		},
	}}}
}

func TestContextBoundToken(t *testing.T) {
	env := emulatortest.New(t, ctxConfig())
	tokenURL := env.TokenURL("acme")
	r := mtPost(t, fromAddr(t, "127.0.0.1"), tokenURL, ccForm("", "agentsso_zone", "eu-west-1b", "agentsso_instance", "agent-7f3c"), "pinned", "pinned-secret")
	if r.Status != 200 {
		t.Fatalf("HTTP %d %v", r.Status, r.Body)
	}
	want := map[string]any{"net": []any{"127.0.0.1/32"}, "zone": "eu-west-1b", "env": "prod", "instance": "agent-7f3c"}
	if diff := cmp.Diff(want, jwtClaims(t, r.str("access_token"))["ctx"]); diff != "" {
		t.Errorf("ctx (-want +got):\n%s", diff)
	}
	in := tokenForm(t, env.Issuer("acme")+"/introspect", url.Values{"token": {r.str("access_token")}}, "pinned", "pinned-secret")
	if diff := cmp.Diff(want, in.Body["ctx"]); diff != "" {
		t.Errorf("introspection ctx (-want +got):\n%s", diff)
	}

	// Not asked, not required: no ctx, but the networks still apply.
	r = mtPost(t, fromAddr(t, "127.0.0.2"), tokenURL, ccForm(""), "loopback", "loopback-secret")
	if r.Status != 200 || jwtClaims(t, r.str("access_token"))["ctx"] != nil {
		t.Fatalf("loopback from 127.0.0.2 without asking: HTTP %d %v, want an unbound token", r.Status, r.Body)
	}
	r = mtPost(t, fromAddr(t, "127.0.0.2"), tokenURL, ccForm("", "agentsso_zone", "eu-west-1a"), "loopback", "loopback-secret")
	if diff := cmp.Diff(map[string]any{"net": []any{"127.0.0.0/8"}, "zone": "eu-west-1a"}, jwtClaims(t, r.str("access_token"))["ctx"]); diff != "" {
		t.Errorf("loopback ctx (-want +got):\n%s", diff)
	}

	// Token exchange by a client with a required context binds the new
	// token to the exchanger's context.
	sub := mtPost(t, http.DefaultClient, tokenURL, ccForm(""), "free", "free-secret").str("access_token")
	x := mtPost(t, fromAddr(t, "127.0.0.1"), tokenURL, url.Values{"grant_type": {emulator.GrantTokenExchange}, "subject_token": {sub},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "agentsso_zone": {"eu-west-1a"}}, "pinned", "pinned-secret")
	if x.Status != 200 {
		t.Fatalf("exchange: HTTP %d %v", x.Status, x.Body)
	}
	if got := jwtClaims(t, x.str("access_token"))["ctx"]; cmp.Diff(map[string]any{"net": []any{"127.0.0.1/32"}, "zone": "eu-west-1a", "env": "prod"}, got) != "" {
		t.Errorf("exchanged ctx %v", got)
	}
}

func TestContextRefused(t *testing.T) {
	env := emulatortest.New(t, ctxConfig())
	type want struct {
		Status int
		Error  string
	}
	for _, tc := range []struct {
		name, from, client string
		form               url.Values
		want               want
		mention            string
	}{
		{"source address outside the networks", "127.0.0.2", "pinned", ccForm("", "agentsso_zone", "eu-west-1a"), want{400, "access_denied"}, "127.0.0.2"},
		{"zone not allowed", "127.0.0.1", "pinned", ccForm("", "agentsso_zone", "us-east-1a"), want{400, "invalid_request"}, "agentsso_zone"},
		{"required zone missing", "127.0.0.1", "pinned", ccForm(""), want{400, "invalid_request"}, "eu-west-1a, eu-west-1b"},
		{"env not allowed", "127.0.0.1", "pinned", ccForm("", "agentsso_zone", "eu-west-1a", "agentsso_env", "staging"), want{400, "invalid_request"}, "agentsso_env"},
		{"env the policy does not list", "127.0.0.1", "loopback", ccForm("", "agentsso_env", "prod"), want{400, "invalid_request"}, "allows no agentsso_env"},
		{"zone twice", "127.0.0.1", "pinned", ccForm("", "agentsso_zone", "eu-west-1a", "agentsso_zone", "eu-west-1b"), want{400, "invalid_request"}, "at most once"},
		{"instance with a space", "127.0.0.1", "pinned", ccForm("", "agentsso_zone", "eu-west-1a", "agentsso_instance", "a b"), want{400, "invalid_request"}, "agentsso_instance"},
		{"empty zone", "127.0.0.1", "pinned", ccForm("", "agentsso_zone", ""), want{400, "invalid_request"}, "agentsso_zone"},
		{"context without a policy", "127.0.0.1", "free", ccForm("", "agentsso_zone", "eu-west-1a"), want{400, "invalid_request"}, "no context policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mtPost(t, fromAddr(t, tc.from), env.TokenURL("acme"), tc.form, tc.client, tc.client+"-secret")
			if diff := cmp.Diff(tc.want, want{r.Status, r.str("error")}); diff != "" {
				t.Fatalf("(-want +got):\n%s\n%v", diff, r.Body)
			}
			if !strings.Contains(r.str("error_description"), tc.mention) {
				t.Errorf("error_description %q does not mention %q", r.str("error_description"), tc.mention)
			}
		})
	}
}

func TestContextConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pol   emulator.ContextPolicy
		field string
	}{
		{"not a CIDR", emulator.ContextPolicy{Networks: []string{"10.0.0.1"}}, "context.networks[0]"},
		{"host bits", emulator.ContextPolicy{Networks: []string{"10.0.0.1/8"}}, "context.networks[0]"},
		{"zone with a space", emulator.ContextPolicy{Zones: []string{"eu west"}}, "context.zones[0]"},
		{"empty env", emulator.ContextPolicy{Envs: []string{""}}, "context.envs[0]"},
		{"require with nothing to bind", emulator.ContextPolicy{Require: true}, "context.require"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := tc.pol
			c := emulator.Config{Tenants: []emulator.TenantConfig{{Name: "acme", Clients: []emulator.ClientConfig{{ID: "a", Context: &pol}}}}}
			if err := c.Validate(); !mentionsField(err, tc.field) {
				t.Fatalf("Validate: %v, want a *ConfigError on %s", err, tc.field)
			}
		})
	}
}
