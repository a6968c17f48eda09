package agentlab

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MCPServer is a fake MCP server: streamable HTTP (the MCP Go SDK's
// server), RFC 9728 metadata, tools that need given scopes, and tokens
// checked by introspection at the emulator.
type MCPServer struct {
	Name string
	// URL is the MCP endpoint and the resource identifier.
	URL string
	// Issuer is the AS it trusts; introspect asks it about a token.
	Issuer     string
	introspect func(token string) (map[string]any, error)
	setup      RSSetup
	dpop       *DPoPSetup
	// open: the decoy answers without asking for a token.
	open bool
	// otherResource is published as the metadata's resource when the
	// scenario asks for a mismatch.
	otherResource string
	revoke        func()

	mu      sync.Mutex
	calls   int // authorized tools/call requests seen
	okCalls int
	jtis    map[string]bool
	nonce   string
	mcp     http.Handler
}

func newMCPServer(name, base, issuer string, setup RSSetup, dp *DPoPSetup, introspect func(string) (map[string]any, error)) *MCPServer {
	s := &MCPServer{
		Name: name, URL: base + "/mcp", Issuer: issuer, introspect: introspect,
		setup: setup, dpop: dp, open: name == "decoy", jtis: map[string]bool{}, nonce: randomString(12),
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "agentsso-" + name, Version: "1"}, nil)
	for _, t := range serverTools[name] {
		tool, scope := t[0], t[1]
		srv.AddTool(&mcp.Tool{
			Name:        tool,
			Description: fmt.Sprintf("%s on %s (scope %q)", tool, name, scope),
			InputSchema: json.RawMessage(`{"type":"object","properties":{"query":{"type":"string"}}}`),
		}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%s on %s: done", tool, name)}}}, nil
		})
	}
	s.mcp = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	return s
}

func (s *MCPServer) metadataPath() string { return "/.well-known/oauth-protected-resource/mcp" }

func (s *MCPServer) metadataURL() string {
	u, _ := url.Parse(s.URL)
	return u.Scheme + "://" + u.Host + s.metadataPath()
}

func (s *MCPServer) scopes() []string {
	if s.setup.Scopes != nil {
		return s.setup.Scopes
	}
	var out []string
	for _, t := range serverTools[s.Name] {
		if t[1] != "" {
			out = append(out, t[1])
		}
	}
	return out
}

func (s *MCPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case s.metadataPath():
		resource := s.URL
		if s.setup.PRMResource == "other-origin" {
			resource = s.otherResource
		}
		m := map[string]any{
			"resource":                 resource,
			"authorization_servers":    []string{s.Issuer},
			"scopes_supported":         s.scopes(),
			"bearer_methods_supported": []string{"header"},
			"resource_name":            "agentsso fake MCP server " + s.Name,
		}
		if s.dpop != nil {
			m["dpop_bound_access_tokens_required"] = true
			m["dpop_signing_alg_values_supported"] = []string{"ES256", "RS256", "PS256", "EdDSA"}
		}
		writeJSON(w, http.StatusOK, m)
		return
	case "/mcp":
	default:
		http.NotFound(w, r)
		return
	}
	if s.open {
		s.mcp.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	tool := toolOf(body)
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if token == "" {
		s.challenge(w, http.StatusUnauthorized, "", "")
		return
	}
	info, err := s.introspect(token)
	if err != nil || info["active"] != true {
		s.challenge(w, http.StatusUnauthorized, "invalid_token", "the access token is not active")
		return
	}
	if !slices.Contains(ClaimStrings(info, "aud"), s.URL) {
		s.challenge(w, http.StatusUnauthorized, "invalid_token", "the access token is not for this resource")
		return
	}
	jkt := ""
	if cnf, ok := info["cnf"].(map[string]any); ok {
		jkt, _ = cnf["jkt"].(string)
	}
	if s.dpop != nil || jkt != "" {
		if !strings.EqualFold(scheme, "DPoP") || jkt == "" {
			s.challenge(w, http.StatusUnauthorized, "invalid_token", "a DPoP-bound token is required")
			return
		}
		if code, msg := s.checkProof(r, token, jkt); code != "" {
			s.challenge(w, http.StatusUnauthorized, code, msg)
			return
		}
	} else if !strings.EqualFold(scheme, "Bearer") {
		s.challenge(w, http.StatusUnauthorized, "invalid_request", "use the Bearer scheme")
		return
	}
	if tool != "" {
		if need := toolScope(tool); need != "" && !slices.Contains(strings.Fields(fmt.Sprint(info["scope"])), need) {
			s.challenge(w, http.StatusForbidden, "insufficient_scope", "scope "+need+" is required", need)
			return
		}
		s.mu.Lock()
		s.calls++
		n := s.calls
		s.mu.Unlock()
		if slices.Contains(s.setup.Reject, n) || (s.setup.RejectFrom > 0 && n >= s.setup.RejectFrom) {
			s.challenge(w, http.StatusUnauthorized, "invalid_token", "the access token was revoked")
			return
		}
	}
	cw := &captureWriter{ResponseWriter: w}
	s.mcp.ServeHTTP(cw, r)
	if tool != "" && cw.status < 300 {
		s.mu.Lock()
		s.okCalls++
		revoke := s.setup.RevokeAfter > 0 && s.okCalls == s.setup.RevokeAfter
		s.mu.Unlock()
		if revoke && s.revoke != nil {
			s.revoke()
		}
	}
}

// challenge answers 401/403 with the WWW-Authenticate of RFC 6750 (or
// RFC 9449 when DPoP is required) and the RFC 9728 resource_metadata.
func (s *MCPServer) challenge(w http.ResponseWriter, status int, code, desc string, scope ...string) {
	scheme := "Bearer"
	if s.dpop != nil {
		scheme = "DPoP"
	}
	params := []string{fmt.Sprintf("resource_metadata=%q", s.metadataURL())}
	want := s.scopes()
	if len(scope) > 0 {
		want = scope
		if status == http.StatusForbidden {
			want = union(s.scopes(), scope)
		}
	}
	if len(want) > 0 {
		params = append(params, fmt.Sprintf("scope=%q", strings.Join(want, " ")))
	}
	if code != "" {
		params = append(params, fmt.Sprintf("error=%q", code))
	}
	if desc != "" {
		params = append(params, fmt.Sprintf("error_description=%q", desc))
	}
	if s.dpop != nil {
		params = append(params, `algs="ES256 RS256 PS256 EdDSA"`)
		if code == "use_dpop_nonce" || s.dpop.RSNonce {
			w.Header().Set("DPoP-Nonce", s.nonce)
		}
	}
	w.Header().Set("WWW-Authenticate", scheme+" "+strings.Join(params, ", "))
	writeJSON(w, status, map[string]string{"error": firstNonEmpty(code, "unauthorized"), "error_description": desc})
}

// checkProof checks a DPoP proof at the resource (RFC 9449 sections 4.3
// and 7.1) and returns an error code and text, or "".
func (s *MCPServer) checkProof(r *http.Request, token, jkt string) (string, string) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return "invalid_dpop_proof", "exactly one DPoP header is required"
	}
	jws, err := jose.ParseSigned(proofs[0], []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA})
	if err != nil || len(jws.Signatures) != 1 {
		return "invalid_dpop_proof", "the proof is not a JWS with an asymmetric alg"
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "dpop+jwt" {
		return "invalid_dpop_proof", "typ must be dpop+jwt"
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return "invalid_dpop_proof", "the proof needs a public jwk"
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return "invalid_dpop_proof", "bad proof signature"
	}
	var c struct {
		JTI   string  `json:"jti"`
		HTM   string  `json:"htm"`
		HTU   string  `json:"htu"`
		IAT   float64 `json:"iat"`
		ATH   string  `json:"ath"`
		Nonce string  `json:"nonce"`
	}
	if json.Unmarshal(payload, &c) != nil || c.JTI == "" {
		return "invalid_dpop_proof", "the proof needs jti, htm, htu and iat"
	}
	if c.HTM != r.Method || c.HTU != s.URL {
		return "invalid_dpop_proof", "htm/htu do not match the request"
	}
	if d := time.Since(time.Unix(int64(c.IAT), 0)); d > time.Minute || d < -time.Minute {
		return "invalid_dpop_proof", "iat is outside the accepted window"
	}
	sum := sha256.Sum256([]byte(token))
	if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return "invalid_dpop_proof", "ath does not match the access token"
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(tp) != jkt {
		return "invalid_token", "the proof key is not the key the token is bound to"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dpop != nil && s.dpop.RSNonce && c.Nonce != s.nonce {
		return "use_dpop_nonce", "use the DPoP-Nonce value"
	}
	if s.jtis[c.JTI] {
		return "invalid_dpop_proof", "the proof jti was used before"
	}
	s.jtis[c.JTI] = true
	return "", ""
}

// toolOf returns the tool a JSON-RPC tools/call body names.
func toolOf(body []byte) string {
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &m) != nil || m.Method != "tools/call" {
		return ""
	}
	return m.Params.Name
}

// inProcessIntrospect asks the emulator handler about a token without a
// network round trip (and so without a trace record).
func inProcessIntrospect(h http.Handler, tenant, clientID, secret string) func(string) (map[string]any, error) {
	return func(token string) (map[string]any, error) {
		form := url.Values{"token": {token}}
		req := httptest.NewRequest(http.MethodPost, "/t/"+tenant+"/introspect", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(clientID, secret)
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return nil, fmt.Errorf("introspection answered %d: %s", rec.Code, rec.Body.String())
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			return nil, err
		}
		return m, nil
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func union(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Scopes is what the server's metadata lists in scopes_supported.
func (s *MCPServer) Scopes() []string { return s.scopes() }
