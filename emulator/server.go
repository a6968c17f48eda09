// Package emulator is agentsso's identity provider: many OAuth 2.1 / OpenID
// Connect tenants in one process, built on fosite, with the test controls a
// real IdP lacks (virtual clocks, minting, key games, fault injection) on a
// separate admin API, and an audit log of every decision.
//
// A Server is an http.Handler for the public endpoints; AdminHandler is
// the admin API. Tests mount both with httptest (see emulatortest),
// cmd/agentsso serves them, the container image ships them.
package emulator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentsso/agentsso/emulator/audit"
	"github.com/agentsso/agentsso/softhsm"
)

// Server is the multi-tenant IdP.
type Server struct {
	cfg   Config
	keys  softhsm.Store
	audit Auditor
	now   func() time.Time
	http  *http.Client

	base atomic.Pointer[string]

	mu      sync.RWMutex
	tenants map[string]*tenant

	kidRec kidRecord

	secretsMu sync.Mutex
	secrets   map[string]string // "tenant/client" -> generated secret

	mux      *http.ServeMux
	adminMux *http.ServeMux
	admin    adminState // admin API bookkeeping (admin_state.go)
	mtls     mtlsState  // RFC 8705 listener, client CAs, certificates seen (mtls.go)
}

// Auditor receives one event per request and decision. *audit.Log is one.
type Auditor interface {
	Write(audit.Event) (int64, error)
}

type discardAuditor struct{}

func (discardAuditor) Write(audit.Event) (int64, error) { return 0, nil }

// Option sets a code-only dependency of the Server.
type Option func(*Server) error

// WithKeyStore sets the key custody backend (default: in memory, under
// {state_dir}/keys/memory when a state directory is set).
func WithKeyStore(ks softhsm.Store) Option {
	return func(s *Server) error { s.keys = ks; return nil }
}

// WithAuditor sets where audit events go (default: nowhere).
func WithAuditor(a Auditor) Option {
	return func(s *Server) error { s.audit = a; return nil }
}

// WithRealClock replaces real time, under every tenant's virtual clock.
func WithRealClock(now func() time.Time) Option {
	return func(s *Server) error { s.now = now; return nil }
}

// WithHTTPClient sets the client used to fetch client JWKS and client ID
// metadata documents.
func WithHTTPClient(c *http.Client) Option {
	return func(s *Server) error { s.http = c; return nil }
}

// New builds a Server from a validated configuration. cfg.PublicBaseURL
// must be known (callers that bind port 0 set it once the listener is
// bound, or later through SetPublicBaseURL).
func New(ctx context.Context, cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, now: time.Now, audit: discardAuditor{}, tenants: map[string]*tenant{}, secrets: map[string]string{}}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.http == nil {
		s.http = &http.Client{Timeout: 5 * time.Second}
	}
	base := cfg.PublicBaseURL
	if base == "" {
		scheme := "http"
		if cfg.TLS {
			scheme = "https"
		}
		base = scheme + "://" + cfg.Addr
	}
	s.base.Store(&base)
	if s.keys == nil {
		dir := ""
		if cfg.StateDir != "" {
			dir = filepath.Join(cfg.StateDir, "keys", "memory")
		}
		ks, err := softhsm.NewMemory(dir)
		if err != nil {
			return nil, err
		}
		s.keys = ks
	}
	if err := s.loadSecrets(); err != nil {
		return nil, err
	}
	for _, tc := range cfg.Tenants {
		t, err := newTenant(ctx, s, tc)
		if err != nil {
			return nil, err
		}
		s.tenants[tc.Name] = t
	}
	s.routes()
	s.adminRoutes()
	return s, nil
}

func (s *Server) baseURL() string { return *s.base.Load() }

// PublicBaseURL is the base every issuer is built on.
func (s *Server) PublicBaseURL() string { return s.baseURL() }

// SetPublicBaseURL changes the base every issuer is built on, for example
// once a container's mapped port is known. Codes and refresh tokens stay
// valid; access tokens issued under the old issuer no longer verify.
func (s *Server) SetPublicBaseURL(base string) error {
	c := Config{PublicBaseURL: base, Tenants: []TenantConfig{{Name: "x"}}}
	if err := c.Validate(); err != nil {
		return err
	}
	s.base.Store(&c.PublicBaseURL)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, t := range s.tenants {
		t.build(c.PublicBaseURL)
	}
	return nil
}

// Issuer returns a tenant's issuer identifier.
func (s *Server) Issuer(tenant string) string { return s.baseURL() + "/t/" + tenant }

// Tenants lists the tenant names, sorted.
func (s *Server) Tenants() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.tenants))
	for n := range s.tenants {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// KeyBackend names the key custody backend.
func (s *Server) KeyBackend() string { return s.keys.Backend() }

// ActiveKID returns a tenant's current signing kid.
func (s *Server) ActiveKID(tenant string) (string, error) {
	t := s.tenant(tenant)
	if t == nil {
		return "", fmt.Errorf("emulator: no tenant %q", tenant)
	}
	k, err := t.activeKey()
	if err != nil {
		return "", err
	}
	return k.KID, nil
}

// ClientSecret returns a client's secret (configured or generated), so
// that the CLI can print what a target must be configured with.
func (s *Server) ClientSecret(tenant, clientID string) (string, error) {
	t := s.tenant(tenant)
	if t == nil {
		return "", fmt.Errorf("emulator: no tenant %q", tenant)
	}
	c := t.client(clientID)
	if c == nil {
		return "", fmt.Errorf("emulator: tenant %s has no client %q", tenant, clientID)
	}
	return c.cfg.Secret, nil
}

// Clock returns a tenant's virtual clock, or nil when there is no such
// tenant. Tests use it to freeze, advance or skew the tenant's time.
func (s *Server) Clock(tenant string) *Clock {
	t := s.tenant(tenant)
	if t == nil {
		return nil
	}
	return t.clock
}

func (s *Server) tenant(name string) *tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tenants[name]
}

// Close releases nothing it does not own: the key store and the audit log
// belong to the caller.
func (s *Server) Close() error { return nil }

// --- generated secrets, kept in the state directory ---

func (s *Server) secretsPath() string {
	if s.cfg.StateDir == "" {
		return ""
	}
	return filepath.Join(s.cfg.StateDir, "secrets.json")
}

func (s *Server) loadSecrets() error {
	p := s.secretsPath()
	if p == "" {
		return nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &s.secrets); err != nil {
		return fmt.Errorf("emulator: %s: %w (delete it to generate new secrets)", p, err)
	}
	return nil
}

// secret returns the generated secret of a client that has none
// configured, creating and persisting it on first use.
func (s *Server) secret(tenant, client string) string {
	s.secretsMu.Lock()
	defer s.secretsMu.Unlock()
	k := tenant + "/" + client
	if v, ok := s.secrets[k]; ok {
		return v
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	s.secrets[k] = v
	if p := s.secretsPath(); p != "" {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			out, _ := json.MarshalIndent(s.secrets, "", "  ")
			_ = os.WriteFile(p, out, 0o600)
		}
	}
	return v
}
