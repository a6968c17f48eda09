package refagent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// Token exchange (RFC 8693) identifiers.
const (
	grantTokenExchange    = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken  = "urn:ietf:params:oauth:token-type:access_token"
	scopeOfflineAccess    = "offline_access"
	scopeOpenID           = "openid"
	maxMetadataBytes      = 1 << 20
	maxTokenResponseBytes = 1 << 20
)

// prm is RFC 9728 protected resource metadata, as much as the agent uses.
type prm struct {
	Resource                      string   `json:"resource"`
	AuthorizationServers          []string `json:"authorization_servers"`
	ScopesSupported               []string `json:"scopes_supported"`
	DPoPBoundAccessTokensRequired bool     `json:"dpop_bound_access_tokens_required"`
}

// asMeta is RFC 8414 authorization server metadata (and OpenID Connect
// discovery), as much as the agent uses.
type asMeta struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
}

// authServer is one authorization server the agent has met, with the
// client it uses there.
type authServer struct {
	issuer string
	meta   asMeta
	client *clientCreds
	// nonce is the last DPoP-Nonce the server gave (guarded by agent.mu).
	nonce string
	// actor is the agent's own client-credentials token, the actor_token
	// of token exchanges (guarded by agent.mu).
	actor *token
}

// token is what a token endpoint issued.
type token struct {
	access  string
	dpop    bool // token_type DPoP: presented with the DPoP scheme and a proof
	refresh string
	idToken string
	scopes  []string
	issued  time.Time
	expiry  time.Time // zero: unknown
}

func (t *token) lifetime() time.Duration {
	if t.expiry.IsZero() {
		return 0
	}
	return t.expiry.Sub(t.issued)
}

// refreshDue reports whether less than max(5 s, a third of the lifetime)
// is left.
func (t *token) refreshDue(now time.Time) bool {
	if t.expiry.IsZero() {
		return false
	}
	margin := max(5*time.Second, t.lifetime()/3)
	return t.expiry.Sub(now) < margin
}

// getJSON fetches a JSON document with GET, following no redirect.
func (a *agent) getJSON(ctx context.Context, u string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: not a JSON object: %v", u, err)
	}
	return resp.StatusCode, nil
}

// wellKnown inserts /.well-known/{name} between the origin and the path of
// u (RFC 8414 section 3.1, RFC 9728 section 3.1).
func wellKnown(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	path := strings.TrimSuffix(p.EscapedPath(), "/")
	return p.Scheme + "://" + p.Host + "/.well-known/" + name + path, nil
}

// sameURL compares two identifiers, ignoring a trailing slash and the case
// of the scheme and host.
func sameURL(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(s)
		if err != nil {
			return s
		}
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
		return u.String()
	}
	return norm(a) == norm(b)
}

// challenge is the auth challenge of a 401 or 403.
type challenge struct {
	scheme string // lower case: bearer, dpop
	params map[string]string
}

// challenges parses every WWW-Authenticate header of resp.
func challenges(resp *http.Response) []challenge {
	chs, err := oauthex.ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
	if err != nil {
		return nil
	}
	out := make([]challenge, 0, len(chs))
	for _, c := range chs {
		out = append(out, challenge{scheme: strings.ToLower(c.Scheme), params: c.Params})
	}
	return out
}

// param is the first value of name among the Bearer and DPoP challenges.
func param(chs []challenge, name string) string {
	for _, c := range chs {
		if c.scheme == "bearer" || c.scheme == "dpop" {
			if v := c.params[name]; v != "" {
				return v
			}
		}
	}
	return ""
}

func hasScheme(chs []challenge, scheme string) bool {
	for _, c := range chs {
		if c.scheme == scheme {
			return true
		}
	}
	return false
}

// fetchPRM reads the server's protected resource metadata: from the
// challenge's resource_metadata, else the well-known URLs (path-aware,
// then the root), and checks that it describes this server.
func (a *agent) fetchPRM(ctx context.Context, serverURL string, chs []challenge) (*prm, error) {
	var tries []string
	if u := param(chs, "resource_metadata"); u != "" {
		if err := checkHTTPURL(u); err != nil {
			return nil, fmt.Errorf("resource_metadata in WWW-Authenticate: %v", err)
		}
		tries = append(tries, u)
	} else {
		u, err := wellKnown(serverURL, "oauth-protected-resource")
		if err != nil {
			return nil, err
		}
		tries = append(tries, u)
		if p, _ := url.Parse(serverURL); p != nil && strings.Trim(p.Path, "/") != "" {
			tries = append(tries, p.Scheme+"://"+p.Host+"/.well-known/oauth-protected-resource")
		}
	}
	var errs []error
	for _, u := range tries {
		var m prm
		if _, err := a.getJSON(ctx, u, &m); err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Resource == "" {
			return nil, fmt.Errorf("protected resource metadata at %s has no resource", u)
		}
		if !sameURL(m.Resource, serverURL) {
			if !a.flaws.On(FlawIgnorePRMResource) {
				return nil, &refusal{fmt.Sprintf("protected resource metadata at %s names resource %q, not this server %q (RFC 9728 section 3.3): refusing to use it", u, m.Resource, serverURL)}
			}
			a.log.printf("flaw %s: using metadata for resource %q at server %s", FlawIgnorePRMResource, m.Resource, serverURL)
		}
		return &m, nil
	}
	return nil, fmt.Errorf("no protected resource metadata for %s: %w", serverURL, errors.Join(errs...))
}

// authServerFor returns the authorization server issuer, fetching and
// checking its metadata the first time: RFC 8414 with path insertion,
// then OpenID Connect discovery (path insertion, then appended).
func (a *agent) authServerFor(ctx context.Context, issuer string) (*authServer, error) {
	if err := checkHTTPURL(issuer); err != nil {
		return nil, fmt.Errorf("authorization_servers[0]: %v", err)
	}
	a.mu.Lock()
	as := a.ases[issuer]
	a.mu.Unlock()
	if as != nil {
		return as, nil
	}
	oauthURL, err := wellKnown(issuer, "oauth-authorization-server")
	if err != nil {
		return nil, err
	}
	oidcInsert, _ := wellKnown(issuer, "openid-configuration")
	oidcAppend := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	tries := []string{oauthURL, oidcInsert}
	if oidcAppend != oidcInsert {
		tries = append(tries, oidcAppend)
	}
	var errs []error
	var meta *asMeta
	for _, u := range tries {
		var m asMeta
		if _, err := a.getJSON(ctx, u, &m); err != nil {
			errs = append(errs, err)
			continue
		}
		if m.Issuer != issuer {
			if !a.flaws.On(FlawIgnoreIssuerMismatch) {
				return nil, &refusal{fmt.Sprintf("authorization server metadata at %s names issuer %q, not %q (RFC 8414 section 3.3): refusing to use it", u, m.Issuer, issuer)}
			}
			a.log.printf("flaw %s: using metadata of issuer %q for %q", FlawIgnoreIssuerMismatch, m.Issuer, issuer)
		}
		meta = &m
		break
	}
	if meta == nil {
		return nil, fmt.Errorf("no authorization server metadata for %s: %w", issuer, errors.Join(errs...))
	}
	if meta.TokenEndpoint == "" {
		return nil, fmt.Errorf("authorization server %s: metadata has no token_endpoint", issuer)
	}
	if err := checkHTTPURL(meta.TokenEndpoint); err != nil {
		return nil, fmt.Errorf("authorization server %s: token_endpoint: %v", issuer, err)
	}
	as = &authServer{issuer: issuer, meta: *meta}
	a.mu.Lock()
	if prev := a.ases[issuer]; prev != nil {
		as = prev
	} else {
		a.ases[issuer] = as
	}
	a.mu.Unlock()
	return as, nil
}

// isHome reports whether issuer is AGENTSSO_ISSUER, to which the
// environment's client belongs. With no AGENTSSO_ISSUER but a client id
// (as the MCP conformance context may give), the first issuer met is home.
func (a *agent) isHome(issuer string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.home == "" && a.cfg.ClientID != "" {
		a.home = issuer
		if a.cfg.Issuer == "" {
			a.log.printf("no AGENTSSO_ISSUER: the client %s is taken to belong to %s, the first issuer met", a.cfg.ClientID, issuer)
		}
	}
	return a.home != "" && sameURL(a.home, issuer)
}

// clientAt returns the client to use at as: the environment's at home, a
// dynamically registered one (RFC 7591) anywhere else.
func (a *agent) clientAt(ctx context.Context, as *authServer) (*clientCreds, error) {
	a.mu.Lock()
	c := as.client
	a.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if a.isHome(as.issuer) || a.flaws.On(FlawReuseClientAcrossAS) {
		if !a.isHome(as.issuer) {
			a.log.printf("flaw %s: presenting client %s to %s", FlawReuseClientAcrossAS, a.cfg.ClientID, as.issuer)
		}
		var err error
		c, err = a.envClient(ctx)
		if err != nil {
			return nil, err
		}
	} else {
		var err error
		c, err = a.register(ctx, as)
		if err != nil {
			return nil, err
		}
	}
	a.mu.Lock()
	if as.client == nil {
		as.client = c
	}
	c = as.client
	a.mu.Unlock()
	return c, nil
}

// envClient is the client of the environment, its key loaded once.
func (a *agent) envClient(ctx context.Context) (*clientCreds, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.env != nil {
		return a.env, nil
	}
	if a.cfg.ClientID == "" {
		return nil, errors.New("AGENTSSO_CLIENT_ID: not set")
	}
	c := &clientCreds{id: a.cfg.ClientID, secret: a.cfg.ClientSecret, method: a.cfg.ClientAuth}
	if c.method == AuthPrivateKeyJWT {
		var err error
		if a.cfg.KeyFile != "" {
			c.key, err = loadKeyFile(a.cfg.KeyFile, a.cfg.KeyAlg, a.cfg.KeyID)
		} else {
			c.key, err = loadPKCS11Key(ctx, a.cfg.KeyPKCS11URI, a.cfg.ClientID, a.cfg.KeyID, a.cfg.KeyAlg)
		}
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, c.key.close)
	}
	a.env = c
	return c, nil
}

// register obtains a client at as by RFC 7591 dynamic registration.
func (a *agent) register(ctx context.Context, as *authServer) (*clientCreds, error) {
	if as.meta.RegistrationEndpoint == "" {
		return nil, &refusal{fmt.Sprintf("authorization server %s is not AGENTSSO_ISSUER and has no registration_endpoint: the agent has no client there and will not present another server's", as.issuer)}
	}
	if err := checkHTTPURL(as.meta.RegistrationEndpoint); err != nil {
		return nil, fmt.Errorf("registration_endpoint: %v", err)
	}
	md := map[string]any{
		"client_name": "agentsso reference agent",
		"software_id": "agentsso-refagent",
	}
	if a.cfg.Grant == GrantAuthorizationCode {
		md["redirect_uris"] = []string{a.cfg.RedirectURI}
		md["grant_types"] = []string{"authorization_code", "refresh_token"}
		md["response_types"] = []string{"code"}
		md["token_endpoint_auth_method"] = AuthNone
	} else {
		md["grant_types"] = []string{GrantClientCredentials}
		md["token_endpoint_auth_method"] = AuthClientSecretBasic
	}
	body, _ := json.Marshal(md)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, as.meta.RegistrationEndpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := a.httpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("dynamic registration at %s: %w", as.issuer, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("dynamic registration at %s: status %d: %s", as.issuer, resp.StatusCode, bytes.TrimSpace(rb))
	}
	var out struct {
		ClientID   string `json:"client_id"`
		Secret     string `json:"client_secret"`
		AuthMethod string `json:"token_endpoint_auth_method"`
	}
	if err := json.Unmarshal(rb, &out); err != nil || out.ClientID == "" {
		return nil, fmt.Errorf("dynamic registration at %s: no client_id in the answer", as.issuer)
	}
	a.secrets.add(out.Secret)
	c := &clientCreds{id: out.ClientID, secret: out.Secret, method: out.AuthMethod, registered: true}
	if c.method == "" {
		c.method = md["token_endpoint_auth_method"].(string)
	}
	switch c.method {
	case AuthNone, AuthClientSecretBasic, AuthClientSecretPost:
	default:
		return nil, fmt.Errorf("dynamic registration at %s: token_endpoint_auth_method %q is not one the agent can use", as.issuer, c.method)
	}
	if c.method != AuthNone && c.secret == "" {
		return nil, fmt.Errorf("dynamic registration at %s: %s without a client_secret", as.issuer, c.method)
	}
	a.log.printf("registered client %s at %s", c.id, as.issuer)
	return c, nil
}

// tokenRequest posts form to the token endpoint of as, authenticated as c,
// with a DPoP proof when useDPoP (retrying once with the server's nonce
// on use_dpop_nonce). Each attempt is authenticated afresh, so an
// assertion is never sent twice.
func (a *agent) tokenRequest(ctx context.Context, as *authServer, c *clientCreds, form url.Values, useDPoP bool) (*token, error) {
	for attempt := 0; ; attempt++ {
		f := url.Values{}
		for k, v := range form {
			f[k] = slices.Clone(v)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, as.meta.TokenEndpoint, nil)
		if err != nil {
			return nil, err
		}
		if err := a.authenticate(req, f, c, as.issuer); err != nil {
			return nil, err
		}
		body := f.Encode()
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if useDPoP {
			a.mu.Lock()
			nonce := as.nonce
			a.mu.Unlock()
			proof, err := a.dpopProof(http.MethodPost, as.meta.TokenEndpoint, nonce, "")
			if err != nil {
				return nil, err
			}
			req.Header.Set("DPoP", proof)
		}
		issued := time.Now()
		resp, err := a.httpc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("token request to %s: %w", as.meta.TokenEndpoint, err)
		}
		rb, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponseBytes))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("token request to %s: %w", as.meta.TokenEndpoint, err)
		}
		if n := resp.Header.Get("DPoP-Nonce"); n != "" {
			a.mu.Lock()
			as.nonce = n
			a.mu.Unlock()
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Code string `json:"error"`
				Desc string `json:"error_description"`
			}
			_ = json.Unmarshal(rb, &e)
			if useDPoP && attempt == 0 && e.Code == "use_dpop_nonce" && resp.Header.Get("DPoP-Nonce") != "" {
				continue
			}
			return nil, &oauth2.RetrieveError{Response: resp, Body: rb, ErrorCode: e.Code, ErrorDescription: e.Desc}
		}
		return a.parseToken(rb, issued, f.Get("scope"))
	}
}

// parseToken reads a token response (RFC 6749 section 5.1).
func (a *agent) parseToken(body []byte, issued time.Time, requested string) (*token, error) {
	var r struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		RefreshToken string          `json:"refresh_token"`
		Scope        string          `json:"scope"`
		IDToken      string          `json:"id_token"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("token response: not JSON: %v", err)
	}
	a.secrets.add(r.AccessToken, r.RefreshToken, r.IDToken)
	if r.AccessToken == "" {
		return nil, errors.New("token response: no access_token")
	}
	t := &token{
		access:  r.AccessToken,
		dpop:    strings.EqualFold(r.TokenType, "DPoP"),
		refresh: r.RefreshToken,
		idToken: r.IDToken,
		issued:  issued,
	}
	switch tt := strings.ToLower(r.TokenType); tt {
	case "bearer", "dpop":
	default:
		return nil, fmt.Errorf("token response: token_type %q is neither Bearer nor DPoP", r.TokenType)
	}
	if len(r.ExpiresIn) > 0 && string(r.ExpiresIn) != "null" {
		s := strings.Trim(string(r.ExpiresIn), `"`)
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("token response: expires_in %s is not a number of seconds", r.ExpiresIn)
		}
		t.expiry = issued.Add(time.Duration(n * float64(time.Second)))
	}
	scope := r.Scope
	if scope == "" {
		scope = requested
	}
	t.scopes = strings.Fields(scope)
	if a.flaws.On(FlawTokenInLog) {
		a.log.raw("flaw %s: access_token=%s refresh_token=%s", FlawTokenInLog, t.access, t.refresh)
	}
	return t, nil
}

// revoke revokes a refresh token (RFC 7009) at as.
func (a *agent) revoke(ctx context.Context, as *authServer, rt string) error {
	a.mu.Lock()
	c := as.client
	a.mu.Unlock()
	if c == nil {
		return errors.New("no client")
	}
	form := url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, as.meta.RevocationEndpoint, nil)
	if err != nil {
		return err
	}
	if err := a.authenticate(req, form, c, as.issuer); err != nil {
		return err
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxMetadataBytes))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation at %s: status %d", as.meta.RevocationEndpoint, resp.StatusCode)
	}
	return nil
}

// refusal is a security refusal: the agent will not go on with a server,
// and says why on stderr.
type refusal struct{ msg string }

func (r *refusal) Error() string { return "refused: " + r.msg }

// union is a ∪ b, in order, without duplicates or empty entries.
func union(a, b []string) []string {
	var out []string
	for _, s := range slices.Concat(a, b) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// exchange obtains a token for resource by RFC 8693 token exchange: the
// user's token as subject_token, the agent's own client-credentials token
// as actor_token, the narrow scopes.
func (a *agent) exchange(ctx context.Context, as *authServer, c *clientCreds, resource string, scopes []string, useDPoP bool) (*token, error) {
	form := url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {a.cfg.UserToken},
		"subject_token_type":   {tokenTypeAccessToken},
		"requested_token_type": {tokenTypeAccessToken},
	}
	if actor := a.actorToken(ctx, as, c, resource); actor != nil {
		form.Set("actor_token", actor.access)
		form.Set("actor_token_type", tokenTypeAccessToken)
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	return a.tokenRequest(ctx, as, c, form, useDPoP)
}

// actorToken is the agent's own access token at as (client credentials),
// kept until it is due for refresh. A public client, or one the server
// refuses client credentials, has none: the exchange then names the
// calling client as the actor.
func (a *agent) actorToken(ctx context.Context, as *authServer, c *clientCreds, resource string) *token {
	if c.method == AuthNone {
		return nil
	}
	a.mu.Lock()
	t := as.actor
	a.mu.Unlock()
	if t != nil && !t.refreshDue(time.Now()) {
		return t
	}
	form := url.Values{"grant_type": {GrantClientCredentials}}
	t, err := a.tokenRequest(ctx, as, c, form, false)
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode == "invalid_target" && resource != "" {
		// No default audience for this client: ask for the resource.
		form.Set("resource", resource)
		t, err = a.tokenRequest(ctx, as, c, form, false)
	}
	if err != nil {
		a.log.printf("no actor token from %s (%v): exchanging as the calling client", as.issuer, err)
		return nil
	}
	a.mu.Lock()
	as.actor = t
	a.mu.Unlock()
	return t
}

// userTokenScopes reads the scope of the user's token when it is a JWT
// (scope string or scp array): not to trust it, only to ask an exchange
// for no more than it holds. nil when it cannot be read.
func (a *agent) userTokenScopes() []string {
	parts := strings.Split(a.cfg.UserToken, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c struct {
		Scope string   `json:"scope"`
		Scp   []string `json:"scp"`
	}
	if json.Unmarshal(b, &c) != nil {
		return nil
	}
	if c.Scope != "" {
		return strings.Fields(c.Scope)
	}
	return c.Scp
}
