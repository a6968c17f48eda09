package emulator

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	fjwt "github.com/ory/fosite/token/jwt"

	"github.com/agentsso/agentsso/emulator/audit"
)

// The device authorization grant (RFC 8628), for headless agents.
//
//   - POST /t/{tenant}/device_authorization: a client whose grant_types
//     include urn:ietf:params:oauth:grant-type:device_code authenticates
//     as at the token endpoint (a public client sends its client_id) and
//     names scope and resource/audience as for the other grants: scopes
//     must be the client's (the client's required scopes when none are
//     named), resources and audiences the client's (its default audience
//     when none is named, invalid_target when it has none). The answer is
//     a device_code (a 256-bit secret, kept by the emulator), a user_code
//     of 8 letters without vowels (BCDF-GHJK; case, spaces and dashes are
//     ignored when it is typed), verification_uri (/t/{tenant}/device),
//     verification_uri_complete, expires_in (600) and interval (5).
//   - The token endpoint's device_code grant answers authorization_pending
//     until a user decides; slow_down when the client polls sooner than
//     its interval after its previous poll, and then adds 5 seconds to the
//     interval (RFC 8628 section 3.5); access_denied once the user denied;
//     expired_token once the code expired; invalid_grant for an unknown
//     code, another client's, or one already used. Once approved, one
//     poll gets the tokens, for the approving user (sub is the user's
//     subject), with a refresh token when offline_access was granted and
//     the client may use refresh_token.
//   - A user decides on the page at /t/{tenant}/device (enter the user
//     code, see the client and what it asks for, sign in as a scripted
//     user with its password, approve or deny), or headlessly: a POST to
//     the same URL with user_code and username (no password: the
//     emulator's privilege, as login_hint is at the authorization
//     endpoint) approves as that scripted user, or denies when the user
//     is configured with deny: true or the form says action=deny. The
//     admin API approves or denies by user code (docs/ADMIN.md).
//
// Every time is the tenant's clock. At most maxDeviceCodes codes are kept
// per tenant; past that, the oldest is dropped.

const (
	// deviceCodeLifetime is how long a device code and its user code live.
	deviceCodeLifetime = 10 * time.Minute
	// deviceInterval is the polling interval a client starts with.
	deviceInterval = 5 * time.Second
	// deviceSlowDown is what slow_down adds to the interval.
	deviceSlowDown = 5 * time.Second
	// deviceKeep is how long an expired code is remembered, so that its
	// client is told expired_token rather than invalid_grant.
	deviceKeep = 10 * time.Minute
	// maxDeviceCodes bounds the codes a tenant keeps.
	maxDeviceCodes = 4096
	// userCodeAlphabet is RFC 8628 section 6.1's example: 20 consonants,
	// no vowels (no words), no look-alikes.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLength   = 8
)

// RFC 8628 section 3.5 token endpoint errors. fosite has none of them;
// errors.Is matches them by error code.
var (
	ErrAuthorizationPending = &fosite.RFC6749Error{
		ErrorField:       "authorization_pending",
		DescriptionField: "The authorization request is still pending: the user has not approved or denied it yet.",
		CodeField:        http.StatusBadRequest,
	}
	ErrSlowDown = &fosite.RFC6749Error{
		ErrorField:       "slow_down",
		DescriptionField: "The authorization request is still pending, and the client polls too fast.",
		CodeField:        http.StatusBadRequest,
	}
	ErrExpiredToken = &fosite.RFC6749Error{
		ErrorField:       "expired_token",
		DescriptionField: "The device_code has expired: start a new device authorization request.",
		CodeField:        http.StatusBadRequest,
	}
	// ErrDeviceAccessDenied is access_denied as RFC 8628 answers it at
	// the token endpoint: with 400, as RFC 6749 section 5.2 does.
	ErrDeviceAccessDenied = &fosite.RFC6749Error{
		ErrorField:       "access_denied",
		DescriptionField: "The user denied the authorization request.",
		CodeField:        http.StatusBadRequest,
	}
)

// Device code states.
const (
	DeviceStatusPending  = "pending"
	DeviceStatusApproved = "approved"
	DeviceStatusDenied   = "denied"
	DeviceStatusIssued   = "issued" // approved, and the tokens were collected
	DeviceStatusExpired  = "expired"
)

// ErrUserCode: the user code names no device authorization request of
// the tenant that is still waiting for a decision (unknown, expired, or
// already decided). The admin API answers it 404 or 409.
var ErrUserCode = errors.New("no pending device authorization request has this user code")

// deviceCodes is a tenant's device authorization requests. The zero
// value is ready to use.
type deviceCodes struct {
	mu     sync.Mutex
	byCode map[string]*deviceEntry // by device_code
	byUser map[string]*deviceEntry // by normalised user code
}

type deviceEntry struct {
	deviceCode string
	userCode   string // normalised: 8 letters of userCodeAlphabet
	clientID   string
	scopes     []string
	audience   []string
	created    time.Time
	expires    time.Time
	interval   time.Duration
	lastPoll   time.Time
	status     string
	user       UserConfig // who decided
	decided    time.Time
	via        string // page, headless, admin
}

// DeviceCode is a device authorization request as the admin API shows
// it: never the device_code itself, which is the client's secret.
type DeviceCode struct {
	UserCode  string    `json:"user_code"` // as shown to the user, BCDF-GHJK
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	Audience  []string  `json:"audience"`
	Status    string    `json:"status"` // pending, approved, denied, issued, expired
	Username  string    `json:"username,omitempty"`
	Subject   string    `json:"subject,omitempty"`
	Via       string    `json:"via,omitempty"` // page, headless or admin
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Interval  int       `json:"interval"` // seconds, as slow_down raised it
}

func (e *deviceEntry) view(now time.Time) DeviceCode {
	st := e.status
	if st == DeviceStatusPending && !now.Before(e.expires) {
		st = DeviceStatusExpired
	}
	d := DeviceCode{
		UserCode:  formatUserCode(e.userCode),
		ClientID:  e.clientID,
		Scopes:    slices.Clone(e.scopes),
		Audience:  slices.Clone(e.audience),
		Status:    st,
		Via:       e.via,
		CreatedAt: e.created.UTC(),
		ExpiresAt: e.expires.UTC(),
		Interval:  int(e.interval / time.Second),
	}
	if e.user.Username != "" {
		d.Username, d.Subject = e.user.Username, e.user.Subject
	}
	if d.Scopes == nil {
		d.Scopes = []string{}
	}
	return d
}

func (d *deviceCodes) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byCode, d.byUser = nil, nil
}

// pruneLocked forgets codes expired more than deviceKeep ago, and the
// oldest codes while there are too many.
func (d *deviceCodes) pruneLocked(now time.Time) {
	for k, e := range d.byCode {
		if now.After(e.expires.Add(deviceKeep)) {
			delete(d.byCode, k)
			delete(d.byUser, e.userCode)
		}
	}
	for len(d.byCode) >= maxDeviceCodes {
		var oldest *deviceEntry
		for _, e := range d.byCode {
			if oldest == nil || e.created.Before(oldest.created) {
				oldest = e
			}
		}
		delete(d.byCode, oldest.deviceCode)
		delete(d.byUser, oldest.userCode)
	}
}

// create starts a device authorization request.
func (d *deviceCodes) create(clientID string, scopes, aud []string, now time.Time) *deviceEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byCode == nil {
		d.byCode, d.byUser = map[string]*deviceEntry{}, map[string]*deviceEntry{}
	}
	d.pruneLocked(now)
	var b [32]byte
	_, _ = rand.Read(b[:])
	e := &deviceEntry{
		deviceCode: base64.RawURLEncoding.EncodeToString(b[:]),
		clientID:   clientID,
		scopes:     slices.Clone(scopes),
		audience:   slices.Clone(aud),
		created:    now,
		expires:    now.Add(deviceCodeLifetime),
		interval:   deviceInterval,
		status:     DeviceStatusPending,
	}
	for {
		e.userCode = newUserCode()
		if _, taken := d.byUser[e.userCode]; !taken {
			break
		}
	}
	d.byCode[e.deviceCode] = e
	d.byUser[e.userCode] = e
	return e
}

// newUserCode draws userCodeLength letters of userCodeAlphabet uniformly.
func newUserCode() string {
	out := make([]byte, 0, userCodeLength)
	var buf [16]byte
	for len(out) < userCodeLength {
		_, _ = rand.Read(buf[:])
		for _, c := range buf {
			// 240 is the largest multiple of 20 not above 256.
			if c < 240 && len(out) < userCodeLength {
				out = append(out, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
			}
		}
	}
	return string(out)
}

// normalizeUserCode reads a user code as a person may type it: any case,
// with spaces and dashes. It returns "" when it is not one.
func normalizeUserCode(s string) string {
	if len(s) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ' || r == '\t':
		case r < 128 && strings.ContainsRune(userCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return ""
		}
	}
	if b.Len() != userCodeLength {
		return ""
	}
	return b.String()
}

func formatUserCode(c string) string {
	if len(c) != userCodeLength {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// poll is one poll of the token endpoint. It returns a copy of the entry
// when the tokens may be issued (marking it issued), or the RFC 8628
// error.
//
// A resource or audience named at the token request must be part of the
// grant (else invalid_target, and the code stays usable); the token
// carries the grant's whole audience.
func (d *deviceCodes) poll(code, clientID string, wantAud []string, now time.Time) (deviceEntry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byCode[code]
	if !ok || subtle.ConstantTimeCompare([]byte(e.deviceCode), []byte(code)) != 1 {
		return deviceEntry{}, fosite.ErrInvalidGrant.WithHint("The device_code is unknown: it was never issued, or expired long ago.")
	}
	if e.clientID != clientID {
		return deviceEntry{}, fosite.ErrInvalidGrant.WithHint("The device_code was issued to another client.")
	}
	last := e.lastPoll
	e.lastPoll = now
	switch {
	case e.status == DeviceStatusIssued:
		return deviceEntry{}, fosite.ErrInvalidGrant.WithHint("The device_code was already used to obtain tokens.")
	case !now.Before(e.expires):
		return deviceEntry{}, ErrExpiredToken.WithHintf("It expired at %s (tenant time %s).", e.expires.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case e.status == DeviceStatusDenied:
		return deviceEntry{}, ErrDeviceAccessDenied.WithHintf("User %q denied it.", e.user.Username)
	case e.status == DeviceStatusApproved:
		for _, a := range wantAud {
			if !slices.Contains(e.audience, a) {
				return deviceEntry{}, ErrInvalidTarget.WithHintf("The resource %q is not part of this device grant (granted: %s).", a, strings.Join(e.audience, " "))
			}
		}
		e.status = DeviceStatusIssued
		return *e, nil
	case !last.IsZero() && now.Sub(last) < e.interval:
		e.interval += deviceSlowDown
		return deviceEntry{}, ErrSlowDown.WithHintf("Poll at most every %d seconds: the interval is now %d seconds (RFC 8628 section 3.5).", int((e.interval-deviceSlowDown)/time.Second), int(e.interval/time.Second))
	default:
		return deviceEntry{}, ErrAuthorizationPending.WithHintf("Poll again in %d seconds.", int(e.interval/time.Second))
	}
}

// decide approves (as u) or denies a pending request by its user code.
func (d *deviceCodes) decide(userCode string, u *UserConfig, approve bool, via string, now time.Time) (DeviceCode, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := normalizeUserCode(userCode)
	e, ok := d.byUser[n]
	if n == "" || !ok {
		return DeviceCode{}, fmt.Errorf("user code %q: %w (unknown)", userCode, ErrUserCode)
	}
	if !now.Before(e.expires) {
		return e.view(now), fmt.Errorf("user code %s: %w (it expired at %s)", formatUserCode(n), ErrUserCode, e.expires.UTC().Format(time.RFC3339))
	}
	if e.status != DeviceStatusPending {
		return e.view(now), fmt.Errorf("user code %s: %w (it was already %s)", formatUserCode(n), ErrUserCode, e.status)
	}
	e.status = DeviceStatusDenied
	if approve {
		e.status = DeviceStatusApproved
	}
	if u != nil {
		e.user = *u
	}
	e.decided, e.via = now, via
	return e.view(now), nil
}

// pending looks up a request waiting for a decision.
func (d *deviceCodes) pending(userCode string, now time.Time) (DeviceCode, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byUser[normalizeUserCode(userCode)]
	if !ok || e.status != DeviceStatusPending || !now.Before(e.expires) {
		return DeviceCode{}, false
	}
	return e.view(now), true
}

func (d *deviceCodes) list(all bool, now time.Time) []DeviceCode {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []DeviceCode{}
	for _, e := range d.byCode {
		v := e.view(now)
		if all || v.Status == DeviceStatusPending {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].UserCode < out[j].UserCode
	})
	return out
}

// --- the device authorization endpoint (RFC 8628 section 3.1) ---

// deviceAuthorizationResponse is RFC 8628 section 3.2's answer.
type deviceAuthorizationResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

func (t *tenant) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Endpoint: "device_authorization", GrantType: GrantDeviceCode}
	c, err := t.authenticateClient(r.Context(), r)
	if err != nil {
		ev.ClientID = requestClientID(r, r.PostForm)
		t.formError(w, r, &ev, err)
		return
	}
	ev.ClientID = c.cfg.ID
	form := r.PostForm
	ev.ScopesRequested = strings.Fields(form.Get("scope"))
	scopes, aud, err := deviceGrant(c, form)
	if err != nil {
		t.formError(w, r, &ev, err)
		return
	}
	now := t.clock.Now()
	e := t.devices.create(c.cfg.ID, scopes, aud, now)
	uri := t.issuer() + "/device"
	out := deviceAuthorizationResponse{
		DeviceCode:              e.deviceCode,
		UserCode:                formatUserCode(e.userCode),
		VerificationURI:         uri,
		VerificationURIComplete: uri + "?user_code=" + url.QueryEscape(formatUserCode(e.userCode)),
		ExpiresIn:               int(deviceCodeLifetime / time.Second),
		Interval:                int(deviceInterval / time.Second),
	}
	ev.ScopesGranted, ev.Aud = scopes, aud
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusOK
	ev.Reason = "device code issued, user code " + out.UserCode
	t.event(r, ev)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, out)
}

// deviceGrant decides the scopes and audience of a device authorization
// request, as the client_credentials grant does.
func deviceGrant(c *client, form url.Values) (scopes, aud []string, err error) {
	if !c.GetGrantTypes().Has(GrantDeviceCode) {
		return nil, nil, fosite.ErrUnauthorizedClient.WithHintf("The client %q may not use the device authorization grant: add %s to its grant_types.", c.cfg.ID, GrantDeviceCode)
	}
	if len(form["scope"]) > 1 {
		return nil, nil, fosite.ErrInvalidRequest.WithHint("The scope parameter is included more than once.")
	}
	for _, s := range fosite.RemoveEmpty(strings.Split(form.Get("scope"), " ")) {
		if !slices.Contains(c.GetScopes(), s) {
			return nil, nil, fosite.ErrInvalidScope.WithHintf("The client %q may not request scope %q.", c.cfg.ID, s)
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	if len(scopes) == 0 {
		scopes = slices.Clone(c.cfg.RequiredScopes)
	}
	if err := mergeResource(form); err != nil {
		return nil, nil, err
	}
	aud = fosite.GetAudiences(form)
	if err := audienceStrategy(c.GetAudience(), aud); err != nil {
		return nil, nil, err
	}
	if len(aud) == 0 {
		aud = slices.Clone(c.cfg.DefaultAudience)
	}
	if len(aud) == 0 {
		return nil, nil, ErrInvalidTarget.WithHintf("Name a resource or audience: client %s has no default audience.", c.cfg.ID)
	}
	return scopes, aud, nil
}

// --- the token endpoint: the device_code grant (RFC 8628 section 3.4) ---

// deviceHandler is the device_code grant, plugged into fosite's token
// endpoint. Client authentication is fosite's (a public client sends its
// client_id).
type deviceHandler struct {
	t       *tenant
	helper  *oauth2.HandleHelper
	refresh oauth2.RefreshTokenStrategy
	storage oauth2.RefreshTokenStorage
}

var _ fosite.TokenEndpointHandler = (*deviceHandler)(nil)

func (h *deviceHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantDeviceCode)
}

func (h *deviceHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool { return false }

// HandleTokenEndpointRequest answers a poll: an RFC 8628 error, or a
// session for the approving user.
func (h *deviceHandler) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	c, _ := r.GetClient().(*client)
	if c == nil {
		return fosite.ErrInvalidClient
	}
	if !c.GetGrantTypes().Has(GrantDeviceCode) {
		return fosite.ErrUnauthorizedClient.WithHintf("The client %q may not use the device authorization grant: add %s to its grant_types.", c.cfg.ID, GrantDeviceCode)
	}
	sess, ok := r.GetSession().(*Session)
	if !ok || sess == nil {
		return fosite.ErrServerError.WithHint("Unexpected session type.")
	}
	form := r.GetRequestForm()
	if len(form["device_code"]) != 1 || form.Get("device_code") == "" {
		return fosite.ErrInvalidRequest.WithHint("Send the device_code parameter exactly once.")
	}
	now := h.t.clock.Now()
	e, err := h.t.devices.poll(form.Get("device_code"), c.cfg.ID, fosite.GetAudiences(form), now)
	if err != nil {
		return err
	}
	u := e.user
	sess.Subject = u.Subject
	sess.Username = u.Username
	sess.ClientID = c.cfg.ID
	at := e.decided.UTC().Truncate(time.Second)
	sess.Claims = &fjwt.IDTokenClaims{Subject: u.Subject, AuthTime: at, RequestedAt: e.created.UTC().Truncate(time.Second), Extra: map[string]any{}}
	if slices.Contains(e.scopes, "profile") && u.Name != "" {
		sess.Claims.Extra["name"] = u.Name
	}
	if slices.Contains(e.scopes, "email") && u.Email != "" {
		sess.Claims.Extra["email"] = u.Email
	}
	r.SetRequestedScopes(e.scopes)
	for _, s := range e.scopes {
		r.GrantScope(s)
	}
	r.SetRequestedAudience(e.audience)
	for _, a := range e.audience {
		r.GrantAudience(a)
	}
	return nil
}

// PopulateTokenEndpointResponse issues the access token, and a refresh
// token when offline_access was granted and the client may refresh.
func (h *deviceHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	sig, err := h.helper.IssueAccessToken(ctx, h.t.lifetimes(r.GetClient().GetID()).AccessToken, r, resp)
	if err != nil {
		return err
	}
	if !r.GetGrantedScopes().HasOneOf("offline_access", "offline") || !r.GetClient().GetGrantTypes().Has(GrantRefreshToken) {
		return nil
	}
	rt, rsig, err := h.refresh.GenerateRefreshToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	if err := h.storage.CreateRefreshTokenSession(ctx, rsig, sig, r.Sanitize([]string{})); err != nil {
		return fosite.ErrServerError.WithWrap(err).WithDebug(err.Error())
	}
	resp.SetExtra("refresh_token", rt)
	return nil
}

// newDeviceHandler builds the device_code grant for tenant.build.
func (t *tenant) newDeviceHandler(strategy *tokenStrategy, cfg *fosite.Config) *deviceHandler {
	return &deviceHandler{
		t:       t,
		helper:  &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: t.store, Config: cfg},
		refresh: strategy,
		storage: t.store,
	}
}

// --- the verification page, and headless approval ---

const deviceCookie = "agentsso_device"

type devicePageData struct {
	Tenant     string
	Issuer     string
	Action     string
	UserCode   string
	Request    *DeviceCode // the request the user code names, once known
	ClientName string
	CSRF       string
	Username   string
	Error      string
	Done       string

	cookie string
}

var devicePageTemplate = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect a device to {{.Tenant}} · agentsso</title>
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
<h1>Connect a device to {{.Tenant}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Done}}<p role="status">{{.Done}}</p>
{{else if .Request}}<p><strong>{{.ClientName}}</strong> (client <code>{{.Request.ClientID}}</code>) asks to act for you at <code>{{.Issuer}}</code>, with user code <code>{{.Request.UserCode}}</code>. Check that your device shows the same code.</p>
<h2>It asks for these scopes</h2>
<ul>{{range .Request.Scopes}}<li><code>{{.}}</code></li>{{else}}<li>none</li>{{end}}</ul>
<h2>For these resources</h2>
<ul>{{range .Request.Audience}}<li><code>{{.}}</code></li>{{end}}</ul>
<form method="post" action="{{.Action}}">
<input type="hidden" name="user_code" value="{{.Request.UserCode}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label>Username <input type="text" name="username" value="{{.Username}}" autocomplete="username" autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>
<button type="submit" name="action" value="approve">Sign in and allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
{{else}}<form method="get" action="{{.Action}}">
<label>Enter the code your device shows <input type="text" name="user_code" value="{{.UserCode}}" autocomplete="off" autofocus placeholder="BCDF-GHJK"></label>
<button type="submit">Continue</button>
</form>
{{end}}</main>
</body>
</html>
`))

// device serves the verification page (GET, and POST with its form
// token) and headless approval (POST without one).
func (t *tenant) device(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Endpoint: "device", GrantType: GrantDeviceCode}
	if err := r.ParseForm(); err != nil {
		t.deviceAnswer(w, r, &ev, http.StatusBadRequest, "invalid_request", "The request is not a valid form: "+err.Error())
		return
	}
	now := t.clock.Now()
	if r.Method == http.MethodGet {
		code := r.Form.Get("user_code")
		d := t.newDevicePage(r, code)
		if code != "" {
			if req, ok := t.devices.pending(code, now); ok {
				t.fillDevicePage(d, req)
				ev.ClientID = req.ClientID
			} else {
				d.Error = "This code is unknown, expired or already used. Check the code your device shows."
			}
		}
		t.renderDevicePage(w, r, &ev, http.StatusOK, d, "device page shown")
		return
	}
	form := r.PostForm
	code := form.Get("user_code")
	if !form.Has("csrf") {
		t.deviceHeadless(w, r, &ev, code, form.Get("username"), form.Get("action"))
		return
	}
	d := t.newDevicePage(r, "")
	if !t.checkDeviceToken(r, form.Get("csrf")) {
		d.Error = "This form has expired or was not issued to this browser. Enter the code again."
		t.renderDevicePage(w, r, &ev, http.StatusForbidden, d, "device form rejected: bad or expired form token")
		return
	}
	req, ok := t.devices.pending(code, now)
	if !ok {
		d.UserCode = code
		d.Error = "This code is unknown, expired or already used. Check the code your device shows."
		t.renderDevicePage(w, r, &ev, http.StatusOK, d, "device page: unknown user code")
		return
	}
	ev.ClientID = req.ClientID
	t.fillDevicePage(d, req)
	if form.Get("action") == "deny" {
		if _, err := t.devices.decide(code, nil, false, "page", now); err != nil {
			d.Request, d.Error = nil, "This code was decided meanwhile."
			t.renderDevicePage(w, r, &ev, http.StatusConflict, d, err.Error())
			return
		}
		d.Done = "You denied the request. You may close this window."
		t.renderDevicePage(w, r, &ev, http.StatusOK, d, "user denied device code "+req.UserCode+" on the page")
		return
	}
	u := t.user(form.Get("username"))
	if u == nil || u.Password == "" || subtle.ConstantTimeCompare([]byte(u.Password), []byte(form.Get("password"))) != 1 {
		d.Username = form.Get("username")
		d.Error = "Unknown user or wrong password."
		t.renderDevicePage(w, r, &ev, http.StatusOK, d, "device sign-in failed: unknown user or wrong password")
		return
	}
	ev.Sub = u.Subject
	approve := !u.Deny
	v, err := t.devices.decide(code, u, approve, "page", now)
	if err != nil {
		d.Request, d.Error = nil, "This code was decided meanwhile."
		t.renderDevicePage(w, r, &ev, http.StatusConflict, d, err.Error())
		return
	}
	d.Done = "Your device is connected. You may close this window."
	reason := "user " + u.Username + " approved device code " + v.UserCode + " on the page"
	if !approve {
		d.Done = "The request was denied. You may close this window."
		reason = "scripted user " + u.Username + " refuses (deny: true) device code " + v.UserCode
	}
	t.renderDevicePage(w, r, &ev, http.StatusOK, d, reason)
}

// deviceHeadless approves or denies as a scripted user, without a
// password, and answers JSON.
func (t *tenant) deviceHeadless(w http.ResponseWriter, r *http.Request, ev *audit.Event, code, username, action string) {
	switch {
	case code == "":
		t.deviceAnswer(w, r, ev, http.StatusBadRequest, "invalid_request", "The user_code parameter is missing.")
		return
	case username == "":
		t.deviceAnswer(w, r, ev, http.StatusBadRequest, "invalid_request", "The username parameter is missing: name a scripted user of tenant "+t.name+".")
		return
	case action != "" && action != "approve" && action != "deny":
		t.deviceAnswer(w, r, ev, http.StatusBadRequest, "invalid_request", "The action parameter must be approve or deny.")
		return
	}
	u := t.user(username)
	if u == nil {
		t.deviceAnswer(w, r, ev, http.StatusBadRequest, "invalid_request", fmt.Sprintf("The username %q names no user of tenant %s.", username, t.name))
		return
	}
	ev.Sub = u.Subject
	approve := !u.Deny && action != "deny"
	v, err := t.devices.decide(code, u, approve, "headless", t.clock.Now())
	ev.ClientID = v.ClientID
	if err != nil {
		t.deviceAnswer(w, r, ev, http.StatusBadRequest, "invalid_request", err.Error()+".")
		return
	}
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusOK
	ev.Reason = "user " + u.Username + " " + v.Status + " device code " + v.UserCode + " (headless)"
	t.event(r, *ev)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v)
}

// deviceAnswer answers a headless request's error.
func (t *tenant) deviceAnswer(w http.ResponseWriter, r *http.Request, ev *audit.Event, status int, code, desc string) {
	ev.Decision, ev.Status, ev.Reason = audit.DecisionDeny, status, code+": "+desc
	t.event(r, *ev)
	w.Header().Set("Cache-Control", "no-store")
	writeJSONError(w, status, code, desc)
}

func (t *tenant) newDevicePage(r *http.Request, code string) *devicePageData {
	d := &devicePageData{Tenant: t.name, Issuer: t.issuer(), Action: "/t/" + t.name + "/device", UserCode: code}
	d.cookie = formBinding(r, deviceCookie)
	d.CSRF = t.formToken(r.Context(), "device", d.cookie)
	return d
}

func (t *tenant) fillDevicePage(d *devicePageData, req DeviceCode) {
	d.Request = &req
	d.UserCode = req.UserCode
	d.ClientName = req.ClientID
	if c := t.client(req.ClientID); c != nil && c.cfg.Name != "" {
		d.ClientName = c.cfg.Name
	}
}

func (t *tenant) checkDeviceToken(r *http.Request, tok string) bool {
	return t.checkFormToken(r, deviceCookie, "device", tok)
}

func (t *tenant) renderDevicePage(w http.ResponseWriter, r *http.Request, ev *audit.Event, status int, d *devicePageData, reason string) {
	t.render(w, r, ev, devicePage, status, d.Error, d.cookie, reason, d)
}

// devicePage is the device verification page, typed into by the user:
// its cookie is Strict and its forms post to itself only.
var devicePage = htmlPage{
	cookie: deviceCookie, path: "/device", sameSite: http.SameSiteStrictMode, tmpl: devicePageTemplate,
	csp: "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

// --- admin: list, approve, deny ---

// DeviceCodes lists a tenant's device authorization requests that wait
// for a decision (all that are remembered, with all).
func (s *Server) DeviceCodes(tenant string, all bool) ([]DeviceCode, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return nil, err
	}
	return t.devices.list(all, t.clock.Now()), nil
}

// ApproveDevice decides a pending device authorization request as the
// scripted user username: it approves, unless the user is configured
// with deny: true, who denies. The result's Status says which.
func (s *Server) ApproveDevice(tenant, userCode, username string) (DeviceCode, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return DeviceCode{}, err
	}
	if username == "" {
		return DeviceCode{}, badField("username", "missing: name the scripted user who approves")
	}
	u := t.user(username)
	if u == nil {
		return DeviceCode{}, noUser(tenant, username)
	}
	return s.decideDevice(t, userCode, u, !u.Deny)
}

// DenyDevice denies a pending device authorization request.
func (s *Server) DenyDevice(tenant, userCode string) (DeviceCode, error) {
	t, err := s.adminTenant(tenant)
	if err != nil {
		return DeviceCode{}, err
	}
	return s.decideDevice(t, userCode, nil, false)
}

func (s *Server) decideDevice(t *tenant, userCode string, u *UserConfig, approve bool) (DeviceCode, error) {
	v, err := t.devices.decide(userCode, u, approve, "admin", t.clock.Now())
	if err != nil {
		if v.UserCode == "" {
			return DeviceCode{}, &NotFoundError{Kind: "device user code", Name: userCode, Tenant: t.name, Hint: "GET /admin/v1/tenants/" + t.name + "/device lists the pending ones"}
		}
		return v, fmt.Errorf("%w: %w", ErrConflict, err)
	}
	e := audit.Event{Endpoint: "admin.device", ClientID: v.ClientID, GrantType: GrantDeviceCode, Reason: "device code " + v.UserCode + " " + v.Status + " through the admin API"}
	if u != nil {
		e.Sub = u.Subject
	}
	s.adminEvent(t, e)
	return v, nil
}

// DeviceDecision is the body of POST .../device/{user_code}/approve.
type DeviceDecision struct {
	Username string `json:"username"`
}

func (s *Server) admListDevice(r *http.Request) (int, any, error) {
	all := false
	if v := r.URL.Query().Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, nil, badField("all", "%q: want true or false", v)
		}
		all = b
	}
	ds, err := s.DeviceCodes(r.PathValue("tenant"), all)
	return http.StatusOK, ds, err
}

func (s *Server) admApproveDevice(r *http.Request) (int, any, error) {
	var d DeviceDecision
	if err := decodeJSON(r, &d); err != nil {
		return 0, nil, err
	}
	v, err := s.ApproveDevice(r.PathValue("tenant"), r.PathValue("user_code"), d.Username)
	return http.StatusOK, v, err
}

func (s *Server) admDenyDevice(r *http.Request) (int, any, error) {
	var d struct{}
	if err := decodeOptional(r, &d); err != nil {
		return 0, nil, err
	}
	v, err := s.DenyDevice(r.PathValue("tenant"), r.PathValue("user_code"))
	return http.StatusOK, v, err
}
