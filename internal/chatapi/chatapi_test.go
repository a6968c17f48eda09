package chatapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestComplete(t *testing.T) {
	var got map[string]any
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		_ = json.NewDecoder(r.Body).Decode(&got)
		if r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"notes_read","arguments":"{\"q\":1}"}}]}}]}`))
	}))
	defer srv.Close()
	tools := []ToolDef{ToolDefOf(&mcp.Tool{Name: "notes_read"})}
	msg, err := Complete(context.Background(), srv.Client(), srv.URL+"/v1/", "sk-test", map[string]any{"model": "m", "tools": tools})
	if err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer sk-test" || got["model"] != "m" {
		t.Errorf("request: auth %q, body %v", auth, got)
	}
	if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "notes_read" {
		t.Fatalf("message: %+v", msg)
	}
	args, err := ParseArguments(msg.ToolCalls[0].Function.Arguments)
	if err != nil || args["q"] != float64(1) {
		t.Fatalf("arguments: %v %v", args, err)
	}
	if _, err := Complete(context.Background(), srv.Client(), srv.URL, "", map[string]any{}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404 answer: %v", err)
	}
}

func TestParseArgumentsAndToolText(t *testing.T) {
	for _, s := range []string{"", "  ", "null", "{}"} {
		if m, err := ParseArguments(s); err != nil || m == nil {
			t.Errorf("%q: %v %v", s, m, err)
		}
	}
	if _, err := ParseArguments("[1]"); err == nil {
		t.Error("an array was taken for arguments")
	}
	res := &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "a"}, &mcp.TextContent{Text: "b"}}, IsError: true}
	if got := ToolText(res); got != "tool error: a\nb" {
		t.Errorf("ToolText: %q", got)
	}
	if d := ToolDefOf(&mcp.Tool{Name: "x"}); d.Type != "function" || d.Function.Parameters == nil {
		t.Errorf("ToolDefOf: %+v", d)
	}
}
