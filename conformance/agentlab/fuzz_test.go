package agentlab

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzModelRequest: whatever an agent posts to the fake model, it answers
// (200, 400 or 404) and never panics.
func FuzzModelRequest(f *testing.F) {
	f.Add("/v1/chat/completions", `{"model":"m","messages":[{"role":"tool"}],"tools":[{"type":"function","function":{"name":"notes_read"}}]}`)
	f.Add("/v1/messages", `{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result"}]}],"tools":[{"name":"rs1__notes_read"}]}`)
	f.Add("/v1/messages", `{"messages":[{"content":"x"}]}`)
	m := &Model{script: []ToolCall{{Tool: "notes_read", Args: map[string]any{"q": 1}}, {Tool: "search"}}}
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := httptest.NewRequest(http.MethodPost, "http://model"+"/x", strings.NewReader(body))
		req.URL.Path = path
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 404:
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

// FuzzMCPRequest: any body, Authorization and DPoP header sent to a fake
// MCP server gets an answer, never a panic; a token the AS does not know
// never reaches a tool.
func FuzzMCPRequest(f *testing.F) {
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"notes_read"}}`, "Bearer good", "")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, "DPoP good", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA")
	f.Add(`{`, "Bearer bad", "")
	introspect := func(tok string) (map[string]any, error) {
		if tok == "good" {
			return map[string]any{"active": true, "aud": "http://rs/mcp", "scope": "notes:read", "cnf": map[string]any{"jkt": "x"}}, nil
		}
		return map[string]any{"active": false}, nil
	}
	s := newMCPServer("rs1", "http://rs", "http://as", RSSetup{Reject: []int{2}}, &DPoPSetup{RSNonce: true}, introspect)
	f.Fuzz(func(t *testing.T, body, authz, dpop string) {
		req := httptest.NewRequest(http.MethodPost, "http://rs/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if dpop != "" {
			req.Header.Set("DPoP", dpop)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code == 200 && !strings.Contains(authz, "good") {
			t.Fatalf("a request without a known token got 200: %q", authz)
		}
	})
}

// FuzzBrowserURL: the shim refuses what is not an http(s) URL and never
// panics on what an agent hands it.
func FuzzBrowserURL(f *testing.F) {
	f.Add("javascript:alert(1)")
	f.Add("file:///etc/passwd")
	f.Add("http://127.0.0.1:1/authorize?x=1")
	b := &browser{w: &World{}, client: &http.Client{Transport: failRT{}}}
	f.Fuzz(func(t *testing.T, u string) {
		req := httptest.NewRequest(http.MethodGet, "http://shim/open", nil)
		q := req.URL.Query()
		q.Set("url", u)
		req.URL.RawQuery = q.Encode()
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, req)
		if rec.Code == 200 {
			t.Fatalf("the shim delivered %q without an authorization server", u)
		}
	})
}

type failRT struct{}

func (failRT) RoundTrip(*http.Request) (*http.Response, error) { return nil, http.ErrHandlerTimeout }
