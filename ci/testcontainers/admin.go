package agentssotc

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/emulator"
)

// Admin is a client of the emulator's admin API (docs/ADMIN.md). The
// embedded conformance.IdP mints, revokes by jti, lists and rotates keys
// and resets a tenant, as the conformance harness does; the methods below
// add the clock, faults, revocation by grant or client, tenants and the
// public base URL.
type Admin struct {
	*conformance.IdP
}

// ClockChange changes a tenant's virtual clock. The fields apply in this
// order: Reset, Skew, At, Freeze, Advance (docs/ADMIN.md, "Clock").
type ClockChange struct {
	Reset   bool
	Skew    *time.Duration
	At      *time.Time
	Freeze  *bool
	Advance time.Duration
}

// MarshalJSON writes the admin API's form: durations as strings, At as
// RFC 3339.
func (c ClockChange) MarshalJSON() ([]byte, error) {
	j := map[string]any{}
	if c.Reset {
		j["reset"] = true
	}
	if c.Skew != nil {
		j["skew"] = c.Skew.String()
	}
	if c.At != nil {
		j["at"] = c.At.Format(time.RFC3339Nano)
	}
	if c.Freeze != nil {
		j["freeze"] = *c.Freeze
	}
	if c.Advance != 0 {
		j["advance"] = c.Advance.String()
	}
	return json.Marshal(j)
}

// Clock reads a tenant's virtual clock.
func (a *Admin) Clock(ctx context.Context, tenant string) (emulator.ClockState, error) {
	var st emulator.ClockState
	err := a.call(ctx, http.MethodGet, tenantPath(tenant, "/clock"), nil, &st)
	return st, err
}

// SetClock changes a tenant's virtual clock and returns its new state.
func (a *Admin) SetClock(ctx context.Context, tenant string, c ClockChange) (emulator.ClockState, error) {
	var st emulator.ClockState
	err := a.call(ctx, http.MethodPost, tenantPath(tenant, "/clock"), c, &st)
	return st, err
}

// SetFault injects a fault at one of a tenant's endpoints (or "*").
func (a *Admin) SetFault(ctx context.Context, tenant string, f emulator.Fault) error {
	return a.call(ctx, http.MethodPost, tenantPath(tenant, "/faults"), f, nil)
}

// Faults lists a tenant's faults.
func (a *Admin) Faults(ctx context.Context, tenant string) ([]emulator.Fault, error) {
	var fs []emulator.Fault
	err := a.call(ctx, http.MethodGet, tenantPath(tenant, "/faults"), nil, &fs)
	return fs, err
}

// ClearFaults clears one endpoint's fault, or every fault when endpoint is
// empty.
func (a *Admin) ClearFaults(ctx context.Context, tenant, endpoint string) error {
	p := tenantPath(tenant, "/faults")
	if endpoint != "" {
		p += "/" + url.PathEscape(endpoint)
	}
	return a.call(ctx, http.MethodDelete, p, nil, nil)
}

// Revoke revokes a token (JTI), a grant with its exchanged descendants
// (GrantID), or every token a client holds or acts in (ClientID).
func (a *Admin) Revoke(ctx context.Context, tenant string, r emulator.Revocation) error {
	return a.call(ctx, http.MethodPost, tenantPath(tenant, "/revoke"), r, nil)
}

// CreateTenant creates a tenant from its configuration as a JSON object
// (the names of the YAML configuration; docs/ADMIN.md, "Tenants").
func (a *Admin) CreateTenant(ctx context.Context, config json.RawMessage) error {
	return a.call(ctx, http.MethodPost, "/admin/v1/tenants", config, nil)
}

// DeleteTenant removes a tenant.
func (a *Admin) DeleteTenant(ctx context.Context, tenant string) error {
	return a.call(ctx, http.MethodDelete, tenantPath(tenant, ""), nil, nil)
}

// Reset returns every tenant to its configured state and removes tenants
// created at runtime; the public base URL stays.
func (a *Admin) Reset(ctx context.Context) error {
	return a.call(ctx, http.MethodPost, "/admin/v1/reset", map[string]any{}, nil)
}

// PublicBaseURL is the base URL the issuers are built on.
func (a *Admin) PublicBaseURL(ctx context.Context) (string, error) {
	var out struct {
		URL string `json:"url"`
	}
	err := a.call(ctx, http.MethodGet, "/admin/v1/public-base-url", nil, &out)
	return out.URL, err
}

// SetPublicBaseURL rebuilds every issuer on a new base URL. Tokens issued
// under the old issuers no longer verify.
func (a *Admin) SetPublicBaseURL(ctx context.Context, base string) error {
	base = strings.TrimSuffix(base, "/")
	if err := a.call(ctx, http.MethodPost, "/admin/v1/public-base-url", map[string]string{"url": base}, nil); err != nil {
		return err
	}
	a.URL = base
	return nil
}

func tenantPath(tenant, rest string) string {
	return "/admin/v1/tenants/" + url.PathEscape(tenant) + rest
}

// call sends one admin API request through conformance.IdP; an error
// answer is a *conformance.AdminError.
func (a *Admin) call(ctx context.Context, method, path string, in, out any) error {
	return a.IdP.Do(ctx, method, path, in, out)
}
