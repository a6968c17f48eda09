package emulator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agentsso/agentsso/emulator/audit"
)

// The admin operations below are the Go side of the admin API (admin.go
// serves them over HTTP, docs/ADMIN.md documents both). The harness and
// the testcontainers module may call them directly. They are safe for
// concurrent use; changes of configuration are serialised.

// Errors of the admin operations. Test for them with errors.Is.
var (
	// ErrNotFound is matched by a *NotFoundError: the tenant, client,
	// user or key named does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: something with that name exists already.
	ErrExists = errors.New("already exists")
	// ErrConflict: the operation conflicts with the current state (for
	// example deleting a tenant's only key).
	ErrConflict = errors.New("conflicts with the current state")
	// ErrNoAuditFile: the emulator writes no audit file (audit.path and
	// state_dir are unset, or audit is disabled).
	ErrNoAuditFile = errors.New("no audit file is configured: set audit.path (AGENTSSO_AUDIT_PATH) or state_dir")
)

// NotFoundError names what was not found. It matches ErrNotFound.
type NotFoundError struct {
	Kind   string // tenant, client, user, key
	Name   string
	Tenant string // empty for a tenant
	Hint   string // how to find what exists
}

func (e *NotFoundError) Error() string {
	s := fmt.Sprintf("%s %q not found", e.Kind, e.Name)
	if e.Tenant != "" {
		s = fmt.Sprintf("%s %q not found in tenant %s", e.Kind, e.Name, e.Tenant)
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// Is reports whether target is ErrNotFound.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func noTenant(name string) error {
	return &NotFoundError{Kind: "tenant", Name: name, Hint: "GET /admin/v1/tenants lists the tenants"}
}

// adminTenant finds a tenant or returns a *NotFoundError.
func (s *Server) adminTenant(name string) (*tenant, error) {
	if t := s.tenant(name); t != nil {
		return t, nil
	}
	return nil, noTenant(name)
}

// adminEvent writes an audit event for an admin change.
func (s *Server) adminEvent(t *tenant, e audit.Event) {
	if e.Decision == "" {
		e.Decision = audit.DecisionAllow
	}
	if t != nil {
		e.Tenant = t.name
		e.Time = t.clock.Now()
	}
	_, _ = s.audit.Write(e)
}

// --- tenants ---

// TenantInfo summarises a tenant.
type TenantInfo struct {
	Name   string `json:"name"`
	Issuer string `json:"issuer"`
	// Configured is true for a tenant of the configuration (a full reset
	// restores it) and false for one created at runtime (a full reset
	// removes it).
	Configured bool `json:"configured"`
}

// TenantInfos lists the tenants, sorted by name.
func (s *Server) TenantInfos() []TenantInfo {
	var out []TenantInfo
	for _, n := range s.Tenants() {
		_, conf := s.configuredTenant(n)
		out = append(out, TenantInfo{Name: n, Issuer: s.Issuer(n), Configured: conf})
	}
	return out
}

// configuredTenant returns a copy of the tenant's configuration as the
// emulator was started with it.
func (s *Server) configuredTenant(name string) (TenantConfig, bool) {
	for _, tc := range s.cfg.Tenants {
		if tc.Name == name {
			return cloneTenantConfig(tc), true
		}
	}
	return TenantConfig{}, false
}

// TenantConfig returns a tenant's current configuration, with defaults
// filled in and generated client secrets shown.
func (s *Server) TenantConfig(name string) (TenantConfig, error) {
	t, err := s.adminTenant(name)
	if err != nil {
		return TenantConfig{}, err
	}
	return t.effectiveConfig(), nil
}

// CreateTenant adds a tenant at runtime, validated by the rules of the
// configuration file. It is an independent issuer at once; a full Reset
// removes it again (unless the configuration has a tenant of that name).
func (s *Server) CreateTenant(ctx context.Context, tc TenantConfig) (TenantConfig, error) {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	valid, err := s.validateTenant(cloneTenantConfig(tc), "")
	if err != nil {
		return TenantConfig{}, err
	}
	if s.tenant(valid.Name) != nil {
		return TenantConfig{}, fmt.Errorf("tenant %q %w: PUT /admin/v1/tenants/%s replaces its configuration, DELETE removes it", valid.Name, ErrExists, valid.Name)
	}
	t, err := newTenant(ctx, s, valid)
	if err != nil {
		return TenantConfig{}, err
	}
	s.mu.Lock()
	s.tenants[valid.Name] = t
	s.mu.Unlock()
	if _, conf := s.configuredTenant(valid.Name); !conf {
		if s.admin.created == nil {
			s.admin.created = map[string]TenantConfig{}
		}
		s.admin.created[valid.Name] = cloneTenantConfig(valid)
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.tenant.create"})
	return t.effectiveConfig(), nil
}

// UpdateTenant replaces a tenant's configuration (clients, users,
// scopes, lifetimes, ...). Clients it removes or disables are deprovisioned
// as by DeleteClient and DisableClient. A change of lifetimes rebuilds the
// tenant's OAuth provider, which invalidates outstanding authorization
// codes and refresh tokens.
func (s *Server) UpdateTenant(tc TenantConfig) (TenantConfig, error) {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	t, err := s.adminTenant(tc.Name)
	if err != nil {
		return TenantConfig{}, err
	}
	valid, err := s.validateTenant(cloneTenantConfig(tc), "")
	if err != nil {
		return TenantConfig{}, err
	}
	if err := s.installConfig(t, valid, "tenant configuration replaced"); err != nil {
		return TenantConfig{}, err
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.tenant.update"})
	return t.effectiveConfig(), nil
}

// DeleteTenant removes a tenant: its endpoints answer 404 at once. The
// keys of a tenant created at runtime are deleted from the key store; a
// configured tenant keeps its keys, so that Reset brings it back with the
// same kids.
func (s *Server) DeleteTenant(ctx context.Context, name string) error {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	t, err := s.adminTenant(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.tenants, name)
	s.mu.Unlock()
	s.adminEvent(t, audit.Event{Endpoint: "admin.tenant.delete"})
	if _, conf := s.configuredTenant(name); conf {
		return nil
	}
	delete(s.admin.created, name)
	return s.deleteTenantKeys(ctx, name)
}

func (s *Server) deleteTenantKeys(ctx context.Context, name string) error {
	ks, err := s.keys.List(ctx, name)
	if err != nil {
		return fmt.Errorf("tenant %s removed, but its keys could not be listed for deletion: %w", name, err)
	}
	var errs []error
	for _, k := range ks {
		if err := s.keys.Delete(ctx, name, k.KID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tenant %s removed, but deleting its keys failed: %w", name, err)
	}
	return nil
}

// ResetTenant returns a tenant to the state it was configured (or created
// at runtime) with: clients, users, clock, revocations, stored codes and
// refresh tokens, faults and hidden keys. Keys persist: a key rotated in
// stays, a withdrawn one is usable again. A configured tenant that was
// deleted is restored.
func (s *Server) ResetTenant(ctx context.Context, name string) error {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	base, conf := s.configuredTenant(name)
	if !conf {
		c, ok := s.admin.created[name]
		if !ok {
			return noTenant(name)
		}
		base = cloneTenantConfig(c)
	}
	t := s.tenant(name)
	if t == nil {
		nt, err := newTenant(ctx, s, base)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.tenants[name] = nt
		s.mu.Unlock()
		s.adminEvent(nt, audit.Event{Endpoint: "admin.tenant.reset"})
		return nil
	}
	if err := t.reset(ctx, base); err != nil {
		return err
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.tenant.reset"})
	return nil
}

// Reset returns the whole emulator to its configured state: tenants
// created at runtime are removed (with their keys), configured tenants
// are reset as by ResetTenant, and deleted ones restored. The public base
// URL is kept.
func (s *Server) Reset(ctx context.Context) error {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	var errs []error
	for _, name := range s.Tenants() {
		if _, conf := s.configuredTenant(name); conf {
			continue
		}
		s.mu.Lock()
		delete(s.tenants, name)
		s.mu.Unlock()
		delete(s.admin.created, name)
		if err := s.deleteTenantKeys(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, tc := range s.cfg.Tenants {
		base := cloneTenantConfig(tc)
		if t := s.tenant(tc.Name); t != nil {
			if err := t.reset(ctx, base); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		t, err := newTenant(ctx, s, base)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.mu.Lock()
		s.tenants[tc.Name] = t
		s.mu.Unlock()
	}
	s.adminEvent(nil, audit.Event{Endpoint: "admin.reset"})
	return errors.Join(errs...)
}

// reset returns the tenant to cfg (see ResetTenant).
func (t *tenant) reset(ctx context.Context, cfg TenantConfig) error {
	if err := t.setConfig(cfg); err != nil {
		return err
	}
	t.clock.Reset()
	t.rev.reset()
	t.store.reset()
	t.faults.clear()
	t.docs.reset()
	t.devices.reset() // device.go
	t.dpop.reset()
	if err := t.loadKeys(ctx); err != nil {
		return err
	}
	t.build(t.srv.baseURL())
	return nil
}

// effectiveConfig is the tenant's configuration with the secrets its
// clients really have (generated ones included).
func (t *tenant) effectiveConfig() TenantConfig {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tc := cloneTenantConfig(t.cfg)
	for i := range tc.Clients {
		if c := t.clients[tc.Clients[i].ID]; c != nil {
			tc.Clients[i].Secret = c.cfg.Secret
		}
	}
	return tc
}

// cloneTenantConfig copies the slices a change may replace elements of.
// The admin operations never modify an inner slice in place.
func cloneTenantConfig(tc TenantConfig) TenantConfig {
	tc.Scopes = slices.Clone(tc.Scopes)
	tc.Audiences = slices.Clone(tc.Audiences)
	tc.Clients = slices.Clone(tc.Clients)
	tc.Users = slices.Clone(tc.Users)
	return tc
}

// validateTenant checks a tenant configuration with the rules of the
// configuration file and fills its defaults. strip is removed from the
// start of the field names of errors (so that an error about the client
// being changed names the client's own field).
func (s *Server) validateTenant(tc TenantConfig, strip string) (TenantConfig, error) {
	c := Config{
		Addr:       s.cfg.Addr,
		AdminAddr:  s.cfg.AdminAddr,
		AdminToken: s.cfg.AdminToken,
		Keys:       s.cfg.Keys,
		Defaults:   s.cfg.Defaults,
		Tenants:    []TenantConfig{tc},
	}
	if err := c.Validate(); err != nil {
		return TenantConfig{}, rewriteConfigErrors(err, strip)
	}
	return c.Tenants[0], nil
}

// rewriteConfigErrors flattens joined configuration errors and drops the
// "tenants[0]." (and strip) prefix of their fields.
func rewriteConfigErrors(err error, strip string) error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *ConfigError
		if errors.As(e, &ce) {
			f := strings.TrimPrefix(ce.Field, "tenants[0].")
			if strip != "" {
				f = strings.TrimPrefix(f, strip)
			}
			out = append(out, &ConfigError{Field: f, Msg: ce.Msg})
			return
		}
		out = append(out, e)
	}
	walk(err)
	return errors.Join(out...)
}

// installConfig makes a validated configuration the tenant's. Clients
// that disappear or become disabled are revoked first (while their
// lifetimes still count for how long the record is kept).
func (s *Server) installConfig(t *tenant, tc TenantConfig, why string) error {
	for _, cc := range tc.Clients {
		if _, err := t.newClient(cc); err != nil {
			return err
		}
	}
	old := t.effectiveConfig()
	now := t.clock.Now()
	for _, oc := range old.Clients {
		i := slices.IndexFunc(tc.Clients, func(c ClientConfig) bool { return c.ID == oc.ID })
		switch {
		case i < 0:
			t.rev.revokeClient(oc.ID, now, "client deleted ("+why+")")
		case tc.Clients[i].Disabled && !oc.Disabled:
			t.rev.revokeClient(oc.ID, now, "client disabled ("+why+")")
		}
	}
	if err := t.setConfig(tc); err != nil {
		return err
	}
	if old.Lifetimes != tc.Lifetimes {
		t.build(s.baseURL())
	}
	return nil
}

// changeTenant applies f to a copy of the tenant's configuration,
// validates and installs the result. The caller holds s.admin.mu.
func (s *Server) changeTenant(name, strip, why string, f func(tc *TenantConfig) error) (*tenant, error) {
	t, err := s.adminTenant(name)
	if err != nil {
		return nil, err
	}
	tc := t.effectiveConfig()
	if err := f(&tc); err != nil {
		return nil, err
	}
	valid, err := s.validateTenant(tc, strip)
	if err != nil {
		return nil, err
	}
	return t, s.installConfig(t, valid, why)
}

// --- clients ---

// Clients lists a tenant's clients as configured (generated secrets
// shown).
func (s *Server) Clients(tenant string) ([]ClientConfig, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return nil, err
	}
	cs := t.effectiveConfig().Clients
	if cs == nil {
		cs = []ClientConfig{}
	}
	return cs, nil
}

// Client returns one client's configuration.
func (s *Server) Client(tenant, id string) (ClientConfig, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return ClientConfig{}, err
	}
	for _, c := range t.effectiveConfig().Clients {
		if c.ID == id {
			return c, nil
		}
	}
	return ClientConfig{}, noClient(tenant, id)
}

func noClient(tenant, id string) error {
	return &NotFoundError{Kind: "client", Name: id, Tenant: tenant, Hint: "GET /admin/v1/tenants/" + tenant + "/clients lists them"}
}

type upsertMode int

const (
	modeUpsert upsertMode = iota
	modeCreate            // fail with ErrExists if present
	modeUpdate            // fail with ErrNotFound if absent
)

// CreateClient registers a new client (an agent) in a tenant. A
// confidential client without a secret gets a generated one, returned.
func (s *Server) CreateClient(tenant string, cc ClientConfig) (ClientConfig, error) {
	return s.putClient(tenant, cc, modeCreate)
}

// UpsertClient creates a client or replaces its configuration. A client
// that becomes disabled is deprovisioned as by DisableClient.
func (s *Server) UpsertClient(tenant string, cc ClientConfig) (ClientConfig, error) {
	return s.putClient(tenant, cc, modeUpsert)
}

func (s *Server) putClient(tenant string, cc ClientConfig, mode upsertMode) (ClientConfig, error) {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	var strip string
	t, err := s.changeTenant(tenant, "", "admin API", func(tc *TenantConfig) error {
		i, err := putItem(&tc.Clients, cc, func(c ClientConfig) bool { return c.ID == cc.ID }, mode,
			func() error {
				return fmt.Errorf("client %q %w in tenant %s: PUT .../clients/%s replaces it", cc.ID, ErrExists, tenant, cc.ID)
			},
			func() error { return noClient(tenant, cc.ID) })
		strip = fmt.Sprintf("clients[%d].", i)
		return err
	})
	if err != nil {
		return ClientConfig{}, stripField(err, strip)
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.client.put", ClientID: cc.ID})
	return s.Client(tenant, cc.ID)
}

// putItem creates, replaces or upserts item in list, where match finds an
// existing one; exists and missing make the errors of a create that finds
// one and an update that finds none. It returns the item's index.
func putItem[T any](list *[]T, item T, match func(T) bool, mode upsertMode, exists, missing func() error) (int, error) {
	i := slices.IndexFunc(*list, match)
	switch {
	case i >= 0 && mode == modeCreate:
		return i, exists()
	case i < 0 && mode == modeUpdate:
		return i, missing()
	case i >= 0:
		(*list)[i] = item
	default:
		i = len(*list)
		*list = append(*list, item)
	}
	return i, nil
}

// stripField drops prefix from the fields of configuration errors.
func stripField(err error, prefix string) error {
	if prefix == "" {
		return err
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	return rewriteConfigErrors(err, prefix)
}

// DeleteClient removes a client: it can no longer authenticate, and every
// token it holds or acts in is inactive at once. The revocation record
// stays until the longest token it could have held has expired.
func (s *Server) DeleteClient(tenant, id string) error {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	t, err := s.changeTenant(tenant, "", "admin API", func(tc *TenantConfig) error {
		i := slices.IndexFunc(tc.Clients, func(c ClientConfig) bool { return c.ID == id })
		if i < 0 {
			return noClient(tenant, id)
		}
		tc.Clients = slices.Delete(tc.Clients, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.client.delete", ClientID: id})
	return nil
}

// DisableClient deprovisions a client without deleting it: it can no
// longer authenticate, and every token it holds or acts in is inactive
// at once. Disabling a disabled client changes nothing.
func (s *Server) DisableClient(tenant, id string) error {
	return s.setClientDisabled(tenant, id, true)
}

// EnableClient lets a disabled client authenticate again. Tokens issued
// before it was disabled stay inactive; tokens issued after it was enabled
// are active, even within the second of the disabling.
func (s *Server) EnableClient(tenant, id string) error {
	return s.setClientDisabled(tenant, id, false)
}

func (s *Server) setClientDisabled(tenant, id string, disabled bool) error {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	t, err := s.changeTenant(tenant, "", "admin API", func(tc *TenantConfig) error {
		i := slices.IndexFunc(tc.Clients, func(c ClientConfig) bool { return c.ID == id })
		if i < 0 {
			return noClient(tenant, id)
		}
		tc.Clients[i].Disabled = disabled
		return nil
	})
	if err != nil {
		return err
	}
	ep := "admin.client.enable"
	if disabled {
		ep = "admin.client.disable"
	}
	s.adminEvent(t, audit.Event{Endpoint: ep, ClientID: id})
	return nil
}

// --- users ---

// Users lists a tenant's scripted users.
func (s *Server) Users(tenant string) ([]UserConfig, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return nil, err
	}
	us := t.effectiveConfig().Users
	if us == nil {
		us = []UserConfig{}
	}
	return us, nil
}

// User returns one scripted user.
func (s *Server) User(tenant, username string) (UserConfig, error) {
	us, err := s.Users(tenant)
	if err != nil {
		return UserConfig{}, err
	}
	for _, u := range us {
		if u.Username == username {
			return u, nil
		}
	}
	return UserConfig{}, noUser(tenant, username)
}

func noUser(tenant, username string) error {
	return &NotFoundError{Kind: "user", Name: username, Tenant: tenant, Hint: "GET /admin/v1/tenants/" + tenant + "/users lists them"}
}

// CreateUser adds a scripted user to a tenant.
func (s *Server) CreateUser(tenant string, u UserConfig) (UserConfig, error) {
	return s.putUser(tenant, u, modeCreate)
}

// UpsertUser creates a scripted user or replaces it.
func (s *Server) UpsertUser(tenant string, u UserConfig) (UserConfig, error) {
	return s.putUser(tenant, u, modeUpsert)
}

func (s *Server) putUser(tenant string, u UserConfig, mode upsertMode) (UserConfig, error) {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	strip := ""
	t, err := s.changeTenant(tenant, "", "admin API", func(tc *TenantConfig) error {
		i, err := putItem(&tc.Users, u, func(x UserConfig) bool { return x.Username == u.Username }, mode,
			func() error {
				return fmt.Errorf("user %q %w in tenant %s: PUT .../users/%s replaces it", u.Username, ErrExists, tenant, u.Username)
			},
			func() error { return noUser(tenant, u.Username) })
		strip = fmt.Sprintf("users[%d].", i)
		return err
	})
	if err != nil {
		return UserConfig{}, stripField(err, strip)
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.user.put", Sub: u.Subject})
	return s.User(tenant, u.Username)
}

// DeleteUser removes a scripted user. Tokens already issued for the user
// stay valid until they expire (revoke their grants to end them sooner).
func (s *Server) DeleteUser(tenant, username string) error {
	s.admin.mu.Lock()
	defer s.admin.mu.Unlock()
	t, err := s.changeTenant(tenant, "", "admin API", func(tc *TenantConfig) error {
		i := slices.IndexFunc(tc.Users, func(x UserConfig) bool { return x.Username == username })
		if i < 0 {
			return noUser(tenant, username)
		}
		tc.Users = slices.Delete(tc.Users, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.user.delete"})
	return nil
}

// --- revocation ---

// Revocation names what to revoke: a token by its jti, a grant (and every
// token descending from it), or a client (every token it holds or acts
// in, without disabling it). At least one is required.
type Revocation struct {
	JTI      string `json:"jti,omitempty"`
	GrantID  string `json:"grant_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	// Reason is recorded with a grant or client revocation.
	Reason string `json:"reason,omitempty"`
}

// Revoke revokes tokens of a tenant as of its clock's now.
func (s *Server) Revoke(tenant string, r Revocation) error {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return err
	}
	if r.JTI == "" && r.GrantID == "" && r.ClientID == "" {
		return badField("jti", "nothing to revoke: set jti, grant_id or client_id")
	}
	reason := r.Reason
	if reason == "" {
		reason = "revoked through the admin API"
	}
	now := t.clock.Now()
	if r.JTI != "" {
		t.rev.revokeJTI(r.JTI, now.Add(t.maxLifetime()).Unix(), now)
	}
	if r.GrantID != "" {
		t.rev.revokeGrant(r.GrantID, now, reason)
	}
	if r.ClientID != "" {
		t.rev.revokeClient(r.ClientID, now, reason)
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.revoke", Jti: r.JTI, GrantID: r.GrantID, ClientID: r.ClientID})
	return nil
}

// --- faults ---

// faultEndpoints are the endpoint names a Fault may target.
var faultEndpoints = []string{"*", "discovery", "jwks", "token", "authorize", "introspect", "revoke", "userinfo", "register", "device_authorization", "device"}

// maxFaultDelay bounds a slow fault.
const maxFaultDelay = 10 * time.Minute

// Faults lists a tenant's injected faults.
func (s *Server) Faults(tenant string) ([]Fault, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return nil, err
	}
	fs := t.faults.list()
	slices.SortFunc(fs, func(a, b Fault) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return fs, nil
}

// SetFault injects a fault into one endpoint of a tenant (or all, "*"),
// replacing the endpoint's previous fault.
func (s *Server) SetFault(tenant string, f Fault) (Fault, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return Fault{}, err
	}
	if err := validateFault(&f); err != nil {
		return Fault{}, err
	}
	t.faults.set(f)
	s.adminEvent(t, audit.Event{Endpoint: "admin.fault.set", Extra: map[string]any{"fault_endpoint": f.Endpoint, "mode": f.Mode}})
	f.used = 0
	return f, nil
}

func validateFault(f *Fault) error {
	if !slices.Contains(faultEndpoints, f.Endpoint) {
		return badField("endpoint", "%q: want one of %s", f.Endpoint, strings.Join(faultEndpoints, ", "))
	}
	if !faultModes[f.Mode] {
		return badField("mode", "%q: want unavailable, error, ratelimit, slow or malformed", f.Mode)
	}
	switch {
	case f.Mode == "error" && f.Status == 0:
		f.Status = 500
	case f.Mode == "error" && (f.Status < 400 || f.Status > 599):
		return badField("status", "%d: want an HTTP error status from 400 to 599", f.Status)
	case f.Mode != "error" && f.Status != 0:
		return badField("status", "applies only to mode error (mode %s has its own status)", f.Mode)
	}
	switch {
	case f.Mode == "slow" && f.Delay == "":
		return badField("delay", "mode slow needs a delay, e.g. \"2s\"")
	case f.Mode != "slow" && f.Delay != "":
		return badField("delay", "applies only to mode slow")
	case f.Mode == "slow":
		d, err := parseDuration("delay", f.Delay)
		if err != nil {
			return err
		}
		if d <= 0 || d > maxFaultDelay {
			return badField("delay", "%s: want more than 0 and at most 10m", d)
		}
		f.delay = d
	}
	if f.Count < 0 {
		return badField("count", "%d: want 0 (until cleared) or how many requests the fault hits", f.Count)
	}
	f.used = 0
	return nil
}

// ClearFaults removes a tenant's fault for endpoint, or all its faults
// when endpoint is empty. Removing a fault that is not set is
// ErrNotFound.
func (s *Server) ClearFaults(tenant, endpoint string) error {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return err
	}
	if endpoint == "" {
		t.faults.clear()
	} else {
		t.faults.mu.Lock()
		_, ok := t.faults.m[endpoint]
		delete(t.faults.m, endpoint)
		t.faults.mu.Unlock()
		if !ok {
			return &NotFoundError{Kind: "fault for endpoint", Name: endpoint, Tenant: tenant, Hint: "GET .../faults lists them"}
		}
	}
	s.adminEvent(t, audit.Event{Endpoint: "admin.fault.clear", Extra: map[string]any{"fault_endpoint": endpoint}})
	return nil
}

// --- audit ---

// AuditFile is the audit log file the emulator is configured with, as
// cmd/agentsso opens it: audit.path, else {state_dir}/audit.jsonl, else
// none ("").
func (s *Server) AuditFile() string {
	switch {
	case s.cfg.Audit.Disabled:
		return ""
	case s.cfg.Audit.Path != "":
		return s.cfg.Audit.Path
	case s.cfg.StateDir != "":
		return filepath.Join(s.cfg.StateDir, "audit.jsonl")
	}
	return ""
}

// AuditPage reads a page of audit events from the audit file.
func (s *Server) AuditPage(q audit.Query) (audit.Page, error) {
	p := s.AuditFile()
	if p == "" {
		return audit.Page{}, ErrNoAuditFile
	}
	page, err := audit.Read(p, q)
	if errors.Is(err, os.ErrNotExist) {
		return audit.Page{}, fmt.Errorf("%w (the configured file %s does not exist: is the audit log open?)", ErrNoAuditFile, p)
	}
	return page, err
}
