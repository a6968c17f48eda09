package emulator

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if got := len(c.Tenants); got != 2 {
		t.Fatalf("default tenants = %d, want 2 (acme, globex)", got)
	}
	if c.Tenants[0].Clients[0].ID != "support-bot" {
		t.Fatalf("first acme client = %q, want support-bot (documented in README)", c.Tenants[0].Clients[0].ID)
	}
}

// TestConfigErrorsNameTheField checks that each bad configuration fails
// with an error naming the field at fault.
func TestConfigErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, yaml, field string
	}{
		{"unknown top-level key", "tenants: [{name: a}]\nfoo: 1\n", "field foo not found"},
		{"unknown client key", "tenants: [{name: a, clients: [{id: c, secrett: x}]}]\n", "field secrett not found"},
		{"no tenants", "addr: 127.0.0.1:1\n", "tenants"},
		{"bad tenant name", "tenants: [{name: 'A B'}]\n", "tenants[0].name"},
		{"duplicate tenant", "tenants: [{name: a}, {name: a}]\n", "tenants[1].name"},
		{"bad backend", "keys: {backend: foo}\ntenants: [{name: a}]\n", "keys.backend"},
		{"bad alg", "tenants: [{name: a, alg: HS256}]\n", "tenants[0].alg"},
		{"bad base url", "public_base_url: ftp://x\ntenants: [{name: a}]\n", "public_base_url"},
		{"base url with path", "public_base_url: http://x/y\ntenants: [{name: a}]\n", "public_base_url"},
		{"admin off loopback without token", "admin_addr: 0.0.0.0:8081\ntenants: [{name: a}]\n", "admin_token"},
		{"bad addr", "addr: nope\ntenants: [{name: a}]\n", "addr"},
		{"bad grant", "tenants: [{name: a, clients: [{id: c, grant_types: [password]}]}]\n", "tenants[0].clients[0].grant_types[0]"},
		{"bad auth method", "tenants: [{name: a, clients: [{id: c, auth_method: tls}]}]\n", "tenants[0].clients[0].auth_method"},
		{"pkjwt without keys", "tenants: [{name: a, clients: [{id: c, auth_method: private_key_jwt}]}]\n", "tenants[0].clients[0].jwks"},
		{"code without redirect", "tenants: [{name: a, clients: [{id: c, grant_types: [authorization_code]}]}]\n", "tenants[0].clients[0].redirect_uris"},
		{"scope outside catalogue", "tenants: [{name: a, clients: [{id: c, required_scopes: [x]}]}]\n", "tenants[0].clients[0].scopes[0]"},
		{"default audience not allowed", "tenants: [{name: a, clients: [{id: c, default_audience: [x]}]}]\n", "tenants[0].clients[0].default_audience[0]"},
		{"public client credentials", "tenants: [{name: a, clients: [{id: c, auth_method: none, grant_types: [client_credentials]}]}]\n", "tenants[0].clients[0].grant_types"},
		{"negative lifetime", "tenants: [{name: a, lifetimes: {access_token: -1m}}]\n", "tenants[0].lifetimes.access_token"},
		{"user subject equals client", "tenants: [{name: a, clients: [{id: bob}], users: [{username: u, subject: bob}]}]\n", "tenants[0].users[0].subject"},
		{"duplicate client", "tenants: [{name: a, clients: [{id: c}, {id: c}]}]\n", "tenants[0].clients[1].id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if err == nil {
				t.Fatal("ParseConfig succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

func TestConfigErrorIsTyped(t *testing.T) {
	_, err := ParseConfig([]byte("keys: {backend: foo}\ntenants: [{name: a}]\n"))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "keys.backend" {
		t.Fatalf("error %v: want a *ConfigError for keys.backend", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(defaultYAML)
	f.Add([]byte("tenants: [{name: a}]"))
	f.Add([]byte("tenants: [{name: a, clients: [{id: c, lifetimes: {access_token: 1s}}]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil && len(c.Tenants) == 0 {
			t.Fatal("a valid configuration must have a tenant")
		}
	})
}

// TestGoJoseFloor keeps go-jose at versions without the known parse
// denial of service (CVE-2025-27144): v3 >= v3.0.4, v4 >= v4.0.5,
// whatever fosite pins.
func TestGoJoseFloor(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	floor := map[string]string{"github.com/go-jose/go-jose/v3": "v3.0.4", "github.com/go-jose/go-jose/v4": "v4.0.5"}
	for _, r := range mf.Require {
		if min, ok := floor[r.Mod.Path]; ok {
			if semver.Compare(r.Mod.Version, min) < 0 {
				t.Errorf("%s is %s, want >= %s", r.Mod.Path, r.Mod.Version, min)
			}
			delete(floor, r.Mod.Path)
		}
	}
	for p := range floor {
		t.Errorf("%s is not required in go.mod", p)
	}
}
