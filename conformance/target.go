package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Target is the system under test, as a target file describes it
// (docs/TARGETS.md).
type Target struct {
	Name string `yaml:"name"`
	// Kind is gateway or resource-server.
	Kind string `yaml:"kind"`
	// URL is the protected URL the harness calls.
	URL string `yaml:"url"`
	// Protocol is mcp (streamable HTTP: initialize, then tools/call) or
	// http (a plain request with Method and Body).
	Protocol string `yaml:"protocol"`
	Method   string `yaml:"method"`
	Body     string `yaml:"body"`
	// Tool is the MCP tool to call (protocol mcp).
	Tool string `yaml:"tool"`
	// Audience the target answers to (default: URL).
	Audience string `yaml:"audience"`
	// Tenant whose issuer the target trusts.
	Tenant string `yaml:"tenant"`
	// Scope the call requires.
	Scope string `yaml:"scope"`
	// Features the target declares: rfc9068, introspection, dpop, mtls,
	// context-binding, token-exchange, resource-metadata, audit.
	Features []string `yaml:"features"`
	// Zone is the target's compute zone (context-binding).
	Zone string `yaml:"zone"`
	// Upstream is the HOST:PORT the gateway forwards to; the harness
	// listens there and records what arrives.
	Upstream string `yaml:"upstream"`
	// UpstreamAudience is the audience the gateway exchanges tokens for.
	UpstreamAudience string `yaml:"upstream_audience"`
	// Audit is the target's audit sink.
	Audit *AuditSink `yaml:"audit"`
	// AllowedActor is an actor the target's policy allows (act-policy):
	// the act-current-actor scenario names it as the current actor, then
	// only as an earlier one.
	AllowedActor string `yaml:"allowed_actor"`
	// BehindProxy declares that the target cannot see the caller's
	// source address (source-address checks are skipped).
	BehindProxy bool `yaml:"behind_proxy"`
}

// AuditSink locates the target's audit records.
type AuditSink struct {
	// File is a JSON-lines file the target writes.
	File string `yaml:"file"`
	// Fields maps canonical names (issuer, idp_user_id, agent_id,
	// audience, token_id, scopes_presented, scopes_required, decision,
	// reason) to the target's own field names.
	Fields map[string]string `yaml:"fields"`
}

// Has reports whether the target declares a feature. "mcp" is implied by
// protocol mcp.
func (t *Target) Has(f string) bool {
	if f == "mcp" {
		return t.Protocol == "mcp"
	}
	return slices.Contains(t.Features, f)
}

func (t *Target) upstreamAudience() string {
	if t.UpstreamAudience != "" {
		return t.UpstreamAudience
	}
	return "https://upstream.agentsso.invalid"
}

// ParseTarget reads a target file strictly and fills defaults.
func ParseTarget(file string, data []byte) (*Target, error) {
	var t Target
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, yamlError(file, err)
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	if err := t.Validate(); err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.File = file
			pe.Line = lineOf(&root, pe.Field)
		}
		return nil, err
	}
	return &t, nil
}

// Validate checks a target and fills defaults.
func (t *Target) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &ParseError{File: "target", Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	if t.Kind == "" {
		t.Kind = "gateway"
	}
	if !slices.Contains(knownKinds, t.Kind) {
		return bad("kind", "%q: want gateway or resource-server", t.Kind)
	}
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("url", "%q: want the protected URL, e.g. http://127.0.0.1:9090/mcp", t.URL)
	}
	if t.Protocol == "" {
		t.Protocol = "http"
		if strings.HasSuffix(u.Path, "/mcp") {
			t.Protocol = "mcp"
		}
	}
	if t.Protocol != "mcp" && t.Protocol != "http" {
		return bad("protocol", "%q: want mcp or http", t.Protocol)
	}
	if t.Method == "" {
		t.Method = "GET"
		if t.Protocol == "mcp" {
			t.Method = "POST"
		}
	}
	if t.Protocol == "mcp" && t.Tool == "" {
		return bad("tool", "missing: name the MCP tool the harness calls (its scope is `scope`)")
	}
	if t.Audience == "" {
		t.Audience = t.URL
	}
	if t.Tenant == "" {
		t.Tenant = "acme"
	}
	if t.Name == "" {
		t.Name = t.URL
	}
	for i, f := range t.Features {
		if !slices.Contains(KnownFeatures, f) {
			return bad(fmt.Sprintf("features[%d]", i), "unknown feature %q (want one of %s)", f, strings.Join(KnownFeatures, ", "))
		}
	}
	if t.Has("context-binding") && t.Zone == "" {
		return bad("zone", "context-binding is declared: name the target's zone")
	}
	if t.Kind == "gateway" {
		if t.Upstream == "" {
			return bad("upstream", "a gateway needs the HOST:PORT it forwards to: the harness listens there as the upstream API")
		}
		if h, _, err := net.SplitHostPort(t.Upstream); err != nil || !strings.HasPrefix(h, "127.") {
			return bad("upstream", "%q: want a 127.0.0.0/8 HOST:PORT", t.Upstream)
		}
	}
	if t.Has("act-policy") && t.AllowedActor == "" {
		return bad("allowed_actor", "act-policy is declared: name an actor the policy allows")
	}
	if t.Audit != nil && t.Audit.File == "" {
		return bad("audit.file", "missing: the JSON-lines file the target writes its decisions to")
	}
	return nil
}
