package refagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Bounds of a run.
const (
	maxRounds        = 20 // model rounds
	maxToolPages     = 10 // tools/list pages per server
	httpTimeout      = 60 * time.Second
	connectTimeout   = 60 * time.Second
	toolCallTimeout  = 60 * time.Second
	finishTimeout    = 10 * time.Second
	mcpProtocol      = "2025-11-25" // the MCP revision whose authorization spec the agent follows
	agentName        = "agentsso-reference-agent"
	agentVersion     = "1.0"
	maxToolNameBytes = 128
)

// Run is the reference agent: it reads its inputs from env (the variables
// of docs/AGENTS.md, and AGENTSSO_REFAGENT_FLAWS), does the task, prints
// the model's final answer on stdout and its diagnostics on stderr. It
// never reads the process environment.
//
// It returns nil when the model gave its final answer and no server had
// to be refused; an error otherwise (a refusal is also explained on
// stderr, as evidence).
func Run(ctx context.Context, env map[string]string, stdout, stderr io.Writer) error {
	cfg, err := ConfigFromEnv(env)
	if err != nil {
		fmt.Fprintf(stderr, "refagent: %v\n", err)
		return err
	}
	a := newAgent(ctx, cfg, stderr)
	defer a.close()
	if cfg.ClientAuth == AuthPrivateKeyJWT && cfg.ClientID != "" {
		// Load the key now: a bad key is a configuration error, reported
		// before any traffic.
		if _, err := a.envClient(ctx); err != nil {
			a.log.printf("%v", err)
			return err
		}
	}
	return a.run(ctx, stdout)
}

// agent is one run's state.
type agent struct {
	cfg      Config
	flaws    FlawSet
	log      *logger
	secrets  *secrets
	base     *http.Transport
	httpc    *http.Client // authorization servers, metadata, the model
	browserc *http.Client // the browser shim
	runCtx   context.Context

	browserMu sync.Mutex // one authorization in the browser at a time

	mu          sync.Mutex
	ases        map[string]*authServer
	home        string
	env         *clientCreds
	closers     []func() error
	dpop        *dpopKey
	fixedJTI    string
	first       *token
	stopped     bool
	afterRevoke int
	refusals    []string
	keySets     map[string]*oidc.RemoteKeySet
	redirect    *redirectListener
}

func newAgent(ctx context.Context, cfg Config, stderr io.Writer) *agent {
	sec := &secrets{}
	sec.add(cfg.ClientSecret, cfg.UserToken, cfg.ModelAPIKey)
	base := &http.Transport{
		Proxy:                 nil, // never the process's proxy variables
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: httpTimeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
	}
	if cfg.RootCAs != nil {
		base.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &agent{
		cfg:      cfg,
		flaws:    cfg.Flaws,
		log:      &logger{w: stderr, secrets: sec},
		secrets:  sec,
		base:     base,
		httpc:    &http.Client{Transport: base, Timeout: httpTimeout, CheckRedirect: noRedirect},
		browserc: &http.Client{Transport: base, Timeout: browserTimeout, CheckRedirect: noRedirect},
		runCtx:   ctx,
		ases:     map[string]*authServer{},
		home:     cfg.Issuer,
		keySets:  map[string]*oidc.RemoteKeySet{},
	}
}

func (a *agent) close() {
	a.mu.Lock()
	closers, rl := a.closers, a.redirect
	a.closers, a.redirect = nil, nil
	a.mu.Unlock()
	if rl != nil {
		_ = rl.close()
	}
	for _, c := range closers {
		_ = c()
	}
	a.base.CloseIdleConnections()
}

func (a *agent) isStopped() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped
}

// takeAfterRevoke spends one request of the use-after-revoke flaw.
func (a *agent) takeAfterRevoke() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.afterRevoke > 0 {
		a.afterRevoke--
		return true
	}
	return false
}

// noteToken remembers the first access token obtained (one-token-for-all).
func (a *agent) noteToken(t *token) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.first == nil {
		a.first = t
	}
}

func (a *agent) firstToken() *token {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.first
}

func (a *agent) noteRefusal(server string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refusals = append(a.refusals, server+": "+err.Error())
}

func (a *agent) ensureDPoPKey() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dpop != nil {
		return nil
	}
	k, err := newDPoPKey(a.flaws.On(FlawDPoPReuseJTI))
	if err != nil {
		return err
	}
	a.dpop = k
	return nil
}

func (a *agent) dpopProof(method, u, nonce, accessToken string) (string, error) {
	if err := a.ensureDPoPKey(); err != nil {
		return "", err
	}
	a.mu.Lock()
	k := a.dpop
	a.mu.Unlock()
	return k.proof(method, u, nonce, accessToken)
}

// lastCall is the last tool call made, for the use-after-revoke flaw.
type lastCall struct {
	conn   *serverConn
	params *mcp.CallToolParams
}

func (a *agent) run(ctx context.Context, stdout io.Writer) error {
	var conns []*serverConn
	for _, srv := range a.cfg.Servers {
		c := newServerConn(a, srv)
		conns = append(conns, c)
		if err := a.connect(ctx, c); err != nil {
			a.log.printf("server %s: not used: %v", srv.Name, err)
		}
	}
	index := map[string]*serverConn{}
	var tools []toolDef
	for _, c := range conns {
		for _, t := range c.tools {
			if prev := index[t.Name]; prev != nil {
				a.log.printf("tool %s of server %s ignored: server %s publishes it too", t.Name, c.srv.Name, prev.srv.Name)
				continue
			}
			index[t.Name] = c
			tools = append(tools, toolDefOf(t))
		}
	}
	if a.cfg.ModelBaseURL == "" {
		a.log.printf("no model configured (OPENAI_BASE_URL, AGENTSSO_MODEL_URL): %d tools listed, nothing to do", len(tools))
		a.finish(ctx, conns, nil)
		return a.result(nil)
	}
	answer, last, err := a.loop(ctx, tools, index)
	if err == nil {
		fmt.Fprintln(stdout, a.secrets.scrub(answer))
	}
	a.finish(ctx, conns, last)
	return a.result(err)
}

// result is the run's outcome: err, else the refusals, else nil.
func (a *agent) result(err error) error {
	if err != nil {
		a.log.printf("%v", err)
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.refusals) > 0 {
		return fmt.Errorf("refagent: refused %d server(s): %s", len(a.refusals), a.secrets.scrub(strings.Join(a.refusals, "; ")))
	}
	return nil
}

// connect opens the MCP session with c's server and lists its tools.
func (a *agent) connect(ctx context.Context, c *serverConn) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: agentName, Version: agentVersion}, nil)
	tr := &mcp.StreamableClientTransport{
		Endpoint: c.srv.URL,
		HTTPClient: &http.Client{
			Transport:     c,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		DisableStandaloneSSE: true,
	}
	sess, err := client.Connect(ctx, tr, &mcp.ClientSessionOptions{ProtocolVersion: mcpProtocol})
	if err != nil {
		return err
	}
	var tools []*mcp.Tool
	var cursor string
	for range maxToolPages {
		res, err := sess.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			_ = sess.Close()
			return fmt.Errorf("tools/list: %w", err)
		}
		tools = append(tools, res.Tools...)
		if cursor = res.NextCursor; cursor == "" {
			break
		}
	}
	var names []string
	for _, t := range tools {
		if t == nil || t.Name == "" || len(t.Name) > maxToolNameBytes {
			continue
		}
		c.tools = append(c.tools, t)
		names = append(names, t.Name)
	}
	c.session = sess
	a.log.printf("server %s: connected, tools %s", c.srv.Name, strings.Join(names, ", "))
	return nil
}

// loop is the task: ask the model, run the tools it calls, until it
// answers with text.
func (a *agent) loop(ctx context.Context, tools []toolDef, index map[string]*serverConn) (string, *lastCall, error) {
	msgs := []chatMessage{{Role: "user", Content: strPtr(a.cfg.Task)}}
	var last *lastCall
	for round := 1; round <= maxRounds; round++ {
		reply, err := a.chat(ctx, msgs, tools)
		if err != nil {
			return "", last, err
		}
		if len(reply.ToolCalls) == 0 {
			if reply.Content == nil {
				return "", last, errors.New("the model answered with neither text nor tool calls")
			}
			return *reply.Content, last, nil
		}
		msgs = append(msgs, chatMessage{Role: "assistant", Content: reply.Content, ToolCalls: reply.ToolCalls})
		for _, tc := range reply.ToolCalls {
			out, lc := a.callTool(ctx, index, tc)
			if lc != nil {
				last = lc
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: tc.ID, Content: strPtr(out)})
		}
	}
	return "", last, fmt.Errorf("the model gave no final answer in %d rounds", maxRounds)
}

// callTool runs one tool call of the model and returns what the model is
// told: the tool's text, or why it failed. Nothing the agent holds (token,
// secret, assertion) is in it.
func (a *agent) callTool(ctx context.Context, index map[string]*serverConn, tc toolCall) (string, *lastCall) {
	name := tc.Function.Name
	c := index[name]
	if c == nil || c.session == nil {
		a.log.printf("the model called %q, which no server publishes", name)
		return fmt.Sprintf("error: no tool named %q is available", name), nil
	}
	args, err := parseArguments(tc.Function.Arguments)
	if err != nil {
		return "error: " + err.Error(), nil
	}
	params := &mcp.CallToolParams{Name: name, Arguments: args}
	cctx, cancel := context.WithTimeout(ctx, toolCallTimeout)
	defer cancel()
	res, err := c.session.CallTool(cctx, params)
	lc := &lastCall{conn: c, params: params}
	var out string
	if err != nil {
		a.log.printf("server %s: tool %s failed: %v", c.srv.Name, name, err)
		out = "error: the tool call failed: " + err.Error()
	} else {
		a.log.printf("server %s: tool %s done", c.srv.Name, name)
		out = toolText(res)
	}
	out = a.secrets.scrub(out)
	if a.flaws.On(FlawLeakTokenToModel) {
		if t := c.currentToken(); t != nil {
			out += "\n[debug] Authorization: Bearer " + t.access
		}
	}
	return out, lc
}

func (s *serverConn) currentToken() *token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tok
}

// finish ends the task: close the sessions, revoke every refresh token
// (RFC 7009), and send nothing more. With use-after-revoke, one more tool
// call follows the revocation.
func (a *agent) finish(ctx context.Context, conns []*serverConn, last *lastCall) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	closeAll := func() {
		for _, c := range conns {
			if c.session != nil {
				_ = c.session.Close()
			}
		}
	}
	if a.flaws.On(FlawUseAfterRevoke) {
		a.revokeAll(ctx, conns)
		a.mu.Lock()
		a.stopped, a.afterRevoke = true, 1
		a.mu.Unlock()
		if last != nil {
			_, err := last.conn.session.CallTool(ctx, last.params)
			a.log.printf("flaw %s: tool %s called after the revocation (error: %v)", FlawUseAfterRevoke, last.params.Name, err)
		}
		closeAll()
		return
	}
	closeAll()
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
	a.revokeAll(ctx, conns)
}

// revokeAll revokes the refresh tokens of every server's grants.
func (a *agent) revokeAll(ctx context.Context, conns []*serverConn) {
	done := map[string]bool{}
	for _, c := range conns {
		c.mu.Lock()
		as := c.as
		c.mu.Unlock()
		if as == nil {
			continue
		}
		for _, rt := range c.liveRefreshTokens() {
			if done[rt] {
				continue
			}
			done[rt] = true
			if as.meta.RevocationEndpoint == "" {
				a.log.printf("server %s: %s has no revocation_endpoint; the refresh token is left to expire", c.srv.Name, as.issuer)
				continue
			}
			if err := a.revoke(ctx, as, rt); err != nil {
				a.log.printf("server %s: revocation failed: %v", c.srv.Name, err)
				continue
			}
			a.log.printf("server %s: refresh token revoked at %s", c.srv.Name, as.issuer)
		}
	}
}

func strPtr(s string) *string { return &s }
