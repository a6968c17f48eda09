package emulator

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentsso/agentsso/emulator/audit"
)

// setPageHeaders sets the headers every HTML page of the emulator sends
// (the sign-in and consent page, the device verification page): never
// cached, never framed, never sniffed, no referrer, and the page's own
// Content-Security-Policy.
func setPageHeaders(h http.Header, csp string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", csp)
}

// htmlPage is one of the tenant's HTML pages: the binding cookie of its
// form tokens, the path the cookie is scoped to, its SameSite mode, its
// Content-Security-Policy and its template.
type htmlPage struct {
	cookie, path string
	sameSite     http.SameSite
	csp          string
	tmpl         *template.Template
}

// render writes page p with data: the audit event (deny for a 4xx or an
// error shown on the page), the binding cookie, the page headers.
func (t *tenant) render(w http.ResponseWriter, r *http.Request, ev *audit.Event, p htmlPage, status int, shownError, cookie, reason string, data any) {
	ev.Decision, ev.Status, ev.Reason = audit.DecisionAllow, status, reason
	if status >= 400 || shownError != "" {
		ev.Decision = audit.DecisionDeny
	}
	t.event(r, *ev)
	http.SetCookie(w, &http.Cookie{
		Name:     p.cookie,
		Value:    cookie,
		Path:     "/t/" + t.name + p.path,
		MaxAge:   int(pageFormLifetime / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: p.sameSite,
	})
	setPageHeaders(w.Header(), p.csp)
	w.WriteHeader(status)
	_ = p.tmpl.Execute(w, data)
}

// Forms of the HTML pages carry a token "<exp>.<mac>": an HMAC, keyed by
// the tenant's fosite secret, over the form's purpose, the tenant, the
// expiry, the browser's binding cookie and any data the form must not
// change (the authorization request's parameters). The binding cookie is
// 32 random bytes, kept while valid so that two tabs work.

// formBinding returns the browser's binding from cookie, or a new one.
func formBinding(r *http.Request, cookie string) string {
	if ck, err := r.Cookie(cookie); err == nil && validBinding(ck.Value) {
		return ck.Value
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validBinding(v string) bool {
	b, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil && len(b) == 32
}

// formToken makes the token of a form rendered now, valid for
// pageFormLifetime by the tenant clock.
func (t *tenant) formToken(ctx context.Context, purpose, binding string, data ...string) string {
	exp := t.clock.Now().Add(pageFormLifetime).Unix()
	return strconv.FormatInt(exp, 10) + "." + t.formMAC(ctx, purpose, exp, binding, data...)
}

func (t *tenant) formMAC(ctx context.Context, purpose string, exp int64, binding string, data ...string) string {
	secret, _ := t.provider().Config.GetGlobalSecret(ctx)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("agentsso " + purpose + " form v1\x00" + t.name + "\x00" + strconv.FormatInt(exp, 10) + "\x00" + binding))
	for _, d := range data {
		m.Write([]byte("\x00" + d))
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkFormToken verifies a submitted form token against the browser's
// binding cookie, the tenant clock and the data.
func (t *tenant) checkFormToken(r *http.Request, cookie, purpose, tok string, data ...string) bool {
	ck, err := r.Cookie(cookie)
	if err != nil || !validBinding(ck.Value) {
		return false
	}
	expStr, mac, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || t.clock.Now().Unix() >= exp {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(t.formMAC(r.Context(), purpose, exp, ck.Value, data...)))
}
