package emulator

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the emulator's whole configuration: plain, serialisable
// settings. cmd/agentsso fills it from a YAML file and AGENTSSO_*
// environment variables; tests build it in Go or start from
// DefaultConfig.
type Config struct {
	// PublicBaseURL is the scheme://host[:port] clients reach the emulator
	// at; every issuer is {PublicBaseURL}/t/{tenant}. Empty: derived from
	// the listener's address once it is bound.
	PublicBaseURL string `yaml:"public_base_url" mapstructure:"public_base_url"`
	// Addr is the public listener (HOST:PORT; port 0 picks a free port).
	Addr string `yaml:"addr" mapstructure:"addr"`
	// AdminAddr is the admin API listener.
	AdminAddr string `yaml:"admin_addr" mapstructure:"admin_addr"`
	// AdminToken is required as a bearer token on the admin API; it must be
	// set when AdminAddr is not a loopback address.
	AdminToken string `yaml:"admin_token" mapstructure:"admin_token"`
	// TLS serves HTTPS with a certificate from a local CA created under the
	// state directory (exported as ca.pem).
	TLS bool `yaml:"tls" mapstructure:"tls"`
	// MTLSAddr is the mutual-TLS listener (RFC 8705; HOST:PORT, port 0
	// picks a free port). Empty: no mTLS listener. It serves the token,
	// introspection, revocation and userinfo endpoints (Server.MTLSHandler)
	// over HTTPS, asking every client for a certificate, and discovery
	// advertises them as mtls_endpoint_aliases.
	MTLSAddr string `yaml:"mtls_addr,omitempty" mapstructure:"mtls_addr"`
	// MTLSBaseURL is the https://host[:port] clients reach the mTLS
	// listener at. Empty: https://{mtls_addr} once it is bound.
	MTLSBaseURL string `yaml:"mtls_base_url,omitempty" mapstructure:"mtls_base_url"`
	// StateDir keeps what must survive a restart: generated secrets, keys
	// of the memory backend, the TLS CA, the audit log. Empty: nothing is
	// kept and the audit log is off unless Audit.Path is set.
	StateDir string `yaml:"state_dir" mapstructure:"state_dir"`

	Audit    AuditConfig    `yaml:"audit" mapstructure:"audit"`
	Keys     KeysConfig     `yaml:"keys" mapstructure:"keys"`
	Defaults LifetimeConfig `yaml:"defaults" mapstructure:"defaults"`
	Tenants  []TenantConfig `yaml:"tenants" mapstructure:"tenants"`
}

// AuditConfig sets where audit events go.
type AuditConfig struct {
	// Path of the JSON-lines file. Empty: {state_dir}/audit.jsonl when a
	// state directory is set, else no audit file.
	Path string `yaml:"path" mapstructure:"path"`
	// Disabled turns the audit log off.
	Disabled bool `yaml:"disabled" mapstructure:"disabled"`
	// SyncInterval is how often the file is fsynced (default 200ms).
	SyncInterval time.Duration `yaml:"sync_interval" mapstructure:"sync_interval"`
}

// KeysConfig selects the key custody backend. The emulator itself only
// consumes a softhsm.Store; cmd/agentsso opens the backend named here.
type KeysConfig struct {
	// Backend is auto (SoftHSM2 when installed, memory otherwise),
	// memory, pkcs11 or tpm.
	Backend string `yaml:"backend" mapstructure:"backend"`
	// Alg is the default signing algorithm of a tenant (ES256).
	Alg    string       `yaml:"alg" mapstructure:"alg"`
	PKCS11 PKCS11Config `yaml:"pkcs11" mapstructure:"pkcs11"`
	TPM    TPMConfig    `yaml:"tpm" mapstructure:"tpm"`
}

// PKCS11Config addresses a PKCS#11 token.
type PKCS11Config struct {
	// URI is an RFC 7512 pkcs11: URI; the fields below override it.
	URI        string `yaml:"uri" mapstructure:"uri"`
	Module     string `yaml:"module" mapstructure:"module"`
	TokenLabel string `yaml:"token_label" mapstructure:"token_label"`
	PIN        string `yaml:"pin" mapstructure:"pin"`
	SOPIN      string `yaml:"so_pin" mapstructure:"so_pin"`
}

// TPMConfig addresses a TPM 2.0.
type TPMConfig struct {
	// Device is a TPM device (/dev/tpmrm0) or the host:port of a running
	// swtpm. Empty: agentsso starts its own swtpm under the state dir.
	Device string `yaml:"device" mapstructure:"device"`
}

// LifetimeConfig sets token lifetimes. Zero values inherit.
type LifetimeConfig struct {
	AccessToken  time.Duration `yaml:"access_token" mapstructure:"access_token"`
	RefreshToken time.Duration `yaml:"refresh_token" mapstructure:"refresh_token"`
	IDToken      time.Duration `yaml:"id_token" mapstructure:"id_token"`
	Code         time.Duration `yaml:"code" mapstructure:"code"`
}

// TenantConfig is one issuer.
type TenantConfig struct {
	Name string `yaml:"name" mapstructure:"name"`
	// Alg is the signing algorithm of the tenant's keys (keys.alg if empty).
	Alg string `yaml:"alg" mapstructure:"alg"`
	// KeysBackend keeps this tenant's keys in another backend than
	// keys.backend (auto, memory, pkcs11 or tpm).
	KeysBackend string         `yaml:"keys_backend" mapstructure:"keys_backend"`
	Lifetimes   LifetimeConfig `yaml:"lifetimes" mapstructure:"lifetimes"`
	// Scopes is the tenant's scope catalogue. Clients may only hold scopes
	// from it ("openid" and "offline_access" are always known).
	Scopes []string `yaml:"scopes" mapstructure:"scopes"`
	// Audiences is the catalogue of resources (audiences) the tenant issues
	// tokens for.
	Audiences    []string           `yaml:"audiences" mapstructure:"audiences"`
	Registration RegistrationConfig `yaml:"registration" mapstructure:"registration"`
	Clients      []ClientConfig     `yaml:"clients" mapstructure:"clients"`
	Users        []UserConfig       `yaml:"users" mapstructure:"users"`
	// DPoP is the tenant's DPoP policy (RFC 9449; dpop.go).
	DPoP DPoPConfig `yaml:"dpop,omitempty" mapstructure:"dpop"`
	// Trust lists the tenants and external issuers whose tokens this
	// tenant accepts in the JWT bearer grant and token exchange
	// (federation.go).
	Trust []TrustConfig `yaml:"trust,omitempty" mapstructure:"trust"`
}

// RegistrationConfig switches client registration paths per tenant.
type RegistrationConfig struct {
	// Dynamic enables RFC 7591 dynamic client registration.
	Dynamic bool `yaml:"dynamic" mapstructure:"dynamic"`
	// ClientIDMetadataDocuments accepts an https (or loopback http) URL
	// as client_id and fetches the client's metadata document from it.
	ClientIDMetadataDocuments bool `yaml:"client_id_metadata_documents" mapstructure:"client_id_metadata_documents"`
}

// ClientConfig is a registered client: an agent, a gateway, an app.
type ClientConfig struct {
	ID          string `yaml:"id" mapstructure:"id"`
	Name        string `yaml:"name" mapstructure:"name"`
	Description string `yaml:"description" mapstructure:"description"`
	// Kind is informational: agent, gateway, app or user-agent.
	Kind string `yaml:"kind" mapstructure:"kind"`
	// Secret of a confidential client using client_secret_basic or
	// client_secret_post. Empty for such a client: generated once and
	// kept in the state directory.
	Secret string `yaml:"secret" mapstructure:"secret"`
	// AuthMethod: client_secret_basic (default with a secret),
	// client_secret_post, private_key_jwt or none (public client).
	AuthMethod string `yaml:"auth_method" mapstructure:"auth_method"`
	// JWKS is the client's public keys (a JSON JWK Set) for private_key_jwt.
	JWKS string `yaml:"jwks" mapstructure:"jwks"`
	// JWKSURI is where to fetch them instead.
	JWKSURI string `yaml:"jwks_uri" mapstructure:"jwks_uri"`
	// AssertionAlg is the algorithm its assertions must use (RS256).
	AssertionAlg string `yaml:"assertion_alg" mapstructure:"assertion_alg"`
	// GrantTypes it may use.
	GrantTypes   []string `yaml:"grant_types" mapstructure:"grant_types"`
	RedirectURIs []string `yaml:"redirect_uris" mapstructure:"redirect_uris"`
	// RequiredScopes are granted when a request names no scope;
	// OptionalScopes may be asked for too. Nothing else is ever granted.
	RequiredScopes []string `yaml:"required_scopes" mapstructure:"required_scopes"`
	OptionalScopes []string `yaml:"optional_scopes" mapstructure:"optional_scopes"`
	// Audiences the client may request tokens for.
	Audiences []string `yaml:"audiences" mapstructure:"audiences"`
	// DefaultAudience is used when a request names no resource or audience.
	DefaultAudience []string `yaml:"default_audience" mapstructure:"default_audience"`
	// ExchangeAudiences are the audiences this client may obtain by token
	// exchange (RFC 8693). Empty: token exchange is refused.
	ExchangeAudiences []string `yaml:"exchange_audiences" mapstructure:"exchange_audiences"`
	// Impersonate makes this client's token exchanges without an
	// actor_token impersonation (RFC 8693 section 1.1): the issued token
	// names the subject and adds no act link for the client (an act chain
	// the subject token already has is kept). Default false: such an
	// exchange is delegation, with the calling client as the actor.
	Impersonate bool `yaml:"impersonate" mapstructure:"impersonate"`
	// Introspect allows the client to call the introspection endpoint.
	Introspect bool `yaml:"introspect" mapstructure:"introspect"`
	// Lifetimes override the tenant's for this client.
	Lifetimes LifetimeConfig `yaml:"lifetimes" mapstructure:"lifetimes"`
	// Disabled clients cannot authenticate, and every token they hold or
	// act in is inactive.
	Disabled bool `yaml:"disabled" mapstructure:"disabled"`

	// DPoPBoundAccessTokens (RFC 9449 section 5.2) refuses every token
	// request of the client without a DPoP proof: all its access tokens
	// are DPoP-bound.
	DPoPBoundAccessTokens bool `yaml:"dpop_bound_access_tokens,omitempty" mapstructure:"dpop_bound_access_tokens"`
	// DPoP is the client's DPoP policy (require_nonce), on top of the
	// tenant's.
	DPoP DPoPConfig `yaml:"dpop,omitempty" mapstructure:"dpop"`

	// RFC 8705 mutual TLS (mtls.go). With auth_method tls_client_auth
	// exactly one of the subject DN or SAN fields names the certificate
	// the client must present, which must chain to the emulator's CA or to
	// TLSClientCA; self_signed_tls_client_auth needs jwks or jwks_uri
	// holding the certificate's public key (or the certificate in x5c).
	TLSClientAuthSubjectDN string `yaml:"tls_client_auth_subject_dn,omitempty" mapstructure:"tls_client_auth_subject_dn"`
	TLSClientAuthSANDNS    string `yaml:"tls_client_auth_san_dns,omitempty" mapstructure:"tls_client_auth_san_dns"`
	TLSClientAuthSANURI    string `yaml:"tls_client_auth_san_uri,omitempty" mapstructure:"tls_client_auth_san_uri"`
	TLSClientAuthSANIP     string `yaml:"tls_client_auth_san_ip,omitempty" mapstructure:"tls_client_auth_san_ip"`
	TLSClientAuthSANEmail  string `yaml:"tls_client_auth_san_email,omitempty" mapstructure:"tls_client_auth_san_email"`
	// TLSClientCA is a PEM bundle of CA certificates a tls_client_auth
	// certificate may chain to, besides the emulator's local CA.
	TLSClientCA string `yaml:"tls_client_ca,omitempty" mapstructure:"tls_client_ca"`
	// TLSClientCertificateBoundAccessTokens makes every access token of
	// the client certificate-bound (cnf.x5t#S256): it must ask for tokens
	// at the mTLS token endpoint. Tokens of clients authenticated by
	// tls_client_auth or self_signed_tls_client_auth are always bound.
	TLSClientCertificateBoundAccessTokens bool `yaml:"tls_client_certificate_bound_access_tokens,omitempty" mapstructure:"tls_client_certificate_bound_access_tokens"`

	// Context is the client's context binding policy (context.go): the
	// networks it may ask for tokens from, the zones and environments it
	// may name, and whether every token must be context-bound.
	Context *ContextPolicy `yaml:"context,omitempty" mapstructure:"context"`
	// MaxLifetime caps the lifetime of every access token the client gets,
	// by any grant (lifetime.go). Zero: no cap beyond lifetimes.
	MaxLifetime time.Duration `yaml:"max_lifetime,omitempty" mapstructure:"max_lifetime"`
	// StepUpScopes caps the lifetime of an access token that carries one
	// of these scopes, e.g. {"zendesk:tickets:write": "1m"}: the holder
	// must come back for a fresh token soon after.
	StepUpScopes map[string]time.Duration `yaml:"step_up_scopes,omitempty" mapstructure:"step_up_scopes"`
}

// UserConfig is a scripted user: it signs in and consents without a
// browser when a request names it (login_hint), or through the HTML page.
type UserConfig struct {
	Username string `yaml:"username" mapstructure:"username"`
	Password string `yaml:"password" mapstructure:"password"`
	// Subject is the stable user id in tokens (sub).
	Subject string `yaml:"subject" mapstructure:"subject"`
	Name    string `yaml:"name" mapstructure:"name"`
	Email   string `yaml:"email" mapstructure:"email"`
	// Deny makes the scripted user refuse consent (access_denied).
	Deny bool `yaml:"deny" mapstructure:"deny"`
}

// Built-in defaults.
const (
	DefaultAccessTokenLifetime  = 10 * time.Minute
	DefaultRefreshTokenLifetime = 24 * time.Hour
	DefaultIDTokenLifetime      = 10 * time.Minute
	DefaultCodeLifetime         = time.Minute
)

// Grant type names.
const (
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML is the embedded default configuration, as documented in the
// README.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// DefaultConfig parses the embedded default configuration.
func DefaultConfig() Config {
	c, err := ParseConfig(defaultYAML)
	if err != nil {
		panic("emulator: embedded default.yaml is invalid: " + err.Error())
	}
	return c
}

// ParseConfig decodes YAML strictly (unknown keys are errors) and
// validates the result.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ConfigError names the field that is wrong and how to fix it.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return "config: " + e.Field + ": " + e.Msg }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

var knownGrants = []string{GrantClientCredentials, GrantAuthorizationCode, GrantRefreshToken, GrantTokenExchange, GrantJWTBearer, GrantDeviceCode}

var knownAuthMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none", authTLSClient, authSelfSignedTLSClient}

var knownAlgs = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"}

// keyBackends: auto is SoftHSM2 (pkcs11) when it is installed, memory
// otherwise.
var keyBackends = []string{"auto", "memory", "pkcs11", "tpm"}

// Validate checks the configuration and fills defaults. Every error names
// the field and the fix.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if c.PublicBaseURL != "" {
		u, err := url.Parse(c.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			bad("public_base_url", "%q is not a base URL: want scheme://host[:port] with no path, e.g. http://127.0.0.1:8080", c.PublicBaseURL)
		}
		c.PublicBaseURL = strings.TrimSuffix(c.PublicBaseURL, "/")
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.AdminAddr == "" {
		c.AdminAddr = "127.0.0.1:8081"
	}
	for _, a := range []struct{ field, v string }{{"addr", c.Addr}, {"admin_addr", c.AdminAddr}} {
		if _, _, err := splitHostPort(a.v); err != nil {
			bad(a.field, "%q: %v (want HOST:PORT, e.g. 127.0.0.1:8080; port 0 picks a free port)", a.v, err)
		}
	}
	c.validateMTLS(bad) // mtls.go
	if !isLoopbackAddr(c.AdminAddr) && c.AdminToken == "" {
		bad("admin_token", "must be set when admin_addr (%s) is not a loopback address: set AGENTSSO_ADMIN_TOKEN or AGENTSSO_ADMIN_TOKEN_FILE", c.AdminAddr)
	}
	if c.Audit.SyncInterval < 0 {
		bad("audit.sync_interval", "must not be negative")
	}
	if c.Audit.SyncInterval == 0 {
		c.Audit.SyncInterval = 200 * time.Millisecond
	}
	if c.Keys.Backend == "" {
		c.Keys.Backend = "memory"
	}
	if !slices.Contains(keyBackends, c.Keys.Backend) {
		bad("keys.backend", "unknown %q: want auto, memory, pkcs11 or tpm", c.Keys.Backend)
	}
	if c.Keys.Alg == "" {
		c.Keys.Alg = "ES256"
	}
	if !slices.Contains(knownAlgs, c.Keys.Alg) {
		bad("keys.alg", "unknown %q: want one of %s", c.Keys.Alg, strings.Join(knownAlgs, ", "))
	}
	fillLifetimes(&c.Defaults, LifetimeConfig{AccessToken: DefaultAccessTokenLifetime, RefreshToken: DefaultRefreshTokenLifetime, IDToken: DefaultIDTokenLifetime, Code: DefaultCodeLifetime})
	checkLifetimes(bad, "defaults", c.Defaults)
	if len(c.Tenants) == 0 {
		bad("tenants", "at least one tenant is needed, e.g. tenants: [{name: acme}]")
	}
	seen := map[string]bool{}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		f := fmt.Sprintf("tenants[%d]", i)
		if !nameRE.MatchString(t.Name) {
			bad(f+".name", "%q: want 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", t.Name)
		}
		if seen[t.Name] {
			bad(f+".name", "%q is used twice: tenant names must be unique", t.Name)
		}
		seen[t.Name] = true
		if err := t.validate(f, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *TenantConfig) validate(f string, c *Config) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if t.Alg == "" {
		t.Alg = c.Keys.Alg
	}
	if !slices.Contains(knownAlgs, t.Alg) {
		bad(f+".alg", "unknown %q: want one of %s", t.Alg, strings.Join(knownAlgs, ", "))
	}
	if t.KeysBackend != "" && !slices.Contains(keyBackends, t.KeysBackend) {
		bad(f+".keys_backend", "unknown %q: want auto, memory, pkcs11 or tpm (or leave it empty for keys.backend)", t.KeysBackend)
	}
	fillLifetimes(&t.Lifetimes, c.Defaults)
	checkLifetimes(bad, f+".lifetimes", t.Lifetimes)
	scopes := map[string]bool{"openid": true, "offline_access": true, "profile": true, "email": true}
	for j, s := range t.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			bad(fmt.Sprintf("%s.scopes[%d]", f, j), "%q is not a scope token (no spaces, quotes or backslashes)", s)
		}
		scopes[s] = true
	}
	ids := map[string]bool{}
	for j := range t.Clients {
		cl := &t.Clients[j]
		cf := fmt.Sprintf("%s.clients[%d]", f, j)
		if cl.ID == "" || strings.ContainsAny(cl.ID, " :") {
			bad(cf+".id", "%q: want a non-empty id without spaces or ':'", cl.ID)
		}
		if ids[cl.ID] {
			bad(cf+".id", "%q is used twice in tenant %s", cl.ID, t.Name)
		}
		ids[cl.ID] = true
		if cl.AuthMethod == "" {
			switch {
			case cl.JWKS != "" || cl.JWKSURI != "":
				cl.AuthMethod = "private_key_jwt"
			default:
				cl.AuthMethod = "client_secret_basic"
			}
		}
		if !slices.Contains(knownAuthMethods, cl.AuthMethod) {
			bad(cf+".auth_method", "unknown %q: want one of %s", cl.AuthMethod, strings.Join(knownAuthMethods, ", "))
		}
		if cl.AuthMethod == "private_key_jwt" && cl.JWKS == "" && cl.JWKSURI == "" {
			bad(cf+".jwks", "private_key_jwt needs the client's public keys: set jwks (a JWK Set) or jwks_uri")
		}
		if cl.AssertionAlg == "" {
			cl.AssertionAlg = "RS256"
		}
		if len(cl.GrantTypes) == 0 {
			cl.GrantTypes = []string{GrantClientCredentials}
			if cl.AuthMethod == "none" {
				cl.GrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken}
			}
		}
		for k, g := range cl.GrantTypes {
			if !slices.Contains(knownGrants, g) {
				bad(fmt.Sprintf("%s.grant_types[%d]", cf, k), "unknown %q: want one of %s", g, strings.Join(knownGrants, ", "))
			}
		}
		if cl.AuthMethod == "none" && slices.Contains(cl.GrantTypes, GrantClientCredentials) {
			bad(cf+".grant_types", "a public client (auth_method none) cannot use client_credentials")
		}
		if slices.Contains(cl.GrantTypes, GrantAuthorizationCode) && len(cl.RedirectURIs) == 0 {
			bad(cf+".redirect_uris", "authorization_code needs at least one redirect URI")
		}
		for k, r := range cl.RedirectURIs {
			if u, err := url.Parse(r); err != nil || !u.IsAbs() || u.Fragment != "" {
				bad(fmt.Sprintf("%s.redirect_uris[%d]", cf, k), "%q: want an absolute URI without fragment", r)
			}
		}
		for k, s := range append(append([]string{}, cl.RequiredScopes...), cl.OptionalScopes...) {
			if !scopes[s] {
				bad(fmt.Sprintf("%s.scopes[%d]", cf, k), "%q is not in the tenant's scope catalogue: add it to %s.scopes", s, f)
			}
		}
		for k, a := range cl.DefaultAudience {
			if !slices.Contains(cl.Audiences, a) {
				bad(fmt.Sprintf("%s.default_audience[%d]", cf, k), "%q is not in the client's audiences: add it there", a)
			}
		}
		for _, a := range append(append([]string{}, cl.Audiences...), cl.ExchangeAudiences...) {
			if a == "" {
				bad(cf+".audiences", "an audience must not be empty")
			}
		}
		fillLifetimes(&cl.Lifetimes, t.Lifetimes)
		checkLifetimes(bad, cf+".lifetimes", cl.Lifetimes)
		validateClientBinding(bad, cf, cl, scopes) // mtls.go, context.go, lifetime.go
	}
	if err := t.validateFederation(f); err != nil { // federation.go
		errs = append(errs, err)
	}
	users := map[string]bool{}
	for j := range t.Users {
		u := &t.Users[j]
		uf := fmt.Sprintf("%s.users[%d]", f, j)
		if u.Username == "" {
			bad(uf+".username", "must not be empty")
		}
		if users[u.Username] {
			bad(uf+".username", "%q is used twice in tenant %s", u.Username, t.Name)
		}
		users[u.Username] = true
		if u.Subject == "" {
			u.Subject = "user:" + u.Username
		}
		if ids[u.Subject] {
			bad(uf+".subject", "%q equals a client id: a user's subject must not collide with an agent's", u.Subject)
		}
	}
	return errors.Join(errs...)
}

func fillLifetimes(l *LifetimeConfig, from LifetimeConfig) {
	if l.AccessToken == 0 {
		l.AccessToken = from.AccessToken
	}
	if l.RefreshToken == 0 {
		l.RefreshToken = from.RefreshToken
	}
	if l.IDToken == 0 {
		l.IDToken = from.IDToken
	}
	if l.Code == 0 {
		l.Code = from.Code
	}
}

func checkLifetimes(bad func(string, string, ...any), f string, l LifetimeConfig) {
	for _, x := range []struct {
		name string
		d    time.Duration
	}{{"access_token", l.AccessToken}, {"refresh_token", l.RefreshToken}, {"id_token", l.IDToken}, {"code", l.Code}} {
		if x.d < 0 {
			bad(f+"."+x.name, "%s is negative: want a duration such as 10m", x.d)
		}
	}
}

func splitHostPort(a string) (string, string, error) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return "", "", errors.New("missing port")
	}
	return strings.Trim(a[:i], "[]"), a[i+1:], nil
}

func isLoopbackAddr(a string) bool {
	h, _, err := splitHostPort(a)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}
