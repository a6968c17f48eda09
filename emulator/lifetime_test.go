package emulator_test

import (
	"net/http"
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
