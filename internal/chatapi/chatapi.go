// Package chatapi is the OpenAI chat completions wire format, as much as
// agentsso's agents use (the reference agent, the glue around real
// clients): messages with tool calls, MCP tools described as functions,
// one completion request, and tool results as text.
package chatapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MaxResponse bounds a completion read from the model.
const MaxResponse = 4 << 20

// Message is one chat message.
type Message struct {
	Role       string     `json:"role"`
	Content    *string    `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call the model asks for.
type ToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// ToolDef describes a function to the model.
type ToolDef struct {
	Type     string `json:"type"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
		Parameters  any    `json:"parameters"`
	} `json:"function"`
}

// ToolDefOf describes an MCP tool: its name unchanged, its input schema
// as the function's parameters.
func ToolDefOf(t *mcp.Tool) ToolDef {
	var d ToolDef
	d.Type = "function"
	d.Function.Name = t.Name
	d.Function.Description = t.Description
	d.Function.Parameters = t.InputSchema
	if d.Function.Parameters == nil {
		d.Function.Parameters = map[string]any{"type": "object"}
	}
	return d
}

// Complete sends one chat completion request (req: model, messages,
// tools, ...) to baseURL/chat/completions and returns the first choice's
// message. The API key, when given, goes in the Authorization header.
func Complete(ctx context.Context, c *http.Client, baseURL, apiKey string, req any) (*Message, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(baseURL, "/") + "/chat/completions"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	if apiKey != "" {
		hr.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("model: POST %s: status %d: %.200s", u, resp.StatusCode, bytes.TrimSpace(rb))
	}
	var out struct {
		Choices []struct {
			Message Message `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return nil, fmt.Errorf("model: the answer is not a chat completion: %v", err)
	}
	if len(out.Choices) == 0 {
		return nil, errors.New("model: the answer has no choices")
	}
	return &out.Choices[0].Message, nil
}

// ParseArguments reads a tool call's arguments: a JSON object, or empty.
func ParseArguments(s string) (map[string]any, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return map[string]any{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("the tool call's arguments are not a JSON object: %v", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// ToolText renders a tool result for the model.
func ToolText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
			continue
		}
		if b, err := json.Marshal(c); err == nil {
			parts = append(parts, string(b))
		}
	}
	if len(parts) == 0 && res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			parts = append(parts, string(b))
		}
	}
	out := strings.Join(parts, "\n")
	if res.IsError {
		out = "tool error: " + out
	}
	return out
}
