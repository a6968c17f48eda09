package refgw

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
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	wellKnownPRM    = "/.well-known/oauth-protected-resource"
	mcpPath         = "/mcp"
	maxRequestBody  = 1 << 20
	maxUpstreamBody = 4 << 20
	upstreamTimeout = 30 * time.Second
	maxTenantSets   = 16
	schemeBearer    = "Bearer"
	schemeDPoP      = "DPoP"
)

// Gateway is the reference gateway: an http.Handler that validates every
// request's access token, checks the scope the call needs, and forwards
// it to the upstream with a token of its own.
type Gateway struct {
	cfg       Config
	client    *http.Client // JWKS fetches; follows redirects
	ownClient bool
	// direct is client without redirects, for every call that carries a
	// credential (introspection, exchange, upstream): a redirect must not
	// carry the gateway's token or secret anywhere else.
	direct       *http.Client
	now          func() time.Time
	leeway       time.Duration
	maxLifetime  time.Duration
	upstream     *url.URL
	resourcePath string // path of Resource, without a trailing slash

	keys     *keySet
	tenantMu sync.Mutex
	tenants  map[string]*keySet // accept-any-tenant-key flaw only

	replay   replayCache
	intro    *introspector
	exch     *exchanger
	audit    *auditLog
	hook     *auditHook
	sessions sessionStore
}

// New validates cfg, applies defaults and returns a Gateway. Errors name
// the Config field (*ConfigError, joined when there are several).
func New(cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Flaws.On(FlawAcceptAnyTenantKey) {
		if u, err := url.Parse(cfg.Issuer); err != nil || u.Host == "" {
			return nil, &ConfigError{Field: "Issuer", Reason: "must be a URL for the " + FlawAcceptAnyTenantKey + " flaw"}
		}
	}
	g := &Gateway{cfg: cfg, client: cfg.HTTPClient, now: cfg.Now, leeway: cfg.Leeway, maxLifetime: cfg.MaxLifetime}
	// Copy what the caller could change under our feet.
	g.cfg.ToolScopes = make(map[string]string, len(cfg.ToolScopes))
	for k, v := range cfg.ToolScopes {
		g.cfg.ToolScopes[k] = v
	}
	g.cfg.AllowedActors = slices.Clone(cfg.AllowedActors)
	g.cfg.Flaws = Flaws{}
	for k, v := range cfg.Flaws {
		g.cfg.Flaws[k] = v
	}
	if g.client == nil {
		g.client = &http.Client{Timeout: upstreamTimeout}
		g.ownClient = true
	}
	direct := *g.client
	direct.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	g.direct = &direct
	if g.now == nil {
		g.now = time.Now
	}
	if g.leeway == 0 {
		g.leeway = DefaultLeeway
	}
	if g.maxLifetime == 0 {
		g.maxLifetime = DefaultMaxLifetime
	}
	if g.cfg.Resource == "" {
		g.cfg.Resource = cfg.Audience
	}
	if g.cfg.ResourceName == "" {
		g.cfg.ResourceName = "agentsso reference gateway"
	}
	if u, err := url.Parse(g.cfg.Resource); err == nil {
		g.resourcePath = strings.TrimRight(u.EscapedPath(), "/")
	}
	g.upstream, _ = url.Parse(cfg.Upstream)
	refresh := cfg.JWKSRefresh
	if refresh == 0 {
		refresh = DefaultJWKSRefresh
	}
	g.keys = newKeySet(cfg.JWKSURL, g.client, g.now, refresh)
	g.keys.noRefetch, g.keys.keepRemoved = g.flaw(FlawNoKeyRefetch), g.flaw(FlawKeepRemovedKeys)
	if in := cfg.Introspection; in != nil {
		ic := *in
		if ic.Timeout == 0 {
			ic.Timeout = DefaultIntrospectionTimeout
		}
		g.intro = &introspector{cfg: ic, client: g.direct, now: g.now}
	}
	if ex := cfg.Exchange; ex != nil {
		xc := *ex
		if xc.Timeout == 0 {
			xc.Timeout = DefaultExchangeTimeout
		}
		g.exch = &exchanger{cfg: xc, client: g.direct, now: g.now}
	}
	if cfg.AuditWebhook != "" {
		g.hook = &auditHook{url: cfg.AuditWebhook, client: g.direct}
	}
	if cfg.AuditPath != "" {
		a, err := openAuditLog(cfg.AuditPath)
		if err != nil {
			return nil, &ConfigError{Field: "AuditPath", Reason: err.Error()}
		}
		g.audit = a
	}
	return g, nil
}

// Close releases the audit log and idle connections of the gateway's own
// HTTP client. The Gateway must not serve after Close.
func (g *Gateway) Close() error {
	if g.ownClient {
		g.client.CloseIdleConnections()
	}
	if g.audit != nil {
		return g.audit.close()
	}
	return nil
}

func (g *Gateway) flaw(name string) bool { return g.cfg.Flaws.On(name) }

// ServeHTTP routes: the RFC 9728 metadata is public; /mcp is the MCP
// endpoint; every other path is a REST call forwarded to the upstream.
// Everything but the metadata needs a valid token.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == wellKnownPRM || strings.HasPrefix(p, wellKnownPRM+"/"):
		g.serveMetadata(w, r)
	case p == mcpPath:
		g.serveMCP(w, r)
	case strings.HasPrefix(p, "/.well-known/"):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	default:
		g.serveREST(w, r)
	}
}

// scopesSupported lists every scope the gateway asks for, sorted.
func (g *Gateway) scopesSupported() []string {
	set := map[string]bool{}
	for _, s := range g.cfg.ToolScopes {
		if s != "" {
			set[s] = true
		}
	}
	if g.cfg.DefaultScope != "" {
		set[g.cfg.DefaultScope] = true
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// serveMetadata answers the RFC 9728 protected resource metadata, at the
// well-known root and at the root followed by the resource's path.
func (g *Gateway) serveMetadata(w http.ResponseWriter, r *http.Request) {
	suffix := strings.TrimPrefix(r.URL.EscapedPath(), wellKnownPRM)
	if suffix != "" && suffix != g.resourcePath {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	md := map[string]any{
		"resource":                 g.cfg.Resource,
		"authorization_servers":    []string{g.cfg.Issuer},
		"scopes_supported":         g.scopesSupported(),
		"bearer_methods_supported": []string{"header"},
		"resource_name":            g.cfg.ResourceName,
	}
	if g.cfg.DPoP {
		md["dpop_signing_alg_values_supported"] = strings.Fields(dpopAlgList())
		md["dpop_bound_access_tokens_required"] = false
	}
	if g.cfg.MTLS {
		md["tls_client_certificate_bound_access_tokens"] = true
	}
	writeJSON(w, http.StatusOK, md)
}

// metadataURL is the resource_metadata URL for challenges: the well-known
// location on the origin the client reached, with the resource's path.
func (g *Gateway) metadataURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + wellKnownPRM + g.resourcePath
}

// credential is the access token a request presents.
type credential struct {
	token  string
	scheme string // schemeBearer or schemeDPoP
}

// request carries one protected request through its decision.
type request struct {
	g      *Gateway
	r      *http.Request
	rec    AuditRecord
	cred   credential
	claims *tokenClaims
	scopes []string // effective scopes: the token's, narrowed by introspection
	// dpopChallenge: answer with the DPoP scheme (the request used it, or
	// the token is DPoP-bound).
	dpopChallenge bool
	logged        bool
}

func (g *Gateway) newRequest(r *http.Request) *request {
	return &request{g: g, r: r, rec: AuditRecord{
		Aud:             []string{},
		ScopesPresented: []string{},
		ScopesRequired:  []string{},
		Method:          r.Method,
		Path:            r.URL.Path,
		Source:          r.RemoteAddr,
	}}
}

// extract finds the one token the request presents (RFC 6750 section 2:
// one method only; header only unless the query-token flaw is on).
func (g *Gateway) extract(r *http.Request) (credential, *denial) {
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		return credential{}, invalidRequest(errMultipleMethods, "more than one Authorization header")
	}
	if qt, ok := r.URL.Query()["access_token"]; ok {
		if !g.flaw(FlawQueryToken) {
			return credential{}, invalidRequest(errQueryToken, "tokens are accepted in the Authorization header only")
		}
		if len(authz) == 1 || len(qt) != 1 {
			return credential{}, invalidRequest(errMultipleMethods, "one token, one way")
		}
		return g.checkTokenSyntax(credential{token: qt[0], scheme: schemeBearer})
	}
	if len(authz) == 0 {
		return credential{}, &denial{status: http.StatusUnauthorized, err: errNoToken}
	}
	scheme, rest, _ := strings.Cut(authz[0], " ")
	var cred credential
	switch {
	case strings.EqualFold(scheme, schemeBearer):
		cred.scheme = schemeBearer
	case strings.EqualFold(scheme, schemeDPoP) && g.cfg.DPoP:
		cred.scheme = schemeDPoP
	case strings.EqualFold(scheme, schemeDPoP):
		return credential{}, &denial{status: http.StatusUnauthorized, err: errDPoPUnsupported}
	default:
		return credential{}, &denial{status: http.StatusUnauthorized, err: errNoToken, detail: "unsupported authorization scheme"}
	}
	cred.token = strings.TrimLeft(rest, " ")
	return g.checkTokenSyntax(cred)
}

func (g *Gateway) checkTokenSyntax(c credential) (credential, *denial) {
	switch {
	case c.token == "":
		return c, invalidRequest(errMalformed, "empty token")
	case len(c.token) > maxTokenBytes && !g.flaw(FlawNoSizeLimit):
		return c, invalidToken(errTooLarge, "tokens are limited to 16 KiB")
	}
	// RFC 6750 section 2.1 b64token: no spaces or other characters.
	for i := 0; i < len(c.token); i++ {
		ch := c.token[i]
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || strings.IndexByte("-._~+/=", ch) >= 0) {
			return c, invalidToken(errMalformed, "token has characters outside b64token")
		}
	}
	return c, nil
}

// authorize validates the request's token: every check except the scope
// the call needs, in the order of RFC 9068 section 4, then the bindings
// and introspection.
func (st *request) authorize() *denial {
	g, ctx := st.g, st.r.Context()
	cred, d := g.extract(st.r)
	st.cred = cred
	st.rec.Scheme = cred.scheme
	if d != nil {
		return d
	}
	st.dpopChallenge = cred.scheme == schemeDPoP
	st.noteUnverified()

	h, payload, verified, d := g.verifyJWT(ctx, cred.token)
	if d != nil {
		return d
	}
	// RFC 9068 section 4 / RFC 8725 section 3.11: only at+jwt is an
	// access token (media types compare case-insensitively).
	if !g.flaw(FlawSkipTyp) && !strings.EqualFold(h.typ, "at+jwt") && !strings.EqualFold(h.typ, "application/at+jwt") {
		return invalidToken(errType, "typ must be at+jwt")
	}
	c, err := parseClaims(payload)
	if err != nil {
		return invalidToken(errClaims, err.Error())
	}
	st.claims = c
	st.record(c, verified)
	if c.jkt != "" && g.cfg.DPoP {
		st.dpopChallenge = true
	}
	if d := g.checkClaims(c); d != nil {
		return d
	}
	if d := g.checkActor(c); d != nil {
		return d
	}
	if d := st.checkDPoP(c); d != nil {
		return d
	}
	if d := st.checkCertificate(c); d != nil {
		return d
	}
	if d := st.checkContext(c); d != nil {
		return d
	}
	st.scopes = c.presentedScopes()
	if g.intro != nil && !g.flaw(FlawSkipIntrospection) {
		if d := st.checkIntrospection(ctx, c); d != nil {
			return d
		}
	}
	return nil
}

// noteUnverified fills the audit record from the token's claims before
// anything is verified, so that a refused token is still attributed.
func (st *request) noteUnverified() {
	parts := strings.Split(st.cred.token, ".")
	if len(parts) != 3 {
		return
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return
	}
	if c, err := parseClaims(b); err == nil {
		st.record(c, false)
		if c.jkt != "" && st.g.cfg.DPoP {
			st.dpopChallenge = true
		}
	}
}

func (st *request) record(c *tokenClaims, verified bool) {
	st.rec.Iss, st.rec.Sub, st.rec.Agent, st.rec.JTI = c.iss, c.sub, c.agent(), c.jti
	st.rec.Act = c.currentActor()
	st.rec.ActChain = nil
	for _, a := range c.act {
		st.rec.ActChain = append(st.rec.ActChain, a.sub)
	}
	st.rec.Aud = append([]string{}, c.aud...)
	st.rec.ScopesPresented = c.presentedScopes()
	if c.ctx != nil {
		st.rec.Instance = c.ctx.instance
	}
	st.rec.TokenVerified = verified
}

// checkClaims applies RFC 9068 section 4 (iss, aud, exp) and RFC 7519
// (nbf, iat), the lifetime policy, and the claims the gateway needs.
func (g *Gateway) checkClaims(c *tokenClaims) *denial {
	now := g.now()
	switch {
	case g.flaw(FlawSkipIssuer):
	case g.flaw(FlawAcceptAnyTenantKey):
		if c.iss != g.cfg.Issuer && !sameOrigin(c.iss, g.cfg.Issuer) {
			return invalidToken(errIssuer, "")
		}
	case c.iss != g.cfg.Issuer:
		return invalidToken(errIssuer, "iss must be exactly "+g.cfg.Issuer)
	}
	if !g.flaw(FlawSkipAudience) && !slices.Contains(c.aud, g.cfg.Audience) {
		if !c.audPresent {
			return invalidToken(errAudience, "the token has no aud")
		}
		return invalidToken(errAudience, "aud must include "+g.cfg.Audience)
	}
	if !g.flaw(FlawSkipExpiry) {
		if c.exp == nil {
			return invalidToken(errNoExpiry, "")
		}
		if !c.exp.After(now.Add(-g.leeway)) {
			return invalidToken(errExpired, "")
		}
	}
	if !g.flaw(FlawSkipNbf) {
		if c.nbf != nil && c.nbf.After(now.Add(g.leeway)) {
			return invalidToken(errNotYetValid, "")
		}
		if c.iat != nil && c.iat.After(now.Add(g.leeway)) {
			return invalidToken(errIssuedInFuture, "")
		}
	}
	if g.maxLifetime > 0 && !g.flaw(FlawNoLifetimeLimit) && c.exp != nil {
		start := now
		if c.iat != nil {
			start = *c.iat
		}
		if c.exp.Sub(start) > g.maxLifetime {
			return invalidToken(errLifetime, fmt.Sprintf("tokens may live at most %v", g.maxLifetime))
		}
	}
	if c.sub == "" {
		return invalidToken(errNoSubject, "")
	}
	for m := range c.cnf {
		if m != "jkt" && (m != "x5t#S256" || !g.cfg.MTLS) {
			// A confirmation method whose possession cannot be checked
			// here (x5t#S256 without MTLS, or an unknown one): the token
			// cannot be accepted.
			return invalidToken(errConfirmation, g.confirmationNote())
		}
	}
	return nil
}

// checkActor applies AllowedActors to the current actor only (RFC 8693
// section 4.1: prior actors are informational).
func (g *Gateway) checkActor(c *tokenClaims) *denial {
	if len(g.cfg.AllowedActors) == 0 || len(c.act) == 0 {
		return nil
	}
	if g.flaw(FlawAnyActor) {
		for _, a := range c.act {
			if slices.Contains(g.cfg.AllowedActors, a.sub) {
				return nil
			}
		}
	} else if slices.Contains(g.cfg.AllowedActors, c.act[0].sub) {
		return nil
	}
	return invalidToken(errActor, "the current actor may not call this gateway")
}

// checkContext enforces the ctx claim: zone, env and source networks.
func (st *request) checkContext(c *tokenClaims) *denial {
	g := st.g
	if c.ctx == nil || g.flaw(FlawSkipContext) {
		return nil
	}
	if c.ctx.zone != "" && c.ctx.zone != g.cfg.Zone {
		return invalidToken(errContext, "the token is bound to another zone")
	}
	if c.ctx.env != "" && c.ctx.env != g.cfg.Env {
		return invalidToken(errContext, "the token is bound to another environment")
	}
	if len(c.ctx.nets) == 0 {
		return nil
	}
	// The TCP peer, never X-Forwarded-For or similar.
	src, ok := st.sourceAddr()
	if !ok {
		return invalidToken(errContext, "the source address is unknown")
	}
	for _, p := range c.ctx.nets {
		if p.Contains(src) {
			return nil
		}
	}
	return invalidToken(errContext, "the request comes from outside the token's networks")
}

// checkIntrospection asks the issuer whether the token is still active
// (RFC 7662) and fails closed when it cannot tell.
func (st *request) checkIntrospection(ctx context.Context, c *tokenClaims) *denial {
	g := st.g
	ans, err := g.intro.introspect(ctx, st.cred.token, c)
	if err != nil {
		if g.flaw(FlawIntrospectionFailOpen) {
			return nil
		}
		return invalidToken(errIntrospection, "")
	}
	now := g.now()
	switch {
	case !ans.active:
		return invalidToken(errInactive, "revoked, expired or unknown at the issuer")
	case ans.reason != "":
		return invalidToken(errInactive, ans.reason)
	case ans.hasAudience && !g.flaw(FlawSkipAudience) && !slices.Contains(ans.audience, g.cfg.Audience):
		return invalidToken(errAudience, "the issuer's aud does not include "+g.cfg.Audience)
	case ans.exp != nil && !g.flaw(FlawSkipExpiry) && !ans.exp.After(now.Add(-g.leeway)):
		return invalidToken(errExpired, "expired according to the issuer")
	}
	if ans.scoped {
		var narrowed []string
		for _, s := range st.scopes {
			if slices.Contains(ans.scopes, s) {
				narrowed = append(narrowed, s)
			}
		}
		st.scopes = narrowed
	}
	return nil
}

// requireScope checks that the effective scopes hold scope, exactly.
func (st *request) requireScope(scope string) *denial {
	g := st.g
	if scope == "" {
		return nil
	}
	st.rec.ScopesRequired = []string{scope}
	if g.flaw(FlawSkipScope) {
		return nil
	}
	if g.flaw(FlawLooseScope) {
		joined := strings.Join(st.scopes, " ")
		if strings.Contains(joined, scope) || slices.Contains(st.scopes, "*") || slices.Contains(st.scopes, "all") {
			return nil
		}
	} else if slices.Contains(st.scopes, scope) {
		return nil
	}
	return &denial{status: http.StatusForbidden, code: codeInsufficientScope, err: errInsufficient, detail: "this call needs " + scope, scope: scope}
}

// upstreamToken chooses what the upstream receives: an exchanged token,
// nothing, or (passthrough flaw) the inbound token.
func (st *request) upstreamToken() (string, *denial) {
	g := st.g
	switch {
	case g.flaw(FlawPassthrough):
		st.rec.UpstreamToken = "passthrough"
		return st.cred.token, nil
	case g.exch != nil:
		tok, err := g.exch.token(st.r.Context(), st.cred.token, st.claims)
		if err != nil {
			return "", &denial{status: http.StatusBadGateway, err: errExchange, internal: err.Error()}
		}
		st.rec.UpstreamToken = "exchanged"
		return tok, nil
	default:
		st.rec.UpstreamToken = "none"
		return "", nil
	}
}

// writeAudit records the decision once. It reports false when the record
// could not be written.
func (st *request) writeAudit(decision, reason string, status int) bool {
	if st.logged {
		return true
	}
	st.logged = true
	st.rec.Time = st.g.now().UTC()
	st.rec.Decision, st.rec.Reason, st.rec.Status = decision, reason, status
	if st.g.flaw(FlawNoAudit) {
		return true
	}
	ok := true
	if st.g.audit != nil {
		ok = st.g.audit.write(&st.rec) == nil
	}
	if st.g.hook != nil {
		ok = st.g.hook.post(&st.rec) == nil && ok
	}
	return ok
}

// allow records an allow decision. If the audit log cannot be written the
// request is refused: no action without a record.
func (st *request) allow(w http.ResponseWriter) bool {
	if st.writeAudit(DecisionAllow, "authorized", 0) {
		return true
	}
	st.rec.Decision = DecisionDeny
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": errAuditUnavailable.Error()})
	return false
}

// deny records and answers a refusal, with the RFC 6750 / RFC 9449
// challenge for 400, 401 and 403.
func (st *request) deny(w http.ResponseWriter, d *denial) {
	reason := d.Error()
	if d.internal != "" {
		reason += " (" + d.internal + ")"
	}
	st.writeAudit(DecisionDeny, reason, d.status)
	h := w.Header()
	if d.status == http.StatusUnauthorized || d.status == http.StatusForbidden || (d.status == http.StatusBadRequest && d.code != "") {
		for _, c := range st.challenges(d) {
			h.Add("WWW-Authenticate", c)
		}
	}
	body := map[string]string{"error_description": d.Error()}
	if d.code != "" {
		body["error"] = d.code
	}
	writeJSON(w, d.status, body)
}

func (st *request) challenges(d *denial) []string {
	g := st.g
	var params []string
	if d.code != "" {
		params = append(params, challengeParam("error", d.code), challengeParam("error_description", d.Error()))
	}
	if d.code == codeInsufficientScope {
		params = append(params, challengeParam("scope", d.scope))
	}
	var rm []string
	if !g.flaw(FlawNoResourceMetadata) {
		rm = []string{quotedParam("resource_metadata", g.metadataURL(st.r))}
	}
	algs := challengeParam("algs", dpopAlgList())
	join := func(scheme string, p []string) string {
		if len(p) == 0 {
			return scheme
		}
		return scheme + " " + strings.Join(p, ", ")
	}
	switch {
	case g.cfg.DPoP && st.dpopChallenge:
		return []string{join(schemeDPoP, append(append(params, algs), rm...))}
	case g.cfg.DPoP && d.code == "":
		// No usable token: offer both schemes (RFC 9449 section 7.1).
		return []string{join(schemeBearer, rm), join(schemeDPoP, append([]string{algs}, rm...))}
	default:
		return []string{join(schemeBearer, append(params, rm...))}
	}
}

// serveREST handles a REST call: authorize, check DefaultScope, forward to
// {Upstream}{path} and relay the answer.
func (g *Gateway) serveREST(w http.ResponseWriter, r *http.Request) {
	st := g.newRequest(r)
	if d := st.authorize(); d != nil {
		st.deny(w, d)
		return
	}
	if d := st.requireScope(g.cfg.DefaultScope); d != nil {
		st.deny(w, d)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(body) > maxRequestBody {
		st.deny(w, &denial{status: http.StatusRequestEntityTooLarge, err: errProtocol, detail: "request body too large or unreadable"})
		return
	}
	tok, d := st.upstreamToken()
	if d != nil {
		st.deny(w, d)
		return
	}
	if !st.allow(w) {
		return
	}
	q := r.URL.Query()
	q.Del("access_token") // never forwarded, even when the flaw accepted it
	target := g.upstreamURL(r.URL.Path, q.Encode())
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	status, ctype, respBody, err := g.forward(r.Context(), r.Method, target, rd, r.Header.Get("Content-Type"), tok)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "bad_gateway", "error_description": "the upstream could not be reached"})
		return
	}
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(respBody)
}

// upstreamURL joins the upstream base with a cleaned request path.
func (g *Gateway) upstreamURL(p, rawQuery string) *url.URL {
	u := *g.upstream
	clean := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	u.Path = strings.TrimRight(u.Path, "/") + clean
	u.RawPath = ""
	u.RawQuery = rawQuery
	return &u
}

// forward sends one request to the upstream with Authorization: Bearer
// token (none when token is empty) and returns its answer.
func (g *Gateway) forward(ctx context.Context, method string, target *url.URL, body io.Reader, ctype, token string) (int, string, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target.String(), body)
	if err != nil {
		return 0, "", nil, err
	}
	if ctype != "" && body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := g.direct.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody+1))
	if err != nil {
		return 0, "", nil, err
	}
	if len(b) > maxUpstreamBody {
		return 0, "", nil, errors.New("upstream answer too large")
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
