// Package agentlab is the world an agent under test lives in for one
// scenario: an in-process emulator tenant, fake MCP servers (one a decoy),
// a fake model endpoint and a browser shim whose user consents on its own,
// every request to them recorded. The adapter protocol an agent follows is
// docs/AGENTS.md; the scenarios that judge the trace live in package
// conformance.
package agentlab

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentsso/agentsso/internal/jwtpeek"
)

// maxBody bounds what is kept of a request or response body.
const maxBody = 64 << 10

// Record is one request a harness server received.
type Record struct {
	Seq    int        `json:"seq"`
	Time   time.Time  `json:"time"`
	Server string     `json:"server"`
	Method string     `json:"method"`
	Path   string     `json:"path"`
	Query  url.Values `json:"query,omitempty"`
	// Form holds the fields of a form-encoded body.
	Form          url.Values `json:"form,omitempty"`
	Authorization string     `json:"authorization,omitempty"`
	DPoP          []string   `json:"dpop,omitempty"`
	// ClientCert is the SHA-256 thumbprint of the client certificate.
	ClientCert string `json:"client_cert,omitempty"`
	Source     string `json:"source"`
	Body       string `json:"body,omitempty"`
	Status     int    `json:"status"`
	// RespHeader keeps the answer's WWW-Authenticate, Location and
	// DPoP-Nonce headers.
	RespHeader http.Header `json:"resp_header,omitempty"`
	// RespBody is kept for the token and registration endpoints.
	RespBody string `json:"-"`
}

// Token is the credential an Authorization header carries, without its
// scheme.
func (r *Record) Token() (scheme, token string) {
	s, t, ok := strings.Cut(r.Authorization, " ")
	if !ok {
		return "", ""
	}
	return s, strings.TrimSpace(t)
}

// Trace is the ordered list of what every harness server received.
type Trace struct {
	mu      sync.Mutex
	seq     atomic.Int64
	records []Record
	start   time.Time
}

// NewTrace starts an empty trace.
func NewTrace() *Trace { return &Trace{start: time.Now()} }

// Records returns a copy of the records in arrival order.
func (t *Trace) Records() []Record {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]Record(nil), t.records...)
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Filter returns the records of server (all servers when empty) whose path
// ends with suffix (any path when empty).
func (t *Trace) Filter(server, suffix string) []Record {
	var out []Record
	for _, r := range t.Records() {
		if (server == "" || r.Server == server) && (suffix == "" || strings.HasSuffix(r.Path, suffix)) {
			out = append(out, r)
		}
	}
	return out
}

func (t *Trace) add(r Record) {
	t.mu.Lock()
	t.records = append(t.records, r)
	t.mu.Unlock()
}

// Wrap records every request h serves as server.
func (t *Trace) Wrap(server string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := Record{
			Seq:           int(t.seq.Add(1)),
			Time:          time.Now(),
			Server:        server,
			Method:        r.Method,
			Path:          r.URL.Path,
			Authorization: r.Header.Get("Authorization"),
			DPoP:          r.Header.Values("DPoP"),
		}
		if len(r.URL.RawQuery) > 0 {
			rec.Query = r.URL.Query()
		}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			rec.Source = host
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
			rec.ClientCert = hex.EncodeToString(sum[:])
		}
		if r.Body != nil {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(body))
			if len(body) > maxBody {
				rec.Body = string(body[:maxBody])
			} else {
				rec.Body = string(body)
			}
			if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
				if f, err := url.ParseQuery(string(body)); err == nil {
					rec.Form = f
				}
			}
		}
		cw := &captureWriter{ResponseWriter: w, keep: keepResponse(r.URL.Path)}
		h.ServeHTTP(cw, r)
		if cw.status == 0 {
			cw.status = http.StatusOK
		}
		rec.Status = cw.status
		for _, k := range []string{"WWW-Authenticate", "Location", "DPoP-Nonce"} {
			if v := w.Header().Values(k); len(v) > 0 {
				if rec.RespHeader == nil {
					rec.RespHeader = http.Header{}
				}
				rec.RespHeader[http.CanonicalHeaderKey(k)] = v
			}
		}
		rec.RespBody = cw.buf.String()
		t.add(rec)
	})
}

func keepResponse(p string) bool {
	return strings.HasSuffix(p, "/token") || strings.HasSuffix(p, "/register") || strings.HasSuffix(p, "/revoke")
}

type captureWriter struct {
	http.ResponseWriter
	status int
	keep   bool
	buf    bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.keep && c.buf.Len() < maxBody {
		c.buf.Write(b)
	}
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Canary is a secret or token the harness handed out or the IdP issued:
// finding its value anywhere names where it came from.
type Canary struct {
	// Label says what it is: "access token #3 (aud rs1)", "client secret".
	Label string `json:"label"`
	// Kind is access_token, refresh_token, id_token, client_secret,
	// user_token, private_key, model_key, assertion or registration.
	Kind string `json:"kind"`
	// Claims of a JWT.
	Claims map[string]any `json:"claims,omitempty"`
	// Issued is when the harness saw it first; Issuer which AS issued it.
	Issued time.Time `json:"issued"`
	Issuer string    `json:"issuer,omitempty"`
	// ID is how a report names it: a jti or a hash, never the value.
	ID    string `json:"id"`
	value string
}

// Canaries is the registry of every secret value in a world.
type Canaries struct {
	mu    sync.Mutex
	byVal map[string]*Canary
	order []*Canary
}

// NewCanaries makes an empty registry.
func NewCanaries() *Canaries { return &Canaries{byVal: map[string]*Canary{}} }

// Add registers value. JWTs get their claims decoded.
func (c *Canaries) Add(value, kind, label, issuer string) *Canary {
	if value == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if x, ok := c.byVal[value]; ok {
		return x
	}
	x := &Canary{Label: label, Kind: kind, Issued: time.Now(), Issuer: issuer, value: value}
	x.Claims = jwtpeek.Claims(value)
	x.ID = Fingerprint(value)
	if jti, ok := x.Claims["jti"].(string); ok && jti != "" {
		x.ID = "jti:" + jti
	}
	c.byVal[value] = x
	c.order = append(c.order, x)
	return x
}

// Lookup finds the canary a value is.
func (c *Canaries) Lookup(value string) *Canary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byVal[value]
}

// All returns the canaries in registration order.
func (c *Canaries) All() []*Canary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Canary(nil), c.order...)
}

// Find returns every canary whose value occurs in s (also URL-encoded or
// base64url-encoded).
func (c *Canaries) Find(s string) []*Canary {
	if s == "" {
		return nil
	}
	var out []*Canary
	for _, x := range c.All() {
		if len(x.value) < 8 {
			continue
		}
		if strings.Contains(s, x.value) || strings.Contains(s, url.QueryEscape(x.value)) ||
			strings.Contains(s, base64.RawURLEncoding.EncodeToString([]byte(x.value))) ||
			strings.Contains(s, base64.StdEncoding.EncodeToString([]byte(x.value))) {
			out = append(out, x)
		}
	}
	return out
}

// Redact replaces every canary value in s (also URL- or base64-encoded)
// with "<" + its label + ">": what an agent printed may then be shown.
func (c *Canaries) Redact(s string) string {
	for _, x := range c.Find(s) {
		ref := "<" + x.Label + " " + x.ID + ">"
		for _, form := range []string{x.value, url.QueryEscape(x.value),
			base64.RawURLEncoding.EncodeToString([]byte(x.value)), base64.StdEncoding.EncodeToString([]byte(x.value))} {
			s = strings.ReplaceAll(s, form, ref)
		}
	}
	return s
}

// Value returns the canary's secret value, for the harness's own checks;
// it never goes into a report.
func (x *Canary) Value() string { return x.value }

// Exp is the JWT's exp, or zero.
func (x *Canary) Exp() time.Time { return claimTime(x.Claims, "exp") }

// Audiences is the JWT's aud as a list.
func (x *Canary) Audiences() []string { return ClaimStrings(x.Claims, "aud") }

// Fingerprint names a secret in a report: the first 12 hex digits of its
// SHA-256.
func Fingerprint(v string) string {
	sum := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// ClaimStrings reads a string or string-array claim.
func ClaimStrings(c map[string]any, name string) []string {
	switch v := c[name].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func claimTime(c map[string]any, name string) time.Time {
	if f, ok := c[name].(float64); ok {
		return time.Unix(int64(f), 0)
	}
	return time.Time{}
}
