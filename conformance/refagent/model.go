package refagent

import (
	"context"

	"github.com/agentsso/agentsso/internal/chatapi"
)

// The OpenAI chat completions wire format (internal/chatapi).
type (
	chatMessage = chatapi.Message
	toolCall    = chatapi.ToolCall
	toolDef     = chatapi.ToolDef
)

var (
	toolDefOf      = chatapi.ToolDefOf
	parseArguments = chatapi.ParseArguments
	toolText       = chatapi.ToolText
)

// chat sends one chat completion request and returns the first choice's
// message.
func (a *agent) chat(ctx context.Context, msgs []chatMessage, tools []toolDef) (*chatMessage, error) {
	req := map[string]any{"model": a.cfg.Model, "messages": msgs}
	if len(tools) > 0 {
		req["tools"] = tools
		req["tool_choice"] = "auto"
	}
	return chatapi.Complete(ctx, a.httpc, a.cfg.ModelBaseURL, a.cfg.ModelAPIKey, req)
}
