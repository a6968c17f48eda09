package agentlab

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentsso/agentsso/emulator/tlsca"
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

func postForm(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestWorldDeviceFlow: the world's user approves a device authorization
// request on her own (RFC 8628), after the agent's first poll saw
// authorization_pending; the approval is in the trace.
func TestWorldDeviceFlow(t *testing.T) {
	t.Parallel()
	w, err := New(t.Context(), "device", Spec{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rs1 := w.Servers["rs1"].URL
	code, m := postForm(t, w.Issuer+"/device_authorization", url.Values{"client_id": {AgentClientID}, "scope": {"notes:read"}, "resource": {rs1}})
	dc, _ := m["device_code"].(string)
	if code != 200 || dc == "" {
		t.Fatalf("device_authorization: %d %v", code, m)
	}
	poll := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc}, "client_id": {AgentClientID}}
	if code, m := postForm(t, w.Issuer+"/token", poll); code != 400 || m["error"] != "authorization_pending" {
		t.Fatalf("first poll: %d %v", code, m)
	}
	time.Sleep(5100 * time.Millisecond) // the interval RFC 8628 asks for
	code, m = postForm(t, w.Issuer+"/token", poll)
	at, _ := m["access_token"].(string)
	if code != 200 || at == "" {
		t.Fatalf("second poll: %d %v", code, m)
	}
	if c := w.Canaries.Lookup(at); c == nil || !strings.Contains(strings.Join(c.Audiences(), " "), rs1) || c.Claims["sub"] != "user-alice" {
		t.Fatalf("the device-flow token: %+v", c)
	}
	if len(w.Trace.Filter("user", "/device")) != 1 {
		t.Fatalf("the approval is not in the trace: %+v", w.Trace.Records())
	}
}

// TestModelAnthropic: the Anthropic-shaped endpoint answers with tool_use
// blocks in order, under the agent's own tool names, then end_turn.
func TestModelAnthropic(t *testing.T) {
	m := &Model{script: []ToolCall{{Tool: "notes_read", Args: map[string]any{"q": "x"}}, {Tool: "search"}}}
	srv := httptest.NewServer(m)
	defer srv.Close()
	ask := func(body string) map[string]any {
		resp, err := http.Post(srv.URL+"/v1/messages", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	tools := `"tools":[{"name":"rs1__notes_read"},{"name":"rs2__search"}]`
	r := ask(`{"model":"claude","messages":[{"role":"user","content":"go"}],` + tools + `}`)
	block := r["content"].([]any)[0].(map[string]any)
	if r["stop_reason"] != "tool_use" || block["type"] != "tool_use" || block["name"] != "rs1__notes_read" {
		t.Fatalf("first answer: %v", r)
	}
	r = ask(`{"messages":[{"role":"user","content":"go"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}],` + tools + `}`)
	if block := r["content"].([]any)[0].(map[string]any); block["name"] != "rs2__search" {
		t.Fatalf("second answer: %v", r)
	}
	r = ask(`{"messages":[{"role":"user","content":[{"type":"tool_result"},{"type":"tool_result"}]}]}`)
	if r["stop_reason"] != "end_turn" || !m.final.Load() {
		t.Fatalf("final answer: %v", r)
	}
}

// TestWorldHTTPS: with tls: true every server of the world speaks HTTPS
// from the world's CA, which the environment hands over, and a client
// certificate presented is recorded.
func TestWorldHTTPS(t *testing.T) {
	w, err := New(t.Context(), "https", Spec{TLS: true, Grant: "client_credentials"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	env := w.Env()
	for _, k := range []string{"AGENTSSO_CA_FILE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"} {
		if env[k] != w.CAFile || w.CAFile == "" {
			t.Errorf("%s = %q, want the world's CA %q", k, env[k], w.CAFile)
		}
	}
	for _, u := range []string{env["AGENTSSO_ISSUER"], env["AGENTSSO_MCP_SERVER_URL"], env["AGENTSSO_MODEL_URL"], env["AGENTSSO_BROWSER_URL"]} {
		if !strings.HasPrefix(u, "https://127.0.0.1:") {
			t.Errorf("%q is not an https URL of the world", u)
		}
	}
	ca, err := tlsca.LoadOrCreate(filepath.Dir(w.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ClientCert("agent", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}}}
	resp, err := c.Get(env["AGENTSSO_ISSUER"] + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta["issuer"] != env["AGENTSSO_ISSUER"] || !strings.HasPrefix(fmt.Sprint(meta["token_endpoint"]), "https://") {
		t.Fatalf("metadata over HTTPS: %v", meta)
	}
	if _, err := http.Get(env["AGENTSSO_ISSUER"] + "/jwks"); err == nil {
		t.Error("a client without the world's CA trusted its certificate")
	}
	recs := w.Trace.Filter("idp", "/oauth-authorization-server")
	if len(recs) != 1 || len(recs[0].ClientCert) != 64 {
		t.Fatalf("the client certificate was not recorded: %+v", recs)
	}
}

func TestCanariesRedact(t *testing.T) {
	c := NewCanaries()
	x := c.Add("agentsso-canary-secret-abcdef", "client_secret", "the agent's client secret", "")
	s := c.Redact("secret=agentsso-canary-secret-abcdef and " + url.QueryEscape("agentsso-canary-secret-abcdef"))
	if strings.Contains(s, "abcdef") || !strings.Contains(s, "<the agent's client secret "+x.ID+">") {
		t.Fatalf("Redact: %q", s)
	}
}
