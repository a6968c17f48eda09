package refagent

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

// maxModelResponse bounds a chat completion read from the model.
const maxModelResponse = 4 << 20

// The OpenAI chat completions wire format, as much as the agent uses.
type chatMessage struct {
	Role       string     `json:"role"`
	Content    *string    `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type toolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type toolDef struct {
	Type     string `json:"type"`
	Function struct {
		Name        string `json:"name"`
		Description string `json:"description,omitempty"`
		Parameters  any    `json:"parameters"`
	} `json:"function"`
}

// toolDefOf describes an MCP tool to the model: name unchanged, its input
// schema as the function's parameters.
func toolDefOf(t *mcp.Tool) toolDef {
	var d toolDef
	d.Type = "function"
	d.Function.Name = t.Name
	d.Function.Description = t.Description
	d.Function.Parameters = t.InputSchema
	if d.Function.Parameters == nil {
		d.Function.Parameters = map[string]any{"type": "object"}
	}
	return d
}

// chat sends one chat completion request and returns the first choice's
// message.
func (a *agent) chat(ctx context.Context, msgs []chatMessage, tools []toolDef) (*chatMessage, error) {
	req := map[string]any{"model": a.cfg.Model, "messages": msgs}
	if len(tools) > 0 {
		req["tools"] = tools
		req["tool_choice"] = "auto"
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(a.cfg.ModelBaseURL, "/") + "/chat/completions"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	if a.cfg.ModelAPIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+a.cfg.ModelAPIKey)
	}
	resp, err := a.httpc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxModelResponse))
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("model: POST %s: status %d: %.200s", u, resp.StatusCode, bytes.TrimSpace(rb))
	}
	var out struct {
		Choices []struct {
			Message chatMessage `json:"message"`
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

// parseArguments reads a tool call's arguments: a JSON object, or empty.
func parseArguments(s string) (map[string]any, error) {
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

// toolText renders a tool result for the model.
func toolText(res *mcp.CallToolResult) string {
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
