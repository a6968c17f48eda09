package agentlab

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Spec is the world a scenario sets up around an agent: the `setup` of a
// scenario's `agent` section (docs/SCENARIOS.md, "Agent scenarios").
type Spec struct {
	// Grant the agent is told to use: authorization_code (default) or
	// client_credentials.
	Grant string `yaml:"grant"`
	// ClientAuth: none (default with authorization_code),
	// client_secret_basic (default with client_credentials) or
	// private_key_jwt.
	ClientAuth string `yaml:"client_auth"`
	// ClientKey, with private_key_jwt: where the agent's key is, "file"
	// (default: a PEM file, AGENTSSO_CLIENT_KEY_FILE) or "pkcs11" (a fresh key
	// the harness creates in a SoftHSM2 token,
	// AGENTSSO_CLIENT_KEY_PKCS11_URI).
	ClientKey string `yaml:"client_key"`
	// Servers the agent is given, in order: rs1 (default), rs2, decoy.
	Servers []string `yaml:"servers"`
	// AccessTokenLifetime of the tokens the agent gets (default 5m): the
	// short lifetimes of the time-bound scenarios.
	AccessTokenLifetime Duration `yaml:"access_token_lifetime"`
	// Task is the model's script: the tool calls it answers with, in
	// order, then a final text.
	Task []ToolCall `yaml:"task"`
	// UserToken hands the agent a user's access token to act for
	// (AGENTSSO_USER_TOKEN); the servers then want exchanged tokens.
	UserToken bool `yaml:"user_token"`
	// SecondAS makes rs2 trust a second authorization server (tenant
	// agents2, with dynamic registration) instead of the first.
	SecondAS bool `yaml:"second_as"`
	// DPoP makes the servers require DPoP-bound tokens.
	DPoP *DPoPSetup `yaml:"dpop"`
	// AS perturbs the authorization server as the agent sees it.
	AS ASSetup `yaml:"as"`
	// RS perturbs a server, by name.
	RS map[string]RSSetup `yaml:"rs"`
	// Timeout bounds the agent's run (default 60s plus the task's delays).
	Timeout Duration `yaml:"timeout"`
	// TLS serves the world over HTTPS from a CA of its own, handed to the
	// agent as AGENTSSO_CA_FILE (and SSL_CERT_FILE, NODE_EXTRA_CA_CERTS).
	TLS bool `yaml:"tls"`
}

// ToolCall is one scripted answer of the model.
type ToolCall struct {
	Tool string         `yaml:"tool"`
	Args map[string]any `yaml:"args"`
	// Delay is how long the model "thinks" before answering with it.
	Delay Duration `yaml:"delay"`
}

// DPoPSetup asks for DPoP (RFC 9449).
type DPoPSetup struct {
	// ASNonce and RSNonce make the AS and the servers demand nonces.
	ASNonce bool `yaml:"as_nonce"`
	RSNonce bool `yaml:"rs_nonce"`
}

// ASSetup perturbs the authorization server.
type ASSetup struct {
	// Drop removes fields from the AS metadata.
	Drop []string `yaml:"drop"`
	// Issuer: "mismatch" serves metadata whose issuer is not the one the
	// agent asked for.
	Issuer string `yaml:"issuer"`
	// AuthorizationEndpoint replaces the metadata's authorization_endpoint
	// (e.g. "javascript:alert(1)").
	AuthorizationEndpoint string `yaml:"authorization_endpoint"`
	// RedirectIss: "wrong" or "missing" changes the RFC 9207 iss of the
	// authorization response; RedirectState "wrong" changes its state.
	RedirectIss   string `yaml:"redirect_iss"`
	RedirectState string `yaml:"redirect_state"`
	// IDToken replaces the ID token of the token response with a flawed
	// one: wrong-iss, wrong-aud, bad-signature, wrong-nonce, expired.
	IDToken string `yaml:"id_token"`
}

// RSSetup perturbs one fake MCP server.
type RSSetup struct {
	// PRMResource: "other-origin" publishes metadata whose resource is
	// another server's.
	PRMResource string `yaml:"prm_resource"`
	// Scopes replaces the scopes_supported of its metadata.
	Scopes []string `yaml:"scopes"`
	// Reject answers 401 invalid_token to these authorized tools/call
	// requests (1-based), valid tokens notwithstanding; RejectFrom to all
	// from that one on.
	Reject     []int `yaml:"reject"`
	RejectFrom int   `yaml:"reject_from"`
	// RevokeAfter revokes every token of the agent's client at the AS
	// after this many successful tools/call requests.
	RevokeAfter int `yaml:"revoke_after"`
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads "30s", "5m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: a duration such as \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as \"30s\"", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes "30s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Validate names the first bad field.
func (s *Spec) Validate() error {
	switch s.Grant {
	case "", "authorization_code", "client_credentials":
	default:
		return fieldErr("grant", "%q: use authorization_code or client_credentials", s.Grant)
	}
	switch s.ClientAuth {
	case "", "none", "client_secret_basic", "private_key_jwt":
	default:
		return fieldErr("client_auth", "%q: use none, client_secret_basic or private_key_jwt", s.ClientAuth)
	}
	switch s.ClientKey {
	case "", "file":
	case "pkcs11":
		if s.ClientAuth != "private_key_jwt" {
			return fieldErr("client_key", "pkcs11 goes with client_auth: private_key_jwt")
		}
	default:
		return fieldErr("client_key", "%q: use file or pkcs11", s.ClientKey)
	}
	if s.Grant == "client_credentials" && s.ClientAuth == "none" {
		return fieldErr("client_auth", "none cannot use client_credentials")
	}
	for i, n := range s.Servers {
		if !knownServer(n) {
			return fieldErr(fmt.Sprintf("servers[%d]", i), "%q: use rs1, rs2 or decoy", n)
		}
	}
	for n := range s.RS {
		if !knownServer(n) {
			return fieldErr(fmt.Sprintf("rs.%s", n), "no such server: use rs1, rs2 or decoy")
		}
	}
	for i, c := range s.Task {
		if toolServer(c.Tool) == "" {
			return fieldErr(fmt.Sprintf("task[%d].tool", i), "%q: no fake server publishes it (tools: %s)", c.Tool, toolNames())
		}
	}
	switch s.AS.Issuer {
	case "", "mismatch":
	default:
		return fieldErr("as.issuer", "%q: use mismatch", s.AS.Issuer)
	}
	switch s.AS.RedirectIss {
	case "", "wrong", "missing":
	default:
		return fieldErr("as.redirect_iss", "%q: use wrong or missing", s.AS.RedirectIss)
	}
	switch s.AS.RedirectState {
	case "", "wrong":
	default:
		return fieldErr("as.redirect_state", "%q: use wrong", s.AS.RedirectState)
	}
	switch s.AS.IDToken {
	case "", "wrong-iss", "wrong-aud", "bad-signature", "wrong-nonce", "expired":
	default:
		return fieldErr("as.id_token", "%q: use wrong-iss, wrong-aud, bad-signature, wrong-nonce or expired", s.AS.IDToken)
	}
	return nil
}

func (s *Spec) grant() string {
	if s.Grant == "" {
		return "authorization_code"
	}
	return s.Grant
}

func (s *Spec) clientAuth() string {
	if s.ClientAuth != "" {
		return s.ClientAuth
	}
	if s.grant() == "client_credentials" {
		return "client_secret_basic"
	}
	return "none"
}

func (s *Spec) servers() []string {
	if len(s.Servers) == 0 {
		return []string{"rs1"}
	}
	return s.Servers
}

// tools of the fake servers: name → scope.
var serverTools = map[string][][2]string{
	"rs1":   {{"notes_read", "notes:read"}, {"notes_write", "notes:write"}},
	"rs2":   {{"search", "search"}},
	"decoy": {{"lookup", ""}},
}

func knownServer(n string) bool { _, ok := serverTools[n]; return ok }

func toolServer(tool string) string {
	for s, ts := range serverTools {
		for _, t := range ts {
			if t[0] == tool {
				return s
			}
		}
	}
	return ""
}

func toolScope(tool string) string {
	for _, ts := range serverTools {
		for _, t := range ts {
			if t[0] == tool {
				return t[1]
			}
		}
	}
	return ""
}

func toolNames() string {
	return "notes_read, notes_write (rs1), search (rs2), lookup (decoy)"
}

// FieldError is a bad value of a Spec field: Field is its path in the
// setup (as.id_token, servers[1]), Msg what is wrong and the fix.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}
