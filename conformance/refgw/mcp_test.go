package refgw_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// mcpClient speaks MCP streamable HTTP (JSON answers) to a gateway.
type mcpClient struct {
	t       *testing.T
	gw      *gateway
	token   string
	session string
	version string
}

type rpcAnswer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (c *mcpClient) send(method string, id any, params any) rpcAnswer {
	c.t.Helper()
	msg := map[string]any{"jsonrpc": "2.0", "method": method}
	if id != nil {
		msg["id"] = id
	}
	if params != nil {
		msg["params"] = params
	}
	b, _ := json.Marshal(msg)
	return c.post(string(b))
}

func (c *mcpClient) post(body string) rpcAnswer {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.gw.url+"/mcp", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	if c.version != "" {
		req.Header.Set("MCP-Protocol-Version", c.version)
	}
	resp := c.gw.do(c.t, nil, req)
	a := rpcAnswer{status: resp.status, header: resp.header, raw: resp.body}
	_ = json.Unmarshal([]byte(resp.body), &a.body)
	return a
}

// initialize opens a session and keeps its id and version.
func (c *mcpClient) initialize(version string) rpcAnswer {
	c.t.Helper()
	a := c.send("initialize", 1, map[string]any{
		"protocolVersion": version,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "test", "version": "0"},
	})
	if a.status == http.StatusOK {
		c.session = a.header.Get("Mcp-Session-Id")
		res, _ := a.body["result"].(map[string]any)
		c.version, _ = res["protocolVersion"].(string)
	}
	return a
}

func rpcErrorCode(a rpcAnswer) float64 {
	e, _ := a.body["error"].(map[string]any)
	code, _ := e["code"].(float64)
	return code
}

func TestMCPFlow(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil, withExchange(f))
	tok := f.mint(f.claims(gw))
	c := &mcpClient{t: t, gw: gw}

	// Every MCP request, initialize included, needs a token.
	a := c.initialize("2025-06-18")
	if a.status != http.StatusUnauthorized {
		t.Fatalf("initialize without token: status %d", a.status)
	}
	checkRefusal(t, gw, response{status: a.status, header: a.header, body: a.raw}, s401, "Bearer", "", "")

	c.token = tok
	a = c.initialize("2025-06-18")
	if a.status != http.StatusOK {
		t.Fatalf("initialize: status %d %s", a.status, a.raw)
	}
	if len(c.session) < 32 {
		t.Fatalf("Mcp-Session-Id %q is not a long random id", c.session)
	}
	want := map[string]any{
		"jsonrpc": "2.0",
		"id":      float64(1),
		"result": map[string]any{
			"protocolVersion": "2025-06-18",
			"capabilities":    map[string]any{"tools": map[string]any{}},
			"serverInfo":      map[string]any{"name": "agentsso-refgw", "version": "1.0.0"},
		},
	}
	if diff := cmp.Diff(want, a.body); diff != "" {
		t.Errorf("initialize result (-want +got):\n%s", diff)
	}

	if a := c.send("notifications/initialized", nil, nil); a.status != http.StatusAccepted {
		t.Errorf("notifications/initialized: status %d %s", a.status, a.raw)
	}

	a = c.send("tools/list", 2, nil)
	if a.status != http.StatusOK {
		t.Fatalf("tools/list: status %d %s", a.status, a.raw)
	}
	var names []string
	for _, tool := range a.body["result"].(map[string]any)["tools"].([]any) {
		names = append(names, tool.(map[string]any)["name"].(string))
	}
	if diff := cmp.Diff([]string{toolGet, toolOpen, toolUpdate}, names); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}

	// A tool the token has the scope for reaches the upstream with the
	// exchanged token, never the inbound one.
	a = c.send("tools/call", 3, map[string]any{"name": toolGet, "arguments": map[string]any{"id": 7}})
	if a.status != http.StatusOK {
		t.Fatalf("tools/call: status %d %s", a.status, a.raw)
	}
	wantResult := map[string]any{
		"content": []any{map[string]any{"type": "text", "text": `{"upstream":"ok","path":"/tools/get_ticket"}`}},
		"isError": false,
		"_meta":   map[string]any{"agentsso/upstream_status": float64(200)},
	}
	if diff := cmp.Diff(wantResult, a.body["result"]); diff != "" {
		t.Errorf("tools/call result (-want +got):\n%s", diff)
	}
	wantUp := []upstreamRequest{{Method: "GET", Path: "/tools/get_ticket", Authorization: "Bearer upstream-token-1"}}
	if diff := cmp.Diff(wantUp, f.upstreamRequests()); diff != "" {
		t.Errorf("upstream (-want +got):\n%s", diff)
	}

	// A tool without a scope needs only a valid token.
	if a := c.send("tools/call", 4, map[string]any{"name": toolOpen}); a.status != http.StatusOK {
		t.Errorf("tools/call %s: status %d", toolOpen, a.status)
	}

	// A tool whose scope is missing: 403 insufficient_scope naming it.
	f.resetUpstream()
	a = c.send("tools/call", 5, map[string]any{"name": toolUpdate})
	checkRefusal(t, gw, response{status: a.status, header: a.header, body: a.raw}, s403, "Bearer", iS, tok)
	if ch := parseChallenges(t, a.header.Values("WWW-Authenticate"))[0]; ch.Params["scope"] != scopeWrite {
		t.Errorf("scope=%q, want %q", ch.Params["scope"], scopeWrite)
	}
	if got := f.upstreamRequests(); len(got) != 0 {
		t.Errorf("upstream got %v after insufficient_scope", got)
	}

	// Unknown tool and unknown method are JSON-RPC errors.
	if a := c.send("tools/call", 6, map[string]any{"name": "rm_rf"}); a.status != http.StatusOK || rpcErrorCode(a) != -32602 {
		t.Errorf("unknown tool: status %d error %v", a.status, a.body["error"])
	}
	if a := c.send("resources/list", 7, nil); rpcErrorCode(a) != -32601 {
		t.Errorf("unknown method: %s", a.raw)
	}
	if a := c.send("ping", 8, nil); a.status != http.StatusOK || a.body["result"] == nil {
		t.Errorf("ping: %d %s", a.status, a.raw)
	}

	// Session and version headers.
	for _, tc := range []struct {
		name             string
		session, version string
		status           int
	}{
		{"no session", "", c.version, http.StatusBadRequest},
		{"unknown session", "0123456789abcdef0123456789abcdef", c.version, http.StatusNotFound},
		{"no protocol version", c.session, "", http.StatusBadRequest},
		{"other protocol version", c.session, "2025-03-26", http.StatusBadRequest},
	} {
		cc := *c
		cc.session, cc.version = tc.session, tc.version
		if a := cc.send("tools/list", 9, nil); a.status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, a.status, tc.status, a.raw)
		}
	}

	// Malformed messages.
	for _, body := range []string{`{`, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, `{"jsonrpc":"2.0","id":null,"method":"ping"}`} {
		if a := c.post(body); a.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", body, a.status)
		}
	}

	// GET (SSE) is not offered.
	req := gw.get(t, "/mcp", tok)
	if resp := gw.do(t, nil, req); resp.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /mcp: status %d", resp.status)
	}

	// DELETE ends the session.
	req, _ = http.NewRequest(http.MethodDelete, gw.url+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", c.session)
	if resp := gw.do(t, nil, req); resp.status != http.StatusNoContent {
		t.Errorf("DELETE: status %d", resp.status)
	}
	if a := c.send("tools/list", 10, nil); a.status != http.StatusNotFound {
		t.Errorf("after DELETE: status %d", a.status)
	}
}

func TestMCPProtocolVersion(t *testing.T) {
	f := newFixture(t)
	gw := f.newGateway(nil)
	for _, tc := range []struct{ asked, want string }{
		{"2025-06-18", "2025-06-18"},
		{"2025-03-26", "2025-03-26"},
		{"2025-11-25", "2025-11-25"},
		{"1999-01-01", refgw.ProtocolVersion},
	} {
		c := &mcpClient{t: t, gw: gw, token: f.mint(f.claims(gw))}
		if a := c.initialize(tc.asked); a.status != http.StatusOK || c.version != tc.want {
			t.Errorf("asked %s: status %d, version %q, want %q", tc.asked, a.status, c.version, tc.want)
		}
	}
}

// state-handle-hijack: a session created for alice cannot be used with
// bob's token, unless the unbound-session flaw is on.
func TestMCPSessionBinding(t *testing.T) {
	for _, flaws := range [][]string{nil, {refgw.FlawUnboundSession}} {
		f := newFixture(t)
		gw := f.newGateway(flaws)
		alice := &mcpClient{t: t, gw: gw, token: f.mint(f.claims(gw))}
		if a := alice.initialize("2025-06-18"); a.status != http.StatusOK {
			t.Fatalf("initialize: %d", a.status)
		}
		bobClaims := f.claims(gw)
		bobClaims["sub"] = userBob
		bob := *alice
		bob.token = f.mint(bobClaims)
		a := bob.send("tools/call", 2, map[string]any{"name": toolGet})
		switch {
		case flaws == nil && a.status != http.StatusNotFound:
			t.Errorf("bob with alice's session: status %d, want 404", a.status)
		case flaws == nil && len(f.upstreamRequests()) != 0:
			t.Errorf("upstream reached with a hijacked session")
		case flaws != nil && a.status != http.StatusOK:
			t.Errorf("with %v: status %d, want 200", flaws, a.status)
		}
		if flaws == nil {
			recs, _ := readAudit(t, gw.auditPath)
			last := recs[len(recs)-1]
			if last.Sub != userBob || last.Decision != refgw.DecisionDeny || !strings.Contains(last.Reason, "another principal") {
				t.Errorf("audit %+v", last)
			}
		}
	}
}
