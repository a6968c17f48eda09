package conformance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/agentsso/agentsso/internal/jwtpeek"
)

// caller sends requests to the target from chosen loopback addresses.
type caller struct {
	target  *Target
	timeout time.Duration
	mu      sync.Mutex
	clients map[string]*http.Client
	// dpopKey is the harness's DPoP key: an ECDSA P-256 signer, in memory
	// or held by an HSM or TPM (Options.DPoPKey).
	dpopKey crypto.Signer
	other   crypto.Signer
	jkt     string
	version string
	// roots verify an https target's server certificate (nil: the
	// system's); certs are the client certificates, "bound" and "other";
	// certX5T is the bound one's x5t#S256.
	roots   *x509.CertPool
	certs   map[string]*tls.Certificate
	certX5T string
	// requireCert: the target's handshake needs a client certificate.
	requireCert bool
}

// ClientCA issues the harness's TLS client certificates and is trusted
// for an https target's server certificate. *tlsca.CA (the emulator's
// local CA) is one.
type ClientCA interface {
	ClientCert(cn string, dns, uris []string) (tls.Certificate, error)
	CertFile() string
}

// setupTLS prepares the calls to an https target: the roots that verify
// its server certificate (the system's, the client CA's, the target's
// tls.ca_file) and, with a client CA, two client certificates of that CA.
func (c *caller) setupTLS(ca ClientCA) error {
	t := c.target
	var extra []*x509.Certificate
	if t.TLS != nil {
		c.requireCert = t.TLS.ClientCertRequired
		if t.TLS.CAFile != "" {
			cs, err := readCAFile(t.TLS.CAFile)
			if err != nil {
				return fmt.Errorf("target tls.ca_file: %w", err)
			}
			extra = append(extra, cs...)
		}
	}
	if ca != nil {
		cs, err := readCAFile(ca.CertFile())
		if err != nil {
			return fmt.Errorf("client CA: %w", err)
		}
		extra = append(extra, cs...)
		c.certs = map[string]*tls.Certificate{}
		for name, id := range map[string]string{"bound": "harness", "other": "harness-other"} {
			cert, err := ca.ClientCert("agentsso-"+id, nil, []string{"spiffe://agentsso.test/" + id})
			if err != nil {
				return fmt.Errorf("client CA: %w", err)
			}
			if cert.Leaf == nil {
				if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
					return fmt.Errorf("client CA: %w", err)
				}
			}
			c.certs[name] = &cert
		}
		sum := sha256.Sum256(c.certs["bound"].Leaf.Raw)
		c.certX5T = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if len(extra) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, x := range extra {
			pool.AddCert(x)
		}
		c.roots = pool
	}
	return nil
}

// defaultCert is the client certificate a call presents when its step
// does not say: bound for a certificate-bound token or a target that
// requires one, else none.
func (c *caller) defaultCert(ref *TokenRef) string {
	if c.requireCert {
		return "bound"
	}
	if ref != nil {
		if cnf, ok := ref.Claims["cnf"].(map[string]any); ok && cnf["x5t#S256"] != nil {
			return "bound"
		}
	}
	return "none"
}

func newCaller(t *Target, timeout time.Duration, version string, dpopKey crypto.Signer) (*caller, error) {
	k := dpopKey
	if k == nil {
		mk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		k = mk
	} else if pub, ok := k.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("conformance: the DPoP key must be an ECDSA P-256 key (ES256)")
	}
	o, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: k.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &caller{target: t, timeout: timeout, clients: map[string]*http.Client{}, dpopKey: k, other: o,
		jkt: base64.RawURLEncoding.EncodeToString(tp), version: version}, nil
}

// client is the HTTP client for calls from a source address, presenting
// the default client certificate.
func (c *caller) client(from string) *http.Client { return c.clientFor(from, c.defaultCert(nil)) }

// clientFor is the HTTP client for calls from a source address that
// present a client certificate (bound, other or none): one per pair, so
// that no connection is shared between two TLS identities.
func (c *caller) clientFor(from, cert string) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := from + "|" + cert
	if hc, ok := c.clients[key]; ok {
		return hc
	}
	d := &net.Dialer{Timeout: c.timeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	chosen := c.certs[cert]
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    c.roots,
		// Whatever CAs the server names, present exactly this
		// certificate (or none): the call tests the target, not Go's
		// certificate selection.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if chosen == nil {
				return &tls.Certificate{}, nil
			}
			return chosen, nil
		},
	}
	hc := &http.Client{
		Timeout:       c.timeout,
		Transport:     &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4, TLSClientConfig: tc},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.clients[key] = hc
	return hc
}

func (c *caller) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.clients {
		hc.CloseIdleConnections()
	}
}

// callSpec is a resolved call.
type callSpec struct {
	token   string
	ref     *TokenRef
	scheme  string
	from    string
	inQuery bool
	dpop    *DPoPSpec
	tool    string
	// cert is the client certificate presented (bound, other, none);
	// spoof the forged proxy headers.
	cert  string
	spoof []string
	// session, when set, is an MCP session opened earlier: the call goes
	// into it without initializing.
	session string
}

// callResult is what came back.
type callResult struct {
	req    Request
	resp   Response
	status int
	header http.Header
	err    error
	// session is the MCP session the call opened or used.
	session string
	// echoed is true when the response body contained the token.
	echoed bool
}

// do performs the call. For an MCP target it initializes a session with
// the token, then calls the tool; the last exchange is the one judged.
func (c *caller) do(ctx context.Context, cs callSpec) callResult {
	if c.target.Protocol == "mcp" {
		sid := cs.session
		if sid == "" {
			init := map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": map[string]any{
				"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
				"clientInfo": map[string]any{"name": "agentsso", "version": c.version}}}
			r := c.send(ctx, cs, init, "")
			if r.err != nil || r.status < 200 || r.status > 299 {
				return r
			}
			sid = r.header.Get("Mcp-Session-Id")
			note := map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}
			_ = c.send(ctx, cs, note, sid)
		}
		tool := cs.tool
		if tool == "" {
			tool = c.target.Tool
		}
		call := map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{"name": tool, "arguments": map[string]any{}}}
		r := c.send(ctx, cs, call, sid)
		r.session = sid
		return r
	}
	var body any
	if c.target.Body != "" {
		body = json.RawMessage(c.target.Body)
	}
	return c.send(ctx, cs, body, "")
}

func (c *caller) send(ctx context.Context, cs callSpec, payload any, session string) callResult {
	var res callResult
	u := c.target.URL
	if cs.inQuery && cs.token != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "access_token=" + url.QueryEscape(cs.token)
	}
	var body io.Reader
	var bodyText string
	if payload != nil {
		b, _ := json.Marshal(payload)
		body, bodyText = bytes.NewReader(b), string(b)
	}
	method := c.target.Method
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		res.err = err
		return res
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.target.Protocol == "mcp" {
		req.Header.Set("Accept", "application/json, text/event-stream")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		}
	}
	scheme := cs.scheme
	if scheme == "" {
		scheme = "Bearer"
	}
	if cs.token != "" && !cs.inQuery {
		req.Header.Set("Authorization", scheme+" "+cs.token)
	}
	if cs.dpop != nil {
		if err := c.addDPoP(req, cs); err != nil {
			res.err = err
			return res
		}
	}
	spoofed, err := c.addSpoof(req, cs.spoof)
	if err != nil {
		res.err = err
		return res
	}
	res.req = Request{Method: method, URL: redactURL(u), Source: cs.from, Token: cs.ref, Body: truncate(bodyText, 512), Headers: map[string]string{}}
	if cs.token != "" && !cs.inQuery {
		res.req.Headers["Authorization"] = scheme + " <token " + cs.ref.SHA256 + ">"
	}
	if n := len(req.Header.Values("DPoP")); n > 0 {
		res.req.Headers["DPoP"] = fmt.Sprintf("<%d proof(s)>", n)
	}
	if session != "" {
		res.req.Headers["Mcp-Session-Id"] = session
	}
	for k, v := range spoofed {
		res.req.Headers[k] = v
	}
	cert := cs.cert
	if cert == "" {
		cert = c.defaultCert(cs.ref)
	}
	t0 := time.Now()
	resp, err := c.clientFor(cs.from, cert).Do(req)
	res.resp.DurationMS = float64(time.Since(t0).Microseconds()) / 1000
	if err != nil {
		res.err = err
		res.resp.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	res.status, res.header = resp.StatusCode, resp.Header
	res.resp.Status = resp.StatusCode
	res.resp.Headers = map[string]string{}
	for _, h := range []string{"WWW-Authenticate", "Content-Type", "Mcp-Session-Id", "DPoP-Nonce"} {
		if v := resp.Header.Values(h); len(v) > 0 {
			res.resp.Headers[h] = strings.Join(v, ", ")
		}
	}
	res.echoed = len(cs.token) > 16 && strings.Contains(string(b), cs.token)
	res.resp.Body = truncate(redact(string(b), cs.token), 2048)
	return res
}

// addDPoP adds a proof (RFC 9449 section 4.2), mutated as asked.
func (c *caller) addDPoP(req *http.Request, cs callSpec) error {
	mut := map[string]bool{}
	for _, m := range cs.dpop.Mutate {
		mut[m] = true
	}
	if mut["no-proof"] {
		return nil
	}
	key := c.dpopKey
	if cs.dpop.Key == "other" || mut["key-other"] {
		key = c.other
	}
	htu := *req.URL
	htu.RawQuery, htu.Fragment = "", ""
	claims := map[string]any{"jti": newNonce(), "htm": req.Method, "htu": htu.String(), "iat": time.Now().Unix()}
	if cs.token != "" {
		sum := sha256.Sum256([]byte(cs.token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	switch {
	case mut["htm-put"]:
		claims["htm"] = "PUT"
	case mut["htu-other"]:
		claims["htu"] = "https://other.agentsso.invalid/mcp"
	case mut["iat-past-1h"]:
		claims["iat"] = time.Now().Add(-time.Hour).Unix()
	case mut["iat-future-1h"]:
		claims["iat"] = time.Now().Add(time.Hour).Unix()
	case mut["ath-wrong"]:
		claims["ath"] = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	case mut["ath-missing"]:
		delete(claims, "ath")
	}
	if mut["jti-replay"] {
		claims["jti"] = "agentsso-replayed-jti"
	}
	payload, _ := json.Marshal(claims)
	pub := jose.JSONWebKey{Key: key.Public()}
	if mut["private-jwk"] {
		// A private JWK needs private material: the in-memory other key
		// stands in when the harness's key is held by an HSM.
		priv := key
		if _, ok := priv.(*ecdsa.PrivateKey); !ok {
			priv = c.other
		}
		pub = jose.JSONWebKey{Key: priv}
	}
	jwkJSON, _ := pub.MarshalJSON()
	hdr := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": json.RawMessage(jwkJSON)}
	if mut["typ-jwt"] {
		hdr["typ"] = "JWT"
	}
	var proof string
	switch {
	case mut["alg-none"]:
		hdr["alg"] = "none"
		proof = b64json(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	case mut["alg-hs256"]:
		hdr["alg"] = "HS256"
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("agentsso-dpop-secret-0123456789abcdef")},
			(&jose.SignerOptions{}).WithHeader("typ", hdr["typ"]).WithHeader("jwk", hdr["jwk"]))
		if err != nil {
			return err
		}
		jws, err := s.Sign(payload)
		if err != nil {
			return err
		}
		proof, _ = jws.CompactSerialize()
	default:
		opts := (&jose.SignerOptions{}).WithHeader("typ", hdr["typ"]).WithHeader("jwk", hdr["jwk"])
		var sk any = key
		if _, ok := key.(*ecdsa.PrivateKey); !ok {
			sk = cryptosigner.Opaque(key)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: sk}, opts)
		if err != nil {
			return err
		}
		jws, err := s.Sign(payload)
		if err != nil {
			return err
		}
		proof, _ = jws.CompactSerialize()
	}
	req.Header.Add("DPoP", proof)
	if mut["two-proofs"] {
		req.Header.Add("DPoP", proof)
	}
	return nil
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// tokenRef describes a token without revealing it: label, jti, a hash,
// the decoded header and the claims that matter.
func tokenRef(label, tok string) *TokenRef {
	if tok == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(tok))
	ref := &TokenRef{Label: label, SHA256: hex.EncodeToString(sum[:8])}
	if h := jwtpeek.Header(tok); h != nil {
		ref.Header = elideLarge(h)
	}
	if c := jwtpeek.Claims(tok); c != nil {
		ref.Claims = map[string]any{}
		for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "scope", "client_id", "act", "cnf", "ctx", "typ"} {
			if v, ok := c[k]; ok {
				ref.Claims[k] = v
			}
		}
		ref.Claims = elideLarge(ref.Claims)
		ref.JTI, _ = c["jti"].(string)
	}
	return ref
}

// redact replaces a token (and its signature alone) in text.
func redact(s, tok string) string {
	if tok == "" {
		return s
	}
	s = strings.ReplaceAll(s, tok, "<token>")
	if i := strings.LastIndexByte(tok, '.'); i >= 0 && len(tok)-i > 16 {
		s = strings.ReplaceAll(s, tok[i+1:], "<signature>")
	}
	return s
}

func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	if q.Has("access_token") {
		q.Set("access_token", "<token>")
		p.RawQuery = q.Encode()
	}
	return p.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d bytes more)", len(s)-n)
}

// spoofHeaders are the headers a TLS-terminating proxy sets for the
// server behind it, here forged by the caller (RFC 9700 section 4.13):
// the client certificate (carrying the bound certificate, in each
// proxy's format) and the client's address (carrying 127.0.0.1, the
// harness's default source and the network ctx-net-loopback1 binds to).
var spoofHeaders = map[string]struct {
	header string
	value  func(der []byte) string // nil: the address
}{
	// RFC 9440 section 2.2: a Structured Field Byte Sequence.
	"client-cert": {"Client-Cert", func(der []byte) string { return ":" + base64.StdEncoding.EncodeToString(der) + ":" }},
	// nginx $ssl_client_escaped_cert and the like: a URL-escaped PEM.
	"x-client-cert":     {"X-Client-Cert", escapedPEM},
	"x-ssl-client-cert": {"X-SSL-Client-Cert", escapedPEM},
	// Envoy.
	"x-forwarded-client-cert": {"X-Forwarded-Client-Cert", func(der []byte) string {
		sum := sha256.Sum256(der)
		return "Hash=" + hex.EncodeToString(sum[:]) + `;Cert="` + escapedPEM(der) + `"`
	}},
	// Azure App Service.
	"x-arr-clientcert": {"X-ARR-ClientCert", func(der []byte) string { return base64.StdEncoding.EncodeToString(der) }},
	"x-forwarded-for":  {"X-Forwarded-For", nil},
	"x-real-ip":        {"X-Real-IP", nil},
	"forwarded":        {"Forwarded", nil},
}

// spoofedAddress is what the address headers claim.
const spoofedAddress = "127.0.0.1"

func escapedPEM(der []byte) string {
	return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// spoofHeaderNames lists spoofHeaders' names, sorted.
func spoofHeaderNames() []string {
	out := make([]string, 0, len(spoofHeaders))
	for k := range spoofHeaders {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// addSpoof sets the forged headers and returns them as evidence (the
// certificate by its thumbprint, not its bytes).
func (c *caller) addSpoof(req *http.Request, names []string) (map[string]string, error) {
	ev := map[string]string{}
	for _, n := range names {
		sh, ok := spoofHeaders[strings.ToLower(n)]
		if !ok {
			return nil, fmt.Errorf("unknown spoofed header %q", n)
		}
		if sh.value == nil {
			v := spoofedAddress
			if sh.header == "Forwarded" {
				v = "for=" + spoofedAddress
			}
			req.Header.Set(sh.header, v)
			ev[sh.header] = v
			continue
		}
		bound := c.certs["bound"]
		if bound == nil {
			return nil, errNoClientCA
		}
		req.Header.Set(sh.header, sh.value(bound.Leaf.Raw))
		ev[sh.header] = "<the bound certificate, x5t#S256 " + c.certX5T + ">"
	}
	return ev, nil
}

// errNoClientCA: a step needs the harness's client certificates and the
// run has no client CA.
var errNoClientCA = errors.New("this step needs the harness's client certificates, and the run has no client CA (Options.ClientCA; `agentsso run` uses the local CA in <state-dir>/tls)")
