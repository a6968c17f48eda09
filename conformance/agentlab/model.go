package agentlab

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Model is the fake model endpoint: OpenAI-compatible chat completions and
// Anthropic-compatible messages, answering with the scenario's scripted
// tool calls, then a final text. It keeps no state: the number of tool
// results already in the conversation says which call comes next.
type Model struct {
	script []ToolCall
	// Final is set once the model has given its final answer: the agent
	// got every tool result it was scripted to get.
	final atomic.Bool
}

// FinalAnswer is what the model says when the script is done.
const FinalAnswer = "All done: every tool answered."

func (m *Model) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a chat completion or a message", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/chat/completions"):
		m.openAI(w, r, body)
	case strings.HasSuffix(r.URL.Path, "/messages"):
		m.anthropic(w, r, body)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]string{
			"message": "the fake model serves POST /v1/chat/completions and POST /v1/messages", "type": "invalid_request_error"}})
	}
}

// next returns the scripted call after done tool results, waiting its
// delay, or nil when the script is done.
func (m *Model) next(r *http.Request, done int, names []string) (*ToolCall, string) {
	if done >= len(m.script) {
		m.final.Store(true)
		return nil, ""
	}
	c := m.script[done]
	if c.Delay > 0 {
		select {
		case <-time.After(time.Duration(c.Delay)):
		case <-r.Context().Done():
		}
	}
	return &c, resolveTool(c.Tool, names)
}

// resolveTool maps a scripted tool to the name the agent gave it: the same
// name, or one that ends with it after a separator (rs1__notes_read).
func resolveTool(tool string, names []string) string {
	for _, n := range names {
		if n == tool {
			return n
		}
	}
	for _, n := range names {
		for _, sep := range []string{"__", "_", ".", "/", ":"} {
			if strings.HasSuffix(n, sep+tool) {
				return n
			}
		}
	}
	return tool
}

func (m *Model) openAI(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role string `json:"role"`
		} `json:"messages"`
		Tools []struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"message": "the body is not a chat completion request: " + err.Error(), "type": "invalid_request_error"}})
		return
	}
	done := 0
	for _, msg := range req.Messages {
		if msg.Role == "tool" {
			done++
		}
	}
	var names []string
	for _, t := range req.Tools {
		names = append(names, t.Function.Name)
	}
	call, name := m.next(r, done, names)
	msg := map[string]any{"role": "assistant", "content": FinalAnswer}
	finish := "stop"
	if call != nil {
		args, _ := json.Marshal(orEmpty(call.Args))
		msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
			"id": fmt.Sprintf("call_%d", done+1), "type": "function",
			"function": map[string]any{"name": name, "arguments": string(args)},
		}}}
		finish = "tool_calls"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": fmt.Sprintf("chatcmpl-agentsso-%d", done+1), "object": "chat.completion",
		"created": time.Now().Unix(), "model": firstNonEmpty(req.Model, "agentsso-fake"),
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}},
		"usage":   map[string]int{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
	})
}

func (m *Model) anthropic(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"type": "error", "error": map[string]string{"type": "invalid_request_error", "message": "the body is not a messages request: " + err.Error()}})
		return
	}
	done := 0
	for _, msg := range req.Messages {
		var blocks []struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(msg.Content, &blocks) == nil {
			for _, b := range blocks {
				if b.Type == "tool_result" {
					done++
				}
			}
		}
	}
	var names []string
	for _, t := range req.Tools {
		names = append(names, t.Name)
	}
	call, name := m.next(r, done, names)
	content := []any{map[string]any{"type": "text", "text": FinalAnswer}}
	stop := "end_turn"
	if call != nil {
		content = []any{map[string]any{"type": "tool_use", "id": fmt.Sprintf("toolu_%d", done+1), "name": name, "input": orEmpty(call.Args)}}
		stop = "tool_use"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": fmt.Sprintf("msg_agentsso_%d", done+1), "type": "message", "role": "assistant",
		"model": firstNonEmpty(req.Model, "agentsso-fake"), "content": content, "stop_reason": stop,
		"usage": map[string]int{"input_tokens": 1, "output_tokens": 1},
	})
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
