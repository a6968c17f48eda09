package refgw

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"
)

// MCP streamable HTTP (JSON answers only; no SSE).
const (
	// ProtocolVersion is the MCP version answered when the client asks for
	// one this gateway does not speak.
	ProtocolVersion = "2025-06-18"

	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "MCP-Protocol-Version"
	maxSessions           = 10_000
	sessionIdle           = time.Hour
)

// protocolVersions are the MCP versions whose streamable HTTP transport
// this gateway serves.
var protocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// JSON-RPC 2.0 error codes.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
)

type session struct {
	// principal binds the session to who created it (MCP Security Best
	// Practices, session hijacking): issuer, subject, agent and actor.
	principal string
	version   string
	lastUsed  time.Time
}

type sessionStore struct {
	mu sync.Mutex
	m  map[string]*session
}

var errTooManySessions = errors.New("too many MCP sessions")

func (s *sessionStore) create(principal, version string, now time.Time) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	if len(s.m) >= maxSessions {
		for k, v := range s.m {
			if now.Sub(v.lastUsed) > sessionIdle {
				delete(s.m, k)
			}
		}
		if len(s.m) >= maxSessions {
			return "", errTooManySessions
		}
	}
	s.m[id] = &session{principal: principal, version: version, lastUsed: now}
	return id, nil
}

// get returns a copy of a live session and marks it used.
func (s *sessionStore) get(id string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if now.Sub(v.lastUsed) > sessionIdle {
		delete(s.m, id)
		return session{}, false
	}
	v.lastUsed = now
	return *v, true
}

func (s *sessionStore) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

type rpcMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// validID: a JSON-RPC id that MCP allows (a string or a number, not null).
func validID(id json.RawMessage) bool {
	id = bytes.TrimSpace(id)
	if len(id) == 0 {
		return false
	}
	var v any
	if json.Unmarshal(id, &v) != nil {
		return false
	}
	switch v.(type) {
	case string, float64:
		return true
	}
	return false
}

func writeRPC(w http.ResponseWriter, status int, id json.RawMessage, result any, code int, message string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	resp := map[string]any{"jsonrpc": "2.0", "id": id}
	if message != "" {
		resp["error"] = map[string]any{"code": code, "message": message}
	} else {
		resp["result"] = result
	}
	writeJSON(w, status, resp)
}

// rpcFail records a refusal that is not about the token and answers it as
// a JSON-RPC error.
func (st *request) rpcFail(w http.ResponseWriter, status int, id json.RawMessage, code int, message, reason string) {
	if reason == "" {
		reason = message
	}
	st.writeAudit(DecisionDeny, errProtocol.Error()+": "+reason, status)
	writeRPC(w, status, id, nil, code, message)
}

// principal is who a session belongs to: the identity (iss, sub) with
// the client and the current actor, so a client is never taken for a user
// whose id its sub happens to equal (RFC 9700 section 4.15), and an email
// claim never stands for an identity.
func (st *request) principal() string {
	c := st.claims
	switch g := st.g; {
	case g.flaw(FlawIdentityByEmail) && c.email != "":
		return "email\x00" + c.email
	case g.flaw(FlawIdentityBySubOnly):
		return c.sub
	}
	return c.iss + "\x00" + c.sub + "\x00" + c.agent() + "\x00" + c.currentActor()
}

// serveMCP handles the MCP endpoint. Every request, initialize included,
// needs a valid token.
func (g *Gateway) serveMCP(w http.ResponseWriter, r *http.Request) {
	st := g.newRequest(r)
	if d := st.authorize(); d != nil {
		st.deny(w, d)
		return
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodDelete:
		st.rec.MCPMethod = "session/delete"
		if _, ok := g.mcpSession(st, w, nil); !ok {
			return
		}
		g.sessions.delete(r.Header.Get(headerSessionID))
		if st.allow(w) {
			w.WriteHeader(http.StatusNoContent)
		}
		return
	default:
		// No server-initiated SSE stream (GET): 405 as the transport allows.
		w.Header().Set("Allow", "POST, DELETE")
		st.rpcFail(w, http.StatusMethodNotAllowed, nil, rpcInvalidRequest, "use POST", "")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		st.rpcFail(w, http.StatusUnsupportedMediaType, nil, rpcInvalidRequest, "Content-Type must be application/json", "")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(body) > maxRequestBody {
		st.rpcFail(w, http.StatusRequestEntityTooLarge, nil, rpcInvalidRequest, "request body too large", "")
		return
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
		st.rpcFail(w, http.StatusBadRequest, nil, rpcInvalidRequest, "JSON-RPC batches are not supported", "")
		return
	}
	var msg rpcMessage
	if err := json.Unmarshal(body, &msg); err != nil {
		st.rpcFail(w, http.StatusBadRequest, nil, rpcParseError, "parse error", "")
		return
	}
	isRequest := msg.Method != "" && msg.ID != nil
	isNotification := msg.Method != "" && msg.ID == nil
	isResponse := msg.Method == "" && msg.ID != nil && (msg.Result != nil || msg.Error != nil)
	if msg.JSONRPC != "2.0" || !(isRequest || isNotification || isResponse) || (msg.ID != nil && !validID(msg.ID)) {
		st.rpcFail(w, http.StatusBadRequest, nil, rpcInvalidRequest, "not a JSON-RPC 2.0 message", "")
		return
	}
	st.rec.MCPMethod = msg.Method
	if isRequest && msg.Method == "initialize" {
		g.mcpInitialize(st, w, msg)
		return
	}
	if _, ok := g.mcpSession(st, w, msg.ID); !ok {
		return
	}
	if !isRequest {
		// Notifications and responses: accepted, nothing to answer.
		if st.allow(w) {
			w.WriteHeader(http.StatusAccepted)
		}
		return
	}
	switch msg.Method {
	case "ping":
		if st.allow(w) {
			writeRPC(w, http.StatusOK, msg.ID, map[string]any{}, 0, "")
		}
	case "tools/list":
		if st.allow(w) {
			writeRPC(w, http.StatusOK, msg.ID, map[string]any{"tools": g.toolList()}, 0, "")
		}
	case "tools/call":
		g.mcpToolCall(st, w, msg)
	default:
		st.rpcFail(w, http.StatusOK, msg.ID, rpcMethodNotFound, "method not found", "")
	}
}

func (g *Gateway) mcpInitialize(st *request, w http.ResponseWriter, msg rpcMessage) {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if json.Unmarshal(msg.Params, &p) != nil || p.ProtocolVersion == "" {
		st.rpcFail(w, http.StatusOK, msg.ID, rpcInvalidParams, "initialize needs params.protocolVersion", "")
		return
	}
	version := ProtocolVersion
	if slices.Contains(protocolVersions, p.ProtocolVersion) {
		version = p.ProtocolVersion
	}
	id, err := g.sessions.create(st.principal(), version, g.now())
	if err != nil {
		st.rpcFail(w, http.StatusServiceUnavailable, msg.ID, rpcInvalidRequest, "no session available", err.Error())
		return
	}
	if !st.allow(w) {
		g.sessions.delete(id)
		return
	}
	w.Header().Set(headerSessionID, id)
	writeRPC(w, http.StatusOK, msg.ID, map[string]any{
		"protocolVersion": version,
		"capabilities":    map[string]any{"tools": map[string]any{}},
		"serverInfo":      map[string]any{"name": "agentsso-refgw", "version": "1.0.0"},
	}, 0, "")
}

// mcpSession checks the Mcp-Session-Id and MCP-Protocol-Version headers of
// a request after initialize. The session must belong to the principal
// of the token (404 otherwise, as for an unknown session).
func (g *Gateway) mcpSession(st *request, w http.ResponseWriter, id json.RawMessage) (session, bool) {
	r := st.r
	ids := r.Header.Values(headerSessionID)
	switch {
	case len(ids) == 0 || ids[0] == "":
		st.rpcFail(w, http.StatusBadRequest, id, rpcInvalidRequest, "Mcp-Session-Id header required (initialize first)", "")
		return session{}, false
	case len(ids) > 1:
		st.rpcFail(w, http.StatusBadRequest, id, rpcInvalidRequest, "more than one Mcp-Session-Id header", "")
		return session{}, false
	}
	s, ok := g.sessions.get(ids[0], g.now())
	if !ok {
		st.rpcFail(w, http.StatusNotFound, id, rpcInvalidRequest, "unknown session", "")
		return session{}, false
	}
	if s.principal != st.principal() && !g.flaw(FlawUnboundSession) {
		st.rpcFail(w, http.StatusNotFound, id, rpcInvalidRequest, "unknown session", "the session belongs to another principal")
		return session{}, false
	}
	if r.Method == http.MethodDelete {
		return s, true
	}
	switch v := r.Header.Get(headerProtocolVersion); {
	case v == "":
		st.rpcFail(w, http.StatusBadRequest, id, rpcInvalidRequest, "MCP-Protocol-Version header required", "")
		return session{}, false
	case v != s.version:
		st.rpcFail(w, http.StatusBadRequest, id, rpcInvalidRequest, "MCP-Protocol-Version is not the negotiated version", "")
		return session{}, false
	}
	return s, true
}

func (g *Gateway) toolList() []map[string]any {
	names := make([]string, 0, len(g.cfg.ToolScopes))
	for n := range g.cfg.ToolScopes {
		names = append(names, n)
	}
	sort.Strings(names)
	tools := make([]map[string]any, 0, len(names))
	for _, n := range names {
		desc := "Calls the upstream's " + n + "."
		if s := g.cfg.ToolScopes[n]; s != "" {
			desc += " Needs scope " + s + "."
		}
		tools = append(tools, map[string]any{
			"name":        n,
			"description": desc,
			"inputSchema": map[string]any{"type": "object"},
		})
	}
	return tools
}

// mcpToolCall checks the tool's scope, gets the upstream token and calls
// GET {Upstream}/tools/{name}; the upstream's answer becomes the result.
func (g *Gateway) mcpToolCall(st *request, w http.ResponseWriter, msg rpcMessage) {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(msg.Params, &p) != nil || p.Name == "" {
		st.rpcFail(w, http.StatusOK, msg.ID, rpcInvalidParams, "tools/call needs params.name", "")
		return
	}
	scope, ok := g.cfg.ToolScopes[p.Name]
	if !ok {
		st.rpcFail(w, http.StatusOK, msg.ID, rpcInvalidParams, "unknown tool", "")
		return
	}
	st.rec.Tool = p.Name
	if d := st.requireScope(scope); d != nil {
		st.deny(w, d)
		return
	}
	tok, d := st.upstreamToken()
	if d != nil {
		st.deny(w, d)
		return
	}
	if !st.allow(w) {
		return
	}
	target := g.upstreamURL("/tools/"+p.Name, "")
	status, _, body, err := g.forward(st.r.Context(), http.MethodGet, target, nil, "", tok)
	if err != nil {
		writeRPC(w, http.StatusOK, msg.ID, map[string]any{
			"content": []map[string]any{{"type": "text", "text": "the upstream could not be reached"}},
			"isError": true,
		}, 0, "")
		return
	}
	writeRPC(w, http.StatusOK, msg.ID, map[string]any{
		"content": []map[string]any{{"type": "text", "text": string(body)}},
		"isError": status >= 400,
		"_meta":   map[string]any{"agentsso/upstream_status": status},
	}, 0, "")
}
