package emulator

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/agentsso/agentsso/emulator/audit"
)

// The authorization endpoint: the authorization code grant with PKCE S256
// required for every client (OAuth 2.1), the iss response parameter of
// RFC 9207 on every redirect, resource indicators (RFC 8707), and two ways
// for a user to sign in and consent:
//
//   - headless: login_hint=<username> names a scripted user of the tenant,
//     who signs in and consents (or refuses, if configured with deny: true)
//     at once, without a password. This is how tests and agents drive the
//     flow; it is an emulator's privilege, documented in the README.
//   - a minimal HTML sign-in and consent page for a person, when no
//     login_hint is given.
//
// fosite parses and validates the request (client, redirect URI, scopes
// against the client's, audience, response type, state, PKCE, prompt) and
// issues the code; this file decides who signs in and what is granted.

// Names of the sign-in page's own form fields. They never reach fosite.
const (
	formUsername = "username"
	formPassword = "password"
	formAction   = "action"
	formCSRF     = "csrf"
)

// pageFormLifetime bounds how long a rendered sign-in form can be
// submitted, by the tenant's clock.
const pageFormLifetime = 10 * time.Minute

// csrfCookie binds a rendered sign-in form to the browser it was sent to.
const csrfCookie = "agentsso_authorize"

// storeGoverned pushes fosite's own real-time expiry of authorization
// codes out of the way: the store expires codes by the tenant's clock.
const storeGoverned = 100 * 365 * 24 * time.Hour

// authorize is the authorization endpoint.
func (t *tenant) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := t.provider()
	ev := audit.Event{Endpoint: "authorize"}
	// Parse everything fosite would parse (it reads r.Form and a multipart
	// body) so that nothing reaches it unchecked.
	if err := r.ParseMultipartForm(1 << 20); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		t.authorizeError(w, r, nil, &ev, fosite.ErrInvalidRequest.WithHint("The request is not a valid form: "+err.Error()))
		return
	}
	form := r.Form
	interactive := r.Method == http.MethodPost && r.PostForm.Has(formCSRF)
	login := pageInput{
		username: r.PostForm.Get(formUsername),
		password: r.PostForm.Get(formPassword),
		action:   r.PostForm.Get(formAction),
		csrf:     r.PostForm.Get(formCSRF),
	}
	for _, k := range []string{formUsername, formPassword, formAction, formCSRF} {
		form.Del(k)
	}
	// The authorization request as sent, for the sign-in page's hidden
	// fields and the integrity check of its submission.
	params := cloneValues(form)
	ev.ClientID = form.Get("client_id")
	ev.ScopesRequested = strings.Fields(form.Get("scope"))

	// Refuse what discovery says is not supported before fosite sees it:
	// request objects (fosite would fetch request_uri) and response modes
	// other than query (RFC 9207's iss is only added to query responses).
	var pre error
	switch {
	case form.Has("request"):
		pre = fosite.ErrRequestNotSupported.WithHint("Request objects are not supported (request_parameter_supported is false): send the parameters in the query.")
	case form.Has("request_uri"):
		pre = fosite.ErrRequestURINotSupported.WithHint("request_uri is not supported (request_uri_parameter_supported is false): send the parameters in the query.")
	}
	form.Del("request")
	form.Del("request_uri")
	if form.Get("response_mode") == string(fosite.ResponseModeQuery) {
		form.Del("response_mode") // the default for response_type=code
	}
	// RFC 8707: resource indicators join the requested audience.
	if err := mergeResource(form); err != nil && pre == nil {
		pre = err
	}
	// A client ID metadata document that cannot be used is named here:
	// fosite would only say the client does not exist.
	if id := form.Get("client_id"); pre == nil && isURLClientID(id) && t.client(id) == nil {
		if _, err := t.metadataClient(ctx, id); err != nil {
			t.authorizeError(w, r, nil, &ev, err)
			return
		}
	}

	ar, err := p.NewAuthorizeRequest(ctx, r)
	if err == nil {
		err = pre
	}
	if err != nil {
		t.authorizeError(w, r, ar, &ev, err)
		return
	}
	c, _ := ar.GetClient().(*client)
	if c == nil {
		t.authorizeError(w, r, ar, &ev, fosite.ErrServerError.WithDebug("unexpected client type"))
		return
	}
	ev.ClientID = c.cfg.ID
	if nonce := form.Get("nonce"); nonce != "" && len(nonce) < fosite.MinParameterEntropy {
		t.authorizeError(w, r, ar, &ev, fosite.ErrInsufficientEntropy.WithHintf("The nonce must be at least %d characters long.", fosite.MinParameterEntropy))
		return
	}
	scopes, aud, err := t.authorizeGrant(c, ar)
	if err == nil {
		err = checkDPoPJKT(form) // dpop.go: dpop_jkt (RFC 9449 section 10)
	}
	if err != nil {
		t.authorizeError(w, r, ar, &ev, err)
		return
	}
	ev.ScopesGranted, ev.Aud = scopes, aud

	// Who signs in, and do they consent?
	var u *UserConfig
	prompt := strings.Fields(form.Get("prompt"))
	hint := form.Get("login_hint")
	switch {
	case interactive:
		page := t.newPage(r, c, params, scopes, aud)
		if !t.checkPageToken(ctx, r, params, login.csrf) {
			page.Error = "This sign-in form has expired or was not issued to this browser. Sign in again."
			t.renderPage(w, r, &ev, http.StatusForbidden, page, "sign-in form rejected: bad or expired form token")
			return
		}
		if login.action == "deny" {
			t.authorizeError(w, r, ar, &ev, fosite.ErrAccessDenied.WithHint("The user denied the request on the sign-in page."))
			return
		}
		u = t.user(login.username)
		if u == nil || u.Password == "" || subtle.ConstantTimeCompare([]byte(u.Password), []byte(login.password)) != 1 {
			page.Error = "Unknown user or wrong password."
			page.Username = login.username
			t.renderPage(w, r, &ev, http.StatusOK, page, "sign-in failed: unknown user or wrong password")
			return
		}
	case hint != "":
		if u = t.user(hint); u == nil {
			t.authorizeError(w, r, ar, &ev, fosite.ErrLoginRequired.WithHintf("login_hint %q names no user of tenant %s: name a configured user, or leave login_hint out to sign in on the page.", hint, t.name))
			return
		}
		if u.Deny {
			ev.Sub = u.Subject
			t.authorizeError(w, r, ar, &ev, fosite.ErrAccessDenied.WithHintf("The scripted user %q refuses consent (deny: true).", u.Username))
			return
		}
	case slices.Contains(prompt, "none"):
		t.authorizeError(w, r, ar, &ev, fosite.ErrLoginRequired.WithHint("prompt=none, but no user is signed in: name a scripted user with login_hint."))
		return
	default:
		// A person signs in on the page. Check first what would fail only
		// after they did.
		if err := pagePrecheck(form); err != nil {
			t.authorizeError(w, r, ar, &ev, err)
			return
		}
		t.renderPage(w, r, &ev, http.StatusOK, t.newPage(r, c, params, scopes, aud), "sign-in page shown")
		return
	}
	ev.Sub = u.Subject

	resp, err := t.issueCode(ctx, ar, c, u, scopes, aud)
	if err != nil {
		t.authorizeError(w, r, ar, &ev, err)
		return
	}
	ev.GrantID = ar.GetID()
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusSeeOther
	ev.Reason = "user " + u.Username + " signed in and consented"
	if interactive {
		ev.Reason += " on the page"
	}
	t.event(r, ev)
	p.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// authorizeGrant decides what a request is granted, before anyone signs
// in: the requested scopes (fosite has checked them against the client's)
// or the client's required scopes when none were asked for; the requested
// resources and audiences (fosite has checked them against the client's,
// answering invalid_target) or the client's default audience.
func (t *tenant) authorizeGrant(c *client, ar fosite.AuthorizeRequester) (scopes, aud []string, err error) {
	scopes = ar.GetRequestedScopes()
	if len(scopes) == 0 {
		scopes = c.cfg.RequiredScopes
	}
	aud = ar.GetRequestedAudience()
	if len(aud) == 0 {
		aud = c.cfg.DefaultAudience
	}
	if len(aud) == 0 {
		return nil, nil, ErrInvalidTarget.WithHintf("Name a resource: client %s has no default audience.", c.cfg.ID)
	}
	return slices.Clone(scopes), slices.Clone(aud), nil
}

// issueCode signs u in, grants scopes and aud, and has fosite issue the
// code (and store the PKCE and OpenID Connect sessions).
func (t *tenant) issueCode(ctx context.Context, ar fosite.AuthorizeRequester, c *client, u *UserConfig, scopes, aud []string) (fosite.AuthorizeResponder, error) {
	k, err := t.activeKey()
	if err != nil {
		return nil, fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	for _, s := range scopes {
		ar.GrantScope(s)
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
	// The token endpoint sees the code's requested audience, not its
	// granted one, before it issues: make them the same, so that a
	// resource named there can be checked against the grant.
	ar.SetRequestedAudience(aud)
	tnow := t.clock.Now().UTC().Truncate(time.Second)
	if a, ok := ar.(*fosite.AuthorizeRequest); ok {
		a.RequestedAt = tnow // the grant began now, by the tenant's clock
	}

	sess := NewSession()
	sess.Subject = u.Subject
	sess.Username = u.Username
	sess.ClientID = c.cfg.ID
	sess.Cnf = cnfWith(nil, ar.GetRequestForm().Get(paramDPoPJKT)) // the code is bound to dpop_jkt (dpop.go)
	// fosite's OpenID Connect prompt checks compare auth_time with real
	// time, so it sees real time during NewAuthorizeResponse; the stored
	// session gets the tenant's time right after.
	rnow := time.Now().UTC().Truncate(time.Second)
	sess.Claims = &fjwt.IDTokenClaims{Subject: u.Subject, AuthTime: rnow, RequestedAt: rnow, Extra: map[string]any{}}
	if slices.Contains(scopes, "profile") && u.Name != "" {
		sess.Claims.Extra["name"] = u.Name
	}
	if slices.Contains(scopes, "email") && u.Email != "" {
		sess.Claims.Extra["email"] = u.Email
	}
	// at_hash uses the hash of the ID token's algorithm.
	sess.Headers = &fjwt.Headers{Extra: map[string]any{"alg": k.Alg}}

	resp, err := t.provider().NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		return nil, err
	}
	// The stored requests share this session (fosite's Sanitize copies the
	// request, not the session), and nobody has the code yet.
	sess.Claims.AuthTime, sess.Claims.RequestedAt = tnow, tnow
	sess.SetExpiresAt(fosite.AuthorizeCode, time.Now().UTC().Add(storeGoverned))
	resp.AddParameter("iss", t.issuer()) // RFC 9207
	return resp, nil
}

// authorizeError answers an authorization request that failed: by a
// redirect to the client with error, error_description, state and iss
// (RFC 6749 section 4.1.2.1, RFC 9207) when the client and its redirect
// URI are known and valid, else with a JSON error to the user agent, never
// redirecting to an unverified URI.
func (t *tenant) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, ev *audit.Event, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	ev.Decision = audit.DecisionDeny
	if rfc.CodeField >= 500 {
		ev.Decision = audit.DecisionError
	}
	ev.Reason = rfc.ErrorField + ": " + rfc.GetDescription()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if ar == nil || !ar.IsRedirectURIValid() {
		status := rfc.CodeField
		if status == http.StatusUnauthorized || status < 400 {
			// invalid_client: there is no HTTP authentication to retry here.
			status = http.StatusBadRequest
		}
		ev.Status = status
		t.event(r, *ev)
		writeJSONError(w, status, rfc.ErrorField, rfc.GetDescription())
		return
	}
	u := *ar.GetRedirectURI()
	u.Fragment = ""
	q := u.Query()
	q.Set("error", rfc.ErrorField)
	if d := rfc.GetDescription(); d != "" {
		q.Set("error_description", d)
	}
	if s := ar.GetState(); s != "" {
		q.Set("state", s)
	}
	q.Set("iss", t.issuer())
	u.RawQuery = q.Encode()
	ev.Status = http.StatusSeeOther
	t.event(r, *ev)
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusSeeOther)
}

// pagePrecheck refuses, before a person is asked to sign in, what fosite
// would refuse only once they had: the PKCE and prompt rules, with
// fosite's error values.
func pagePrecheck(form url.Values) error {
	switch m := form.Get("code_challenge_method"); {
	case form.Get("code_challenge") == "":
		return fosite.ErrInvalidRequest.WithHint("Clients must include a code_challenge when performing the authorize code flow, but it is missing.")
	case m == "" || m == "plain":
		return fosite.ErrInvalidRequest.WithHint("Clients must use code_challenge_method=S256, plain is not allowed.")
	case m != "S256":
		return fosite.ErrInvalidRequest.WithHint("The code_challenge_method is not supported, use S256 instead.")
	}
	for _, p := range strings.Fields(form.Get("prompt")) {
		if !slices.Contains([]string{"login", "consent", "select_account"}, p) {
			return fosite.ErrInvalidRequest.WithHintf("Used unknown value '%s' for prompt parameter", p)
		}
	}
	return nil
}

// --- the sign-in and consent page ---

type pageInput struct{ username, password, action, csrf string }

type pageField struct{ Name, Value string }

type pageData struct {
	Tenant     string
	Issuer     string
	ClientID   string
	ClientName string
	Scopes     []string
	Audience   []string
	Action     string
	Hidden     []pageField
	CSRF       string
	Username   string
	Error      string

	cookie string
}

var pageTemplate = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to {{.Tenant}} · agentsso</title>
<style>
body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:0 .2rem}
.error{color:#a00;font-weight:bold}
label{display:block;margin:.6rem 0}
input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}
button{margin:.8rem .6rem 0 0;padding:.4rem 1rem}
</style>
</head>
<body>
<main>
<h1>Sign in to {{.Tenant}}</h1>
<p><strong>{{.ClientName}}</strong> (client <code>{{.ClientID}}</code>) asks to act for you at <code>{{.Issuer}}</code>.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<h2>It asks for these scopes</h2>
<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{else}}<li>none</li>{{end}}</ul>
<h2>For these resources</h2>
<ul>{{range .Audience}}<li><code>{{.}}</code></li>{{end}}</ul>
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<input type="hidden" name="csrf" value="{{.CSRF}}">
<label>Username <input type="text" name="username" value="{{.Username}}" autocomplete="username" autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>
<button type="submit" name="action" value="approve">Sign in and allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</main>
</body>
</html>
`))

// newPage prepares the sign-in page for an authorization request, with a
// fresh form token bound to the request's parameters and to the browser.
func (t *tenant) newPage(r *http.Request, c *client, params url.Values, scopes, aud []string) *pageData {
	name := c.cfg.Name
	if name == "" {
		name = c.cfg.ID
	}
	d := &pageData{
		Tenant:     t.name,
		Issuer:     t.issuer(),
		ClientID:   c.cfg.ID,
		ClientName: name,
		Scopes:     scopes,
		Audience:   aud,
		Action:     "/t/" + t.name + "/authorize",
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		for _, v := range params[k] {
			d.Hidden = append(d.Hidden, pageField{k, v})
		}
	}
	d.cookie = formBinding(r, csrfCookie)
	d.CSRF = t.formToken(r.Context(), "authorize", d.cookie, params.Encode())
	return d
}

// checkPageToken verifies a submitted sign-in form token against the
// submitted parameters, the browser's binding cookie and the tenant's clock.
func (t *tenant) checkPageToken(_ context.Context, r *http.Request, params url.Values, tok string) bool {
	return t.checkFormToken(r, csrfCookie, "authorize", tok, params.Encode())
}

// renderPage writes the sign-in page and its audit event.
func (t *tenant) renderPage(w http.ResponseWriter, r *http.Request, ev *audit.Event, status int, d *pageData, reason string) {
	t.render(w, r, ev, signInPage, status, d.Error, d.cookie, reason, d)
}

// signInPage is the sign-in and consent page. Its cookie is Lax: the page
// is reached by a redirect from the client. No form-action: some browsers
// apply it to the redirect that follows the form's submission, which goes
// to the client.
var signInPage = htmlPage{
	cookie: csrfCookie, path: "/authorize", sameSite: http.SameSiteLaxMode, tmpl: pageTemplate,
	csp: "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// --- token endpoint: the authorization_code and refresh_token grants ---

// userGrantPolicy applies agentsso's rules to an access request that
// fosite has accepted, before the response is built:
//
//   - RFC 8707 at the token endpoint: for the authorization_code and
//     refresh_token grants, a resource (or audience) on the request must be
//     part of the grant (else invalid_target) and narrows the access
//     token's aud to it; the grant, and so the refresh token, keeps its
//     whole audience (see tokenAudience);
//   - the grant's time (requested_at, stored with a refresh token) is the
//     tenant's clock, and refresh tokens expire by the store alone, which
//     follows that clock.
func (t *tenant) userGrantPolicy(ar fosite.AccessRequester) error {
	if a, ok := ar.(*fosite.AccessRequest); ok {
		a.RequestedAt = t.clock.Now().UTC()
	}
	gt := ar.GetGrantTypes()
	var granted []string
	switch {
	case gt.ExactOne(GrantAuthorizationCode):
		// fosite has set the code's requested audience, which the
		// authorization endpoint made equal to its granted audience.
		granted = ar.GetRequestedAudience()
	case gt.ExactOne(GrantRefreshToken):
		granted = ar.GetGrantedAudience()
	default:
		return nil
	}
	if s := ar.GetSession(); s != nil {
		s.SetExpiresAt(fosite.RefreshToken, time.Time{})
	}
	for _, a := range fosite.GetAudiences(ar.GetRequestForm()) {
		if !slices.Contains(granted, a) {
			return ErrInvalidTarget.WithHintf("The resource %q is not part of this grant (granted: %s); RFC 8707 only lets a token request narrow the grant's resources.", a, strings.Join(granted, " "))
		}
	}
	return nil
}

// tokenAudience is the aud of an access token issued for r: the grant's
// audience, narrowed for the authorization_code and refresh_token grants
// to the resources the token request names (checked by userGrantPolicy).
func tokenAudience(r fosite.Requester) []string {
	aud := r.GetGrantedAudience()
	form := r.GetRequestForm()
	if gt := form.Get("grant_type"); gt != GrantAuthorizationCode && gt != GrantRefreshToken {
		return aud
	}
	want := fosite.GetAudiences(form)
	if len(want) == 0 {
		return aud
	}
	var out []string
	for _, a := range want {
		if slices.Contains(aud, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// --- ID tokens ---

// idTokenStrategy issues OpenID Connect ID tokens with the tenant's key
// and clock. It replaces fosite's DefaultStrategy, which takes iat and exp
// from real time and refuses an auth_time ahead of it, so a tenant whose
// clock runs ahead could not sign anyone in.
type idTokenStrategy struct{ t *tenant }

var _ openid.OpenIDConnectTokenStrategy = (*idTokenStrategy)(nil)

// GenerateIDToken implements openid.OpenIDConnectTokenStrategy.
func (s *idTokenStrategy) GenerateIDToken(_ context.Context, lifespan time.Duration, req fosite.Requester) (string, error) {
	sess, ok := req.GetSession().(openid.Session)
	if !ok {
		return "", fosite.ErrServerError.WithDebug("The session is not an OpenID Connect session.")
	}
	claims := sess.IDTokenClaims()
	if claims.Subject == "" {
		return "", fosite.ErrServerError.WithDebug("No user signed in: an ID token needs a subject.")
	}
	clientID := req.GetClient().GetID()
	if l := s.t.lifetimes(clientID).IDToken; l > 0 {
		lifespan = l
	}
	if lifespan <= 0 {
		lifespan = DefaultIDTokenLifetime
	}
	now := s.t.clock.Now().UTC()
	c := *claims
	c.Extra = maps.Clone(claims.Extra)
	c.Issuer = s.t.issuer()
	c.Audience = []string{clientID}
	c.IssuedAt = now
	c.ExpiresAt = now.Add(lifespan)
	if c.AuthTime.IsZero() {
		c.AuthTime = now
	}
	form := req.GetRequestForm()
	if form.Get("grant_type") != GrantRefreshToken {
		c.Nonce = form.Get("nonce") // the authorization request's
	} else {
		c.Nonce = "" // OpenID Connect Core 12.2: a refreshed ID token has none
	}
	k, err := s.t.activeKey()
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(c.ToMapClaims())
	if err != nil {
		return "", err
	}
	return k.sign("JWT", payload)
}

// --- userinfo (OpenID Connect Core 5.3) ---

// userinfo is the OpenID Connect userinfo endpoint. The access token comes
// in the Authorization header, or in a POST form body (RFC 6750 section
// 2.2), never in the query string.
func (t *tenant) userinfo(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Endpoint: "userinfo"}
	tok, isDPoP, err := userinfoToken(r) // dpop.go: the DPoP scheme, or Bearer
	if err != nil {
		t.userinfoError(w, r, &ev, isDPoP, err)
		return
	}
	c, err := t.verifyAccessToken(tok)
	if c != nil {
		ev.ClientID, ev.Sub, ev.Jti, ev.GrantID, ev.Aud = c.ClientID, c.Subject, c.ID, c.GrantID, c.Audience
		ev.ScopesGranted = c.Scopes()
	}
	if err != nil {
		t.userinfoError(w, r, &ev, isDPoP, &bearerErr{http.StatusUnauthorized, "invalid_token", "The access token is not valid: " + err.Error() + "."})
		return
	}
	if err := t.userinfoDPoP(w, r, c, tok, isDPoP); err != nil { // RFC 9449 section 7
		t.userinfoError(w, r, &ev, isDPoP, err)
		return
	}
	// RFC 8705 section 3 and ctx.net (mtls.go, context.go).
	if msg := t.checkCertificateBinding(r, c) + checkContextBinding(r, c); msg != "" {
		t.userinfoError(w, r, &ev, isDPoP, &bearerErr{http.StatusUnauthorized, "invalid_token", msg})
		return
	}
	if !slices.Contains(c.Scopes(), "openid") {
		t.userinfoError(w, r, &ev, isDPoP, &bearerErr{http.StatusForbidden, "insufficient_scope", "The access token was not granted the openid scope."})
		return
	}
	u := t.userBySubject(c.Subject)
	if u == nil {
		t.userinfoError(w, r, &ev, isDPoP, &bearerErr{http.StatusUnauthorized, "invalid_token", "The access token's subject is not a user of tenant " + t.name + "."})
		return
	}
	out := map[string]any{"sub": u.Subject}
	if slices.Contains(c.Scopes(), "profile") && u.Name != "" {
		out["name"] = u.Name
	}
	if slices.Contains(c.Scopes(), "email") && u.Email != "" {
		out["email"] = u.Email
	}
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusOK
	t.event(r, ev)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// userBySubject finds a user by the subject its tokens carry.
func (t *tenant) userBySubject(sub string) *UserConfig {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, u := range t.users {
		if u.Subject == sub {
			return u
		}
	}
	return nil
}

// bearerErr is an RFC 6750 section 3.1 error.
type bearerErr struct {
	status      int
	code        string // empty: no credentials were sent (section 3.1)
	description string
}

func (e *bearerErr) Error() string { return e.code + ": " + e.description }

// bearerToken extracts the access token of a request: from the
// Authorization header, or from a form-encoded POST body. Exactly one
// method may be used (RFC 6750 section 2).
func bearerToken(r *http.Request) (string, error) {
	if r.URL.Query().Has("access_token") {
		return "", &bearerErr{http.StatusBadRequest, "invalid_request", "Send the access token in the Authorization header (or a POST form body), never in the query string."}
	}
	var fromBody string
	if r.Method == http.MethodPost && strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "application/x-www-form-urlencoded") {
		if err := r.ParseForm(); err != nil {
			return "", &bearerErr{http.StatusBadRequest, "invalid_request", "The request body is not a valid form."}
		}
		if vs := r.PostForm["access_token"]; len(vs) > 1 {
			return "", &bearerErr{http.StatusBadRequest, "invalid_request", "Send one access_token."}
		}
		fromBody = r.PostForm.Get("access_token")
	}
	h := r.Header.Get("Authorization")
	switch {
	case h != "" && fromBody != "":
		return "", &bearerErr{http.StatusBadRequest, "invalid_request", "Send the access token in the Authorization header or in the body, not both."}
	case h == "" && fromBody == "":
		return "", &bearerErr{http.StatusUnauthorized, "", "No access token: send Authorization: Bearer <token>."}
	case fromBody != "":
		return fromBody, nil
	}
	scheme, tok, _ := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", &bearerErr{http.StatusUnauthorized, "invalid_token", "The Authorization header must be: Bearer <token>."}
	}
	return tok, nil
}

// bearerError answers an RFC 6750 error with its WWW-Authenticate
// challenge, and records it.
func (t *tenant) bearerError(w http.ResponseWriter, r *http.Request, ev *audit.Event, err error) {
	var be *bearerErr
	if !errors.As(err, &be) {
		be = &bearerErr{http.StatusUnauthorized, "invalid_token", err.Error()}
	}
	ev.Decision, ev.Status, ev.Reason = audit.DecisionDeny, be.status, be.Error()
	t.event(r, *ev)
	ch := `Bearer realm="` + challengeValue(t.issuer()) + `"`
	if be.code != "" {
		ch += `, error="` + be.code + `", error_description="` + challengeValue(be.description) + `"`
	}
	if be.code == "insufficient_scope" {
		ch += `, scope="openid"`
	}
	w.Header().Set("WWW-Authenticate", ch)
	if be.code == "" {
		w.Header().Add("WWW-Authenticate", dpopChallenge("", "")) // RFC 9449 section 7.1
	}
	w.Header().Set("Cache-Control", "no-store")
	if be.code == "" {
		w.WriteHeader(be.status)
		return
	}
	writeJSONError(w, be.status, be.code, be.description)
}

// challengeValue keeps to the characters RFC 6750 section 3 allows in
// error_description (printable ASCII except '"' and '\'), and to a length
// a header can carry.
func challengeValue(s string) string {
	b := make([]byte, 0, min(len(s), 300))
	for i := 0; i < len(s) && len(b) < 300; i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\'')
		case c >= 0x20 && c <= 0x7e:
			b = append(b, c)
		default:
			b = append(b, '?')
		}
	}
	return string(b)
}
