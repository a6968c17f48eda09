package agentinterop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentsso/agentsso/internal/chatapi"
)

// Bounds of a run.
const (
	maxRounds       = 20 // model rounds
	browserTimeout  = 20 * time.Second
	callbackTimeout = 20 * time.Second
	maxBody         = 4 << 20
)

// server is one MCP server of AGENTSSO_MCP_SERVERS.
type server struct{ name, url string }

// config is what the glue reads from the adapter environment.
type config struct {
	task         string
	issuer       string
	grant        string
	clientID     string
	clientSecret string
	redirectURI  string
	browserURL   string
	servers      []server
	modelURL     string // OPENAI_BASE_URL: …/v1
	modelKey     string
}

// configFrom reads the variables of docs/AGENTS.md, naming the first one
// that is missing or malformed.
func configFrom(env map[string]string) (*config, error) {
	c := &config{
		task:         env["AGENTSSO_TASK"],
		issuer:       env["AGENTSSO_ISSUER"],
		grant:        env["AGENTSSO_GRANT"],
		clientID:     env["AGENTSSO_CLIENT_ID"],
		clientSecret: env["AGENTSSO_CLIENT_SECRET"],
		redirectURI:  env["AGENTSSO_REDIRECT_URI"],
		browserURL:   env["AGENTSSO_BROWSER_URL"],
		modelURL:     env["OPENAI_BASE_URL"],
		modelKey:     env["OPENAI_API_KEY"],
	}
	if c.grant == "" {
		c.grant = "authorization_code"
	}
	for i, pair := range strings.Fields(env["AGENTSSO_MCP_SERVERS"]) {
		name, u, ok := strings.Cut(pair, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("AGENTSSO_MCP_SERVERS: pair %d (%q) is not name=url", i+1, pair)
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("AGENTSSO_MCP_SERVERS: %s: %q is not an http(s) URL", name, u)
		}
		c.servers = append(c.servers, server{name, u})
	}
	if len(c.servers) == 0 && env["AGENTSSO_MCP_SERVER_URL"] != "" {
		c.servers = []server{{"server", env["AGENTSSO_MCP_SERVER_URL"]}}
	}
	switch {
	case len(c.servers) == 0:
		return nil, errors.New("AGENTSSO_MCP_SERVERS: required (space-separated name=url pairs)")
	case c.clientID == "":
		return nil, errors.New("AGENTSSO_CLIENT_ID: required")
	case c.issuer == "":
		return nil, errors.New("AGENTSSO_ISSUER: required")
	case c.modelURL == "":
		return nil, errors.New("OPENAI_BASE_URL: required (the model's base URL, …/v1)")
	case c.grant != "authorization_code" && c.grant != "client_credentials":
		return nil, fmt.Errorf("AGENTSSO_GRANT: %q: want authorization_code or client_credentials", c.grant)
	case c.grant == "client_credentials" && c.clientSecret == "":
		return nil, errors.New("AGENTSSO_CLIENT_SECRET: required for client_credentials (this client has no private_key_jwt)")
	case c.grant == "authorization_code" && (c.redirectURI == "" || c.browserURL == ""):
		return nil, errors.New("AGENTSSO_REDIRECT_URI and AGENTSSO_BROWSER_URL: required for authorization_code")
	}
	return c, nil
}

// transportFunc makes the MCP transport of one server: where the client
// under test plugs in.
type transportFunc func(ctx context.Context, s server) (mcp.Transport, error)

// runTask connects to every server, gives the task and the tools to the
// model, runs the tool calls it names, and prints its final answer. It
// stops at the first error.
func runTask(ctx context.Context, cfg *config, name string, transport transportFunc, stdout io.Writer) error {
	client := mcp.NewClient(&mcp.Implementation{Name: name, Version: "1"}, nil)
	byTool := map[string]*mcp.ClientSession{}
	var tools []*mcp.Tool
	for _, s := range cfg.servers {
		tr, err := transport(ctx, s)
		if err != nil {
			return fmt.Errorf("server %s: %w", s.name, err)
		}
		sess, err := client.Connect(ctx, tr, nil)
		if err != nil {
			return fmt.Errorf("server %s: connect: %w", s.name, err)
		}
		defer sess.Close()
		res, err := sess.ListTools(ctx, nil)
		if err != nil {
			return fmt.Errorf("server %s: tools/list: %w", s.name, err)
		}
		for _, t := range res.Tools {
			if _, dup := byTool[t.Name]; !dup {
				byTool[t.Name] = sess
				tools = append(tools, t)
			}
		}
	}
	answer, err := chatLoop(ctx, cfg, tools, func(ctx context.Context, tool string, args map[string]any) (string, error) {
		sess := byTool[tool]
		if sess == nil {
			return "", fmt.Errorf("the model called %q, which no server publishes", tool)
		}
		res, err := sess.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil {
			return "", fmt.Errorf("tools/call %s: %w", tool, err)
		}
		var parts []string
		for _, c := range res.Content {
			if t, ok := c.(*mcp.TextContent); ok {
				parts = append(parts, t.Text)
			}
		}
		if res.IsError {
			return "", fmt.Errorf("tools/call %s: the tool failed: %s", tool, strings.Join(parts, " "))
		}
		return strings.Join(parts, "\n"), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, answer)
	return nil
}

// chatLoop is a minimal OpenAI-compatible agent loop (the wire format of
// internal/chatapi): ask, run the tool calls, hand back their results,
// until the model answers with text.
func chatLoop(ctx context.Context, cfg *config, tools []*mcp.Tool, call func(context.Context, string, map[string]any) (string, error)) (string, error) {
	var defs []chatapi.ToolDef
	for _, t := range tools {
		defs = append(defs, chatapi.ToolDefOf(t))
	}
	task := cfg.task
	msgs := []chatapi.Message{{Role: "user", Content: &task}}
	for range maxRounds {
		req := map[string]any{"model": "agentsso-fake", "messages": msgs}
		if len(defs) > 0 {
			req["tools"] = defs
		}
		msg, err := chatapi.Complete(ctx, http.DefaultClient, cfg.modelURL, cfg.modelKey, req)
		if err != nil {
			return "", err
		}
		if len(msg.ToolCalls) == 0 {
			if msg.Content == nil {
				return "", errors.New("model: an answer with neither text nor tool calls")
			}
			return *msg.Content, nil
		}
		msgs = append(msgs, *msg)
		for _, tc := range msg.ToolCalls {
			args, err := chatapi.ParseArguments(tc.Function.Arguments)
			if err != nil {
				return "", fmt.Errorf("model: %s: %v", tc.Function.Name, err)
			}
			out, err := call(ctx, tc.Function.Name, args)
			if err != nil {
				return "", err
			}
			msgs = append(msgs, chatapi.Message{Role: "tool", Content: &out, ToolCallID: tc.ID})
		}
	}
	return "", fmt.Errorf("model: no final answer after %d rounds", maxRounds)
}

// redirectCatcher listens on the redirect URI and hands over the query of
// each authorization response delivered to it.
type redirectCatcher struct {
	browserURL string
	srv        *http.Server
	got        chan url.Values
}

// catchRedirects listens on the host and port of redirectURI.
func catchRedirects(redirectURI, browserURL string) (*redirectCatcher, error) {
	u, err := url.Parse(redirectURI)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return nil, fmt.Errorf("AGENTSSO_REDIRECT_URI: %q is not an http://host:port/ URL to listen on", redirectURI)
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_REDIRECT_URI: listening on %s: %w", u.Host, err)
	}
	c := &redirectCatcher{browserURL: browserURL, got: make(chan url.Values, 4)}
	path := u.Path
	if path == "" {
		path = "/"
	}
	c.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		select {
		case c.got <- r.URL.Query():
		default:
		}
		_, _ = io.WriteString(w, "You may close this window.\n")
	})}
	go func() { _ = c.srv.Serve(l) }()
	return c, nil
}

func (c *redirectCatcher) close() { _ = c.srv.Close() }

// authorize has the user open authURL in the browser (the shim signs in
// and consents) and returns the query of the authorization response that
// reached the redirect URI.
func (c *redirectCatcher) authorize(ctx context.Context, authURL string) (url.Values, error) {
	for len(c.got) > 0 {
		<-c.got
	}
	ctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.browserURL+"?url="+url.QueryEscape(authURL), nil)
	if err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("browser: %w", err)
	}
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("browser: status %d: %.200s", resp.StatusCode, bytes.TrimSpace(rb))
	}
	select {
	case q := <-c.got:
		if e := q.Get("error"); e != "" {
			return nil, fmt.Errorf("authorization response: error %s: %s", e, q.Get("error_description"))
		}
		return q, nil
	case <-time.After(callbackTimeout):
		return nil, errors.New("no authorization response reached the redirect URI")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
