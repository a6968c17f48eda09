package emulator_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/emulatortest"
)

func TestStepUpLifetimes(t *testing.T) {
	cfg := &emulator.Config{Tenants: []emulator.TenantConfig{{
		Name: "acme", Scopes: []string{"tickets:read", "tickets:write", "tickets:delete"}, Audiences: []string{mtAud},
		Clients: []emulator.ClientConfig{{
			ID: "writer", Secret: "writer-secret", GrantTypes: []string{emulator.GrantClientCredentials},
			RequiredScopes: []string{"tickets:read"}, OptionalScopes: []string{"tickets:write", "tickets:delete"},
			Audiences: []string{mtAud}, DefaultAudience: []string{mtAud},
			MaxLifetime:  5 * time.Minute,
			StepUpScopes: map[string]time.Duration{"tickets:write": time.Minute, "tickets:delete": 30 * time.Second},
		}},
	}}}
	env := emulatortest.New(t, cfg)
	for _, tc := range []struct {
		scope string
		want  time.Duration
	}{
		{"tickets:read", 5 * time.Minute},                  // max_lifetime under the 10m default
		{"tickets:read tickets:write", time.Minute},        // step-up scope
		{"tickets:write tickets:delete", 30 * time.Second}, // the shortest step-up wins
	} {
		t.Run(tc.scope, func(t *testing.T) {
			r := mtPost(t, http.DefaultClient, env.TokenURL("acme"), ccForm("", "scope", tc.scope), "writer", "writer-secret")
			if r.Status != 200 {
				t.Fatalf("HTTP %d %v", r.Status, r.Body)
			}
			cl := jwtClaims(t, r.str("access_token"))
			got := time.Duration(cl["exp"].(float64)-cl["iat"].(float64)) * time.Second
			exp, _ := r.Body["expires_in"].(float64)
			// expires_in is computed against real time: a second short at most.
			if got != tc.want || exp < tc.want.Seconds()-2 || exp > tc.want.Seconds() {
				t.Errorf("lifetime exp-iat %s, expires_in %v, want %s", got, exp, tc.want)
			}
		})
	}
}

func TestStepUpConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*emulator.ClientConfig)
		field string
	}{
		{"negative max_lifetime", func(c *emulator.ClientConfig) { c.MaxLifetime = -time.Second }, "max_lifetime"},
		{"zero step-up", func(c *emulator.ClientConfig) { c.StepUpScopes = map[string]time.Duration{"tickets:write": 0} }, "step_up_scopes[tickets:write]"},
		{"unknown scope", func(c *emulator.ClientConfig) { c.StepUpScopes = map[string]time.Duration{"nope": time.Minute} }, "step_up_scopes[nope]"},
		{"scope the client lacks", func(c *emulator.ClientConfig) {
			c.StepUpScopes = map[string]time.Duration{"tickets:admin": time.Minute}
		}, "step_up_scopes[tickets:admin]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := emulator.ClientConfig{ID: "a", OptionalScopes: []string{"tickets:write"}}
			tc.edit(&cl)
			c := emulator.Config{Tenants: []emulator.TenantConfig{{Name: "acme", Scopes: []string{"tickets:write", "tickets:admin"}, Clients: []emulator.ClientConfig{cl}}}}
			if err := c.Validate(); !mentionsField(err, tc.field) {
				t.Fatalf("Validate: %v, want a *ConfigError on %s", err, tc.field)
			}
		})
	}
}

// TestStepUpRefresh: what a refresh does with a step-up scope. The code
// grant gives the scope with its short lifetime; a refresh_token grant
// never gives it again, asked for or not (the response's scope says so,
// RFC 6749 section 5.1), nor does the rotated refresh token; once the
// step-up token has expired, holding the scope again takes a fresh grant.
func TestStepUpRefresh(t *testing.T) {
	cfg := emulator.DefaultConfig()
	for i := range cfg.Tenants[0].Clients {
		if c := &cfg.Tenants[0].Clients[i]; c.ID == "acme-copilot" {
			c.MaxLifetime = 5 * time.Minute
			c.StepUpScopes = map[string]time.Duration{"zendesk:tickets:write": time.Minute}
		}
	}
	env, _ := azStart(t, &cfg)
	const write = "zendesk:tickets:write"
	withWrite := func(q url.Values) { q.Set("scope", azScopes+" "+write) }
	// check returns a token response's access and refresh tokens after
	// checking whether the step-up scope is in the response's scope and
	// the token's, and the token's lifetime.
	check := func(t *testing.T, r azReply, wantWrite bool, wantLife time.Duration) azTokens {
		t.Helper()
		toks := azOK(t, r)
		respScope, _ := r.json(t)["scope"].(string)
		cl := jwtClaims(t, toks.access)
		tokScope, _ := cl["scope"].(string)
		if got := slices.Contains(strings.Fields(respScope), write); got != wantWrite {
			t.Errorf("response scope %q: %s present %v, want %v", respScope, write, got, wantWrite)
		}
		if got := slices.Contains(strings.Fields(tokScope), write); got != wantWrite {
			t.Errorf("access token scope %q: %s present %v, want %v", tokScope, write, got, wantWrite)
		}
		if got := time.Duration(cl["exp"].(float64)-cl["iat"].(float64)) * time.Second; got != wantLife {
			t.Errorf("access token lifetime %s, want %s", got, wantLife)
		}
		if toks.refresh == "" {
			t.Fatal("no refresh token")
		}
		return toks
	}

	code, verifier := azCode(t, env, "acme-copilot", withWrite)
	first := check(t, azRedeem(t, env, "acme-copilot", code, verifier, nil), true, time.Minute)

	second := check(t, azRefresh(t, env, "acme-copilot", first.refresh, nil), false, 5*time.Minute)
	// Asked for by name: still not given.
	third := check(t, azRefresh(t, env, "acme-copilot", second.refresh, url.Values{"scope": {azScopes + " " + write}}), false, 5*time.Minute)
	check(t, azRefresh(t, env, "acme-copilot", third.refresh, url.Values{"scope": {write}}), false, 5*time.Minute)

	// A minute on, the one token that carried the step-up scope has
	// expired and nothing refreshed carries it.
	env.Server.Clock("acme").Advance(time.Minute + time.Second)
	if azActive(t, env, first.access) {
		t.Error("the step-up access token is still active after its minute")
	}
	if !azActive(t, env, third.access) {
		t.Error("the refreshed access token is not active")
	}

	// A fresh grant gives the scope again, with its short lifetime.
	code, verifier = azCode(t, env, "acme-copilot", withWrite)
	check(t, azRedeem(t, env, "acme-copilot", code, verifier, nil), true, time.Minute)
}
