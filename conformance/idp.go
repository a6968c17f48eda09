package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// IdP drives an agentsso emulator through its admin API, so the harness
// works the same against an in-process emulator and one that runs
// elsewhere.
type IdP struct {
	// URL is the public base URL; AdminURL the admin API's.
	URL, AdminURL string
	// AdminToken, when the admin API requires one.
	AdminToken string
	HTTP       *http.Client
}

// Issuer is a tenant's issuer.
func (p *IdP) Issuer(tenant string) string { return strings.TrimSuffix(p.URL, "/") + "/t/" + tenant }

// MintResult is what the admin API returns for a mint.
type MintResult struct {
	Token  string         `json:"token"`
	Claims map[string]any `json:"claims"`
	Header map[string]any `json:"header"`
}

// Mint mints a token for a tenant.
func (p *IdP) Mint(ctx context.Context, tenant string, m MintRequest) (*MintResult, error) {
	var out MintResult
	if err := p.Do(ctx, http.MethodPost, "/admin/v1/tenants/"+url.PathEscape(tenant)+"/mint", m, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeJTI revokes a token by its jti.
func (p *IdP) RevokeJTI(ctx context.Context, tenant, jti string) error {
	return p.Do(ctx, http.MethodPost, "/admin/v1/tenants/"+url.PathEscape(tenant)+"/revoke", map[string]string{"jti": jti}, nil)
}

// KeyInfo is one key as the admin API lists it.
type KeyInfo struct {
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	Backend   string `json:"backend"`
	Active    bool   `json:"active"`
	Published bool   `json:"published"`
	Withdrawn bool   `json:"withdrawn"`
}

// Keys lists a tenant's keys.
func (p *IdP) Keys(ctx context.Context, tenant string) ([]KeyInfo, error) {
	var out []KeyInfo
	if err := p.Do(ctx, http.MethodGet, "/admin/v1/tenants/"+url.PathEscape(tenant)+"/keys", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// KeyAction rotates keys (kid empty, action "rotate"), or withdraws or
// hides/publishes a kid.
func (p *IdP) KeyAction(ctx context.Context, tenant, action, kid string) error {
	base := "/admin/v1/tenants/" + url.PathEscape(tenant) + "/keys"
	switch action {
	case "rotate":
		return p.Do(ctx, http.MethodPost, base+"/rotate", map[string]any{}, nil)
	case "withdraw":
		return p.Do(ctx, http.MethodPost, base+"/"+url.PathEscape(kid)+"/withdraw", map[string]any{}, nil)
	case "hide":
		return p.Do(ctx, http.MethodPost, base+"/"+url.PathEscape(kid)+"/publish", map[string]any{"published": false}, nil)
	case "publish":
		return p.Do(ctx, http.MethodPost, base+"/"+url.PathEscape(kid)+"/publish", map[string]any{"published": true}, nil)
	}
	return fmt.Errorf("unknown key action %q", action)
}

// Fault injects a failure at one of a tenant's endpoints (docs/ADMIN.md).
type Fault struct {
	Endpoint string `json:"endpoint" yaml:"endpoint"`
	Mode     string `json:"mode" yaml:"mode"`
	Status   int    `json:"status,omitempty" yaml:"status"`
	Delay    string `json:"delay,omitempty" yaml:"delay"`
	Count    int    `json:"count,omitempty" yaml:"count"`
}

// SetFault injects a fault.
func (p *IdP) SetFault(ctx context.Context, tenant string, f Fault) error {
	return p.Do(ctx, http.MethodPost, "/admin/v1/tenants/"+url.PathEscape(tenant)+"/faults", f, nil)
}

// ClearFaults removes every fault of a tenant.
func (p *IdP) ClearFaults(ctx context.Context, tenant string) error {
	return p.Do(ctx, http.MethodDelete, "/admin/v1/tenants/"+url.PathEscape(tenant)+"/faults", nil, nil)
}

// ResetTenant restores a tenant's configured state.
func (p *IdP) ResetTenant(ctx context.Context, tenant string) error {
	return p.Do(ctx, http.MethodPost, "/admin/v1/tenants/"+url.PathEscape(tenant)+"/reset", map[string]any{}, nil)
}

// TenantNames lists the tenants.
func (p *IdP) TenantNames(ctx context.Context) ([]string, error) {
	var raw json.RawMessage
	if err := p.Do(ctx, http.MethodGet, "/admin/v1/tenants", nil, &raw); err != nil {
		return nil, err
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		var wrapped struct {
			Tenants []struct {
				Name string `json:"name"`
			} `json:"tenants"`
		}
		if err2 := json.Unmarshal(raw, &wrapped); err2 != nil {
			return nil, fmt.Errorf("admin API: unexpected tenant list: %w", err)
		}
		list = wrapped.Tenants
	}
	var out []string
	for _, t := range list {
		out = append(out, t.Name)
	}
	return out, nil
}

// AdminError is an error answer of the admin API.
type AdminError struct {
	Status int
	Code   string
	Desc   string
	Path   string
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("admin API %s: HTTP %d %s: %s", e.Path, e.Status, e.Code, e.Desc)
}

// Do sends one admin API request: in (if any) as JSON, out (if any)
// decoded from the answer; an error answer is an *AdminError.
func (p *IdP) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(p.AdminURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+p.AdminToken)
	}
	hc := p.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w (is the emulator's admin API at %s?)", path, err, p.AdminURL)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		_ = json.Unmarshal(b, &e)
		return &AdminError{Status: resp.StatusCode, Code: e.Error, Desc: e.Desc, Path: path}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("admin API %s: %w", path, err)
		}
	}
	return nil
}
