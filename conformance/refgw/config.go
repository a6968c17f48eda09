package refgw

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultLeeway      = 30 * time.Second
	DefaultMaxLifetime = 15 * time.Minute
	DefaultJWKSRefresh = 5 * time.Minute
	// DefaultIntrospectionTimeout bounds one introspection call; past it the
	// request is refused (fail closed).
	DefaultIntrospectionTimeout = 3 * time.Second
	// DefaultExchangeTimeout bounds one token-exchange call.
	DefaultExchangeTimeout = 5 * time.Second
)

// Config is the gateway's settings. The zero value of every optional field
// is the secure default; anything that weakens a check is a named Flaw.
type Config struct {
	// Issuer is the only issuer accepted, compared byte for byte with the
	// token's iss (RFC 9068 section 4; RFC 8725 section 3.8).
	Issuer string
	// JWKSURL is where the issuer's signing keys are fetched. It is the
	// only source of verification keys: keys named or carried in a token's
	// header (jwk, jku, x5u, x5c) are never used.
	JWKSURL string
	// Audience is the identifier this gateway answers to (usually its own
	// URL). A token's aud must contain it exactly.
	Audience string
	// Resource is the RFC 9728 resource identifier published in the
	// protected resource metadata. Default: Audience.
	Resource string
	// ResourceName is the human-readable resource_name of the metadata.
	// Default: "agentsso reference gateway".
	ResourceName string

	// ToolScopes maps each MCP tool the gateway exposes to the scope a
	// tools/call needs. An empty scope means any valid token may call it.
	// Tool names follow the MCP rule: 1–128 of A-Z a-z 0-9 _ - .
	ToolScopes map[string]string
	// DefaultScope is the scope every REST (non-MCP) call needs; empty
	// means any valid token.
	DefaultScope string
	// AllowedActors, when not empty, lists the actors allowed to call
	// through the gateway: a token with an act claim must have its current
	// (outermost) actor's sub in the list (RFC 8693 section 4.1: only the
	// current actor decides). Tokens without act are not affected.
	AllowedActors []string
	// MaxLifetime is the longest token lifetime (exp − iat) accepted.
	// Zero means DefaultMaxLifetime; a negative value turns the policy off.
	MaxLifetime time.Duration

	// Introspection, when set, makes the gateway introspect every token
	// (RFC 7662) in addition to validating it, and refuse it unless the
	// answer is active and agrees with the token.
	Introspection *IntrospectionConfig

	// DPoP enables DPoP-bound tokens (RFC 9449). Without it a token with
	// cnf.jkt is refused, since possession cannot be checked.
	DPoP bool

	// MTLS enables certificate-bound tokens (RFC 8705 section 3): a token
	// with cnf.x5t#S256 is accepted only over the TLS client certificate
	// it names. Serve the gateway with TLSConfig so that the handshake
	// asks for certificates. Without MTLS such a token is refused.
	MTLS bool

	// Zone is the compute zone the gateway runs in: a token whose ctx.zone
	// is set must name it. Env is the same for ctx.env. A token's ctx.net
	// (CIDR list) must contain the request's source address (the TCP peer,
	// never a forwarding header).
	Zone string
	Env  string

	// Upstream is the base URL of the API behind the gateway: tools/call
	// goes to GET {Upstream}/tools/{name}, a REST call to {Upstream}{path}.
	Upstream string
	// Exchange, when set, makes the gateway obtain the upstream's token by
	// RFC 8693 token exchange of the inbound token. Without it the
	// upstream receives no token at all. The inbound token itself is never
	// forwarded (MCP: "MUST NOT pass through").
	Exchange *ExchangeConfig

	// AuditPath is a file that receives one JSON line (an AuditRecord) per
	// decision. Empty means no audit log.
	AuditPath string
	// AuditWebhook is a URL that receives each AuditRecord as a JSON POST,
	// before the gateway acts, like AuditPath (both may be set). An allow
	// whose record is not accepted with a 2xx is refused. Empty means none.
	AuditWebhook string

	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway (use time.Nanosecond for practically none); at most 5m.
	Leeway time.Duration
	// JWKSRefresh is how long fetched keys are used before the JWKS is
	// fetched again. Zero means DefaultJWKSRefresh. An unknown kid causes a
	// refetch at most once every 5 seconds whatever this is.
	JWKSRefresh time.Duration

	// HTTPClient makes every outbound call (JWKS, introspection, exchange,
	// upstream). Default: a client with a 30 s timeout.
	HTTPClient *http.Client
	// Now is the clock. Default: time.Now.
	Now func() time.Time

	// Flaws turns off individual checks, by FlawCatalog name. For tests
	// and demonstrations only.
	Flaws Flaws
}

// IntrospectionConfig configures RFC 7662 token introspection.
type IntrospectionConfig struct {
	URL          string
	ClientID     string
	ClientSecret string
	// Timeout bounds one call. Zero means DefaultIntrospectionTimeout.
	Timeout time.Duration
	// CacheTTL is how long an answer is reused for the same token; never
	// beyond the token's exp. Zero (the default) means every request is
	// introspected, so a revocation takes effect on the next call.
	CacheTTL time.Duration
}

// ExchangeConfig configures RFC 8693 token exchange for the upstream.
type ExchangeConfig struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	// Audience is the upstream's identifier, sent as the audience
	// parameter.
	Audience string
	// Scope, when set, is the scope requested for the upstream token.
	Scope string
	// Timeout bounds one call. Zero means DefaultExchangeTimeout.
	Timeout time.Duration
}

var toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// validScopeToken reports whether s is an RFC 6749 section 3.3
// scope-token: one or more of %x21 / %x23-5B / %x5D-7E.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// ConfigError names the Config field that is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "refgw: Config." + e.Field + ": " + e.Reason }

// validate checks c and returns every problem found, joined.
func (c *Config) validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	checkURL := func(field, v string, required bool) {
		if v == "" {
			if required {
				bad(field, "is required")
			}
			return
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(field, "%q is not an absolute http(s) URL", v)
			return
		}
		if u.Fragment != "" || u.RawQuery != "" {
			bad(field, "%q must have no query or fragment", v)
		}
	}
	if c.Issuer == "" {
		bad("Issuer", "is required")
	}
	checkURL("JWKSURL", c.JWKSURL, true)
	if c.Audience == "" {
		bad("Audience", "is required")
	}
	checkURL("Resource", c.Resource, false)
	checkURL("Upstream", c.Upstream, true)
	checkURL("AuditWebhook", c.AuditWebhook, false)
	for name, scope := range c.ToolScopes {
		if !toolNameRE.MatchString(name) {
			bad("ToolScopes", "tool name %q: want 1-128 of A-Z a-z 0-9 _ - .", name)
		}
		if scope != "" && !validScopeToken(scope) {
			bad("ToolScopes", "tool %q: scope %q is not a single scope token", name, scope)
		}
	}
	if c.DefaultScope != "" && !validScopeToken(c.DefaultScope) {
		bad("DefaultScope", "%q is not a single scope token", c.DefaultScope)
	}
	for _, a := range c.AllowedActors {
		if a == "" {
			bad("AllowedActors", "has an empty entry")
		}
	}
	if in := c.Introspection; in != nil {
		checkURL("Introspection.URL", in.URL, true)
		if in.ClientID == "" {
			bad("Introspection.ClientID", "is required")
		}
		if in.Timeout < 0 {
			bad("Introspection.Timeout", "is negative")
		}
		if in.CacheTTL < 0 {
			bad("Introspection.CacheTTL", "is negative")
		}
	}
	if ex := c.Exchange; ex != nil {
		checkURL("Exchange.TokenURL", ex.TokenURL, true)
		if ex.ClientID == "" {
			bad("Exchange.ClientID", "is required")
		}
		if ex.Audience == "" {
			bad("Exchange.Audience", "is required")
		}
		if ex.Timeout < 0 {
			bad("Exchange.Timeout", "is negative")
		}
		for _, s := range strings.Split(ex.Scope, " ") {
			if ex.Scope != "" && !validScopeToken(s) {
				bad("Exchange.Scope", "%q is not a space-separated list of scope tokens", ex.Scope)
				break
			}
		}
	}
	if c.Leeway < 0 {
		bad("Leeway", "is negative")
	}
	if c.Leeway > 5*time.Minute {
		bad("Leeway", "%v is more than 5m", c.Leeway)
	}
	if c.JWKSRefresh < 0 {
		bad("JWKSRefresh", "is negative")
	}
	var unknown []string
	for name := range c.Flaws {
		if !FlawCatalog.Has(name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		bad("Flaws", "unknown flaw(s) %s; see FlawCatalog", strings.Join(unknown, ", "))
	}
	return errors.Join(errs...)
}
