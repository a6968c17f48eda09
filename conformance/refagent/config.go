package refagent

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// Grants the agent can use (AGENTSSO_GRANT).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
)

// Client authentication methods (AGENTSSO_CLIENT_AUTH), plus
// client_secret_post, which a dynamically registered client may be given.
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// maxServers bounds AGENTSSO_MCP_SERVERS.
const maxServers = 32

// Server is one MCP server the agent uses.
type Server struct {
	Name string
	URL  string
}

// Config is everything the agent takes from its environment (docs/AGENTS.md).
type Config struct {
	Scenario string
	Task     string
	// Issuer is the authorization server the client credentials below
	// belong to. Any other issuer gets a dynamically registered client.
	Issuer string
	Grant  string

	ClientID     string
	ClientAuth   string
	ClientSecret string
	KeyFile      string
	KeyID        string
	KeyAlg       string
	KeyPKCS11URI string

	// CAFile (AGENTSSO_CA_FILE) is a PEM file of CA certificates the
	// harness's HTTPS servers chain to, trusted besides the system roots;
	// RootCAs is that pool, read by ConfigFromEnv.
	CAFile  string
	RootCAs *x509.CertPool

	RedirectURI string
	BrowserURL  string
	// BrowserCmd is $BROWSER: a command run with the authorization URL as
	// its only argument, when no BrowserURL is given.
	BrowserCmd string

	Servers []Server

	// UserToken, when set, makes the agent obtain each server's token by
	// RFC 8693 token exchange of this token.
	UserToken string

	// ModelBaseURL is the OpenAI-compatible base URL (…/v1); empty means
	// no model: the agent lists the tools and stops.
	ModelBaseURL string
	ModelAPIKey  string
	Model        string

	Flaws FlawSet
}

// conformanceContext is MCP_CONFORMANCE_CONTEXT.
type conformanceContext struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Issuer       string `json:"issuer"`
	ServerURL    string `json:"server_url"`
}

// ConfigFromEnv reads the agent's inputs from env (docs/AGENTS.md). Every
// error names the variable.
func ConfigFromEnv(env map[string]string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(env[k]) }
	c := Config{
		Scenario:     get("AGENTSSO_SCENARIO"),
		Task:         get("AGENTSSO_TASK"),
		Issuer:       get("AGENTSSO_ISSUER"),
		Grant:        get("AGENTSSO_GRANT"),
		ClientID:     get("AGENTSSO_CLIENT_ID"),
		ClientAuth:   get("AGENTSSO_CLIENT_AUTH"),
		ClientSecret: env["AGENTSSO_CLIENT_SECRET"],
		KeyFile:      get("AGENTSSO_CLIENT_KEY_FILE"),
		KeyID:        get("AGENTSSO_CLIENT_KEY_ID"),
		KeyAlg:       get("AGENTSSO_CLIENT_KEY_ALG"),
		KeyPKCS11URI: get("AGENTSSO_CLIENT_KEY_PKCS11_URI"),
		CAFile:       get("AGENTSSO_CA_FILE"),
		RedirectURI:  get("AGENTSSO_REDIRECT_URI"),
		BrowserURL:   get("AGENTSSO_BROWSER_URL"),
		BrowserCmd:   get("BROWSER"),
		UserToken:    get("AGENTSSO_USER_TOKEN"),
		ModelBaseURL: get("OPENAI_BASE_URL"),
		ModelAPIKey:  get("OPENAI_API_KEY"),
		Model:        get("OPENAI_MODEL"),
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return c, fmt.Errorf("AGENTSSO_CA_FILE: %v", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return c, fmt.Errorf("AGENTSSO_CA_FILE %s: no PEM certificate in it", c.CAFile)
		}
		c.RootCAs = pool
	}
	if c.Scenario == "" {
		c.Scenario = get("MCP_CONFORMANCE_SCENARIO")
	}
	flaws, err := ParseFlaws(env[EnvFlaws])
	if err != nil {
		return c, err
	}
	c.Flaws = flaws

	if list := get("AGENTSSO_MCP_SERVERS"); list != "" {
		for i, pair := range strings.Fields(list) {
			name, u, ok := strings.Cut(pair, "=")
			if !ok || name == "" || u == "" {
				return c, fmt.Errorf("AGENTSSO_MCP_SERVERS: item %d %q is not name=url", i+1, pair)
			}
			c.Servers = append(c.Servers, Server{Name: name, URL: u})
		}
	} else if u := get("AGENTSSO_MCP_SERVER_URL"); u != "" {
		c.Servers = []Server{{Name: "server", URL: u}}
	}

	// The MCP conformance suite's client runner: the same inputs in one
	// JSON object, used for whatever the AGENTSSO_* variables leave out.
	if raw := get("MCP_CONFORMANCE_CONTEXT"); raw != "" {
		var cc conformanceContext
		if err := json.Unmarshal([]byte(raw), &cc); err != nil {
			return c, fmt.Errorf("MCP_CONFORMANCE_CONTEXT: not a JSON object with client_id, client_secret, issuer, server_url: %v", err)
		}
		if c.ClientID == "" {
			c.ClientID = cc.ClientID
		}
		if c.ClientSecret == "" {
			c.ClientSecret = cc.ClientSecret
		}
		if c.Issuer == "" {
			c.Issuer = cc.Issuer
		}
		if len(c.Servers) == 0 && cc.ServerURL != "" {
			c.Servers = []Server{{Name: "server", URL: cc.ServerURL}}
		}
		if c.Grant == "" && c.ClientSecret != "" && c.RedirectURI == "" {
			c.Grant = GrantClientCredentials
		}
	}

	if c.ModelBaseURL == "" {
		if m := get("AGENTSSO_MODEL_URL"); m != "" {
			c.ModelBaseURL = strings.TrimRight(m, "/") + "/v1"
		}
	}
	if c.Model == "" {
		c.Model = "agentsso-reference-agent"
	}
	if c.Grant == "" {
		c.Grant = GrantAuthorizationCode
	}
	authDefaulted := c.ClientAuth == ""
	if authDefaulted {
		switch {
		case c.KeyFile != "" || c.KeyPKCS11URI != "":
			c.ClientAuth = AuthPrivateKeyJWT
		case c.ClientSecret != "":
			c.ClientAuth = AuthClientSecretBasic
		default:
			c.ClientAuth = AuthNone
		}
	}
	return c, c.validate(authDefaulted)
}

func (c *Config) validate(authDefaulted bool) error {
	if len(c.Servers) == 0 {
		return fmt.Errorf("AGENTSSO_MCP_SERVERS: required (space-separated name=url pairs), or AGENTSSO_MCP_SERVER_URL, or server_url in MCP_CONFORMANCE_CONTEXT")
	}
	if len(c.Servers) > maxServers {
		return fmt.Errorf("AGENTSSO_MCP_SERVERS: %d servers, at most %d", len(c.Servers), maxServers)
	}
	seen := map[string]bool{}
	for _, s := range c.Servers {
		if err := checkHTTPURL(s.URL); err != nil {
			return fmt.Errorf("AGENTSSO_MCP_SERVERS: server %s: %v", s.Name, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("AGENTSSO_MCP_SERVERS: server name %q given twice", s.Name)
		}
		seen[s.Name] = true
	}
	if c.Issuer != "" {
		if err := checkHTTPURL(c.Issuer); err != nil {
			return fmt.Errorf("AGENTSSO_ISSUER: %v", err)
		}
	}
	switch c.Grant {
	case GrantAuthorizationCode:
		if c.RedirectURI == "" {
			return fmt.Errorf("AGENTSSO_REDIRECT_URI: required with AGENTSSO_GRANT=authorization_code")
		}
		if err := checkLoopbackRedirect(c.RedirectURI); err != nil {
			return fmt.Errorf("AGENTSSO_REDIRECT_URI: %v", err)
		}
		if c.BrowserURL == "" && c.BrowserCmd == "" {
			return fmt.Errorf("AGENTSSO_BROWSER_URL: required with AGENTSSO_GRANT=authorization_code (or BROWSER)")
		}
		if c.BrowserURL != "" {
			if err := checkHTTPURL(c.BrowserURL); err != nil {
				return fmt.Errorf("AGENTSSO_BROWSER_URL: %v", err)
			}
		}
	case GrantClientCredentials:
		if c.ClientAuth == AuthNone {
			if authDefaulted {
				return fmt.Errorf("AGENTSSO_CLIENT_SECRET: required with AGENTSSO_GRANT=client_credentials (or AGENTSSO_CLIENT_KEY_FILE or AGENTSSO_CLIENT_KEY_PKCS11_URI for private_key_jwt)")
			}
			return fmt.Errorf("AGENTSSO_CLIENT_AUTH: client_credentials needs client authentication (client_secret_basic or private_key_jwt), not none")
		}
	default:
		return fmt.Errorf("AGENTSSO_GRANT: %q is not authorization_code or client_credentials", c.Grant)
	}
	if c.Issuer != "" && c.ClientID == "" {
		return fmt.Errorf("AGENTSSO_CLIENT_ID: required with AGENTSSO_ISSUER")
	}
	switch c.ClientAuth {
	case AuthNone:
	case AuthClientSecretBasic, AuthClientSecretPost:
		if c.ClientSecret == "" {
			return fmt.Errorf("AGENTSSO_CLIENT_SECRET: required with AGENTSSO_CLIENT_AUTH=%s", c.ClientAuth)
		}
	case AuthPrivateKeyJWT:
		switch {
		case c.KeyFile == "" && c.KeyPKCS11URI == "":
			return fmt.Errorf("AGENTSSO_CLIENT_KEY_FILE: required with AGENTSSO_CLIENT_AUTH=private_key_jwt (or AGENTSSO_CLIENT_KEY_PKCS11_URI)")
		case c.KeyFile != "" && c.KeyPKCS11URI != "":
			return fmt.Errorf("AGENTSSO_CLIENT_KEY_PKCS11_URI: conflicts with AGENTSSO_CLIENT_KEY_FILE; give one")
		}
	default:
		return fmt.Errorf("AGENTSSO_CLIENT_AUTH: %q is not none, client_secret_basic, client_secret_post or private_key_jwt", c.ClientAuth)
	}
	if c.ModelBaseURL != "" {
		if err := checkHTTPURL(c.ModelBaseURL); err != nil {
			return fmt.Errorf("OPENAI_BASE_URL: %v", err)
		}
		if c.Task == "" {
			return fmt.Errorf("AGENTSSO_TASK: required when a model is configured (OPENAI_BASE_URL or AGENTSSO_MODEL_URL)")
		}
	}
	return nil
}

// checkHTTPURL accepts an absolute http(s) URL with a host and no fragment.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%q has a fragment", s)
	}
	return nil
}

// checkLoopbackRedirect accepts an http URL on a loopback address with an
// explicit port: the agent listens there itself.
func checkLoopbackRedirect(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" || u.Port() == "" {
		return fmt.Errorf("%q is not an http URL with a port (the agent listens on it)", s)
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	ip := net.ParseIP(h)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not on a loopback address (127.0.0.0/8, ::1, localhost)", s)
	}
	return nil
}

// Environ turns os.Environ()-style "KEY=value" entries into the map Run
// takes. Later entries win, as with the process environment.
func Environ(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, e := range kv {
		k, v, ok := strings.Cut(e, "=")
		if ok && k != "" {
			m[k] = v
		}
	}
	return m
}
