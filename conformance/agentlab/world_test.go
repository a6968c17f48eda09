package agentlab

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type headerRT struct{ auth string }

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h.auth != "" {
		r.Header.Set("Authorization", h.auth)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func ccToken(t *testing.T, w *World, resource string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {"notes:read"}}
	req, _ := http.NewRequest(http.MethodPost, w.Issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(AgentClientID, w.ClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	return tr.AccessToken
}

// TestWorldServesAnAgent walks the world by hand: the 401 challenge and
// metadata of a fake MCP server, a client-credentials token, a tool call
// through the MCP Go SDK, the model's scripted answer, and the trace.
func TestWorldServesAnAgent(t *testing.T) {
	ctx := context.Background()
	w, err := New(ctx, "smoke", Spec{Grant: "client_credentials", Task: []ToolCall{{Tool: "notes_read"}}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rs1 := w.Servers["rs1"]

	resp, err := http.Post(rs1.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, err = http.Get(rs1.metadataURL())
	if err != nil {
		t.Fatal(err)
	}
	var prm map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if prm["resource"] != rs1.URL {
		t.Fatalf("PRM resource %v, want %s", prm["resource"], rs1.URL)
	}

	tok := ccToken(t, w, rs1.URL)
	if c := w.Canaries.Lookup(tok); c == nil || c.Kind != "access_token" {
		t.Fatalf("the token is not a canary: %+v", c)
	}
	cl := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	sess, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: rs1.URL, HTTPClient: &http.Client{Transport: headerRT{"Bearer " + tok}}, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "notes_read"})
	if err != nil || res.IsError {
		t.Fatalf("notes_read: %v %+v", err, res)
	}
	// notes_write needs a scope the token lacks: 403 insufficient_scope.
	if _, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: "notes_write"}); err == nil {
		t.Fatal("notes_write without notes:write succeeded")
	}
	sess.Close()

	// The model answers with the scripted call, then the final text.
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"notes_read"}}]}`
	resp, err = http.Post(w.ModelURL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(b, []byte(`"tool_calls"`)) || !bytes.Contains(b, []byte(`notes_read`)) {
		t.Fatalf("model: %s", b)
	}
	body = `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","content":"x"}]}`
	resp, _ = http.Post(w.ModelURL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	resp.Body.Close()
	if !w.Done() {
		t.Fatal("the model did not give its final answer")
	}

	var sawToken, sawCall bool
	for _, r := range w.Trace.Records() {
		if r.Server == "idp" && strings.HasSuffix(r.Path, "/token") && r.Form.Get("resource") == rs1.URL {
			sawToken = true
		}
		if r.Server == "rs1" && strings.Contains(r.Body, `"notes_read"`) && r.Status == 200 {
			_, got := r.Token()
			sawCall = got == tok
		}
	}
	if !sawToken || !sawCall {
		t.Fatalf("trace lacks the token request (%v) or the tool call (%v): %+v", sawToken, sawCall, w.Trace.Records())
	}
	if found := w.Canaries.Find("x " + tok + " y"); len(found) != 1 {
		t.Fatalf("Find: %v", found)
	}
}
