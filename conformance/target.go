package conformance

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
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
	// TLS says how the harness reaches an https target.
	TLS *TargetTLS `yaml:"tls,omitempty"`

	// Command (kind agent) is the agent to launch once per scenario run,
	// with the adapter protocol's environment (docs/AGENTS.md); Dir is
	// its working directory.
	Command []string `yaml:"command"`
	Dir     string   `yaml:"dir"`
	// Attach (kind agent): the agent runs already and is pointed at each
	// scenario run's world by hand; the harness prints the variables (and
	// writes them to AgentOptions.AttachFile) and waits for the task.
	Attach bool `yaml:"attach"`
}

// TargetTLS is how the harness reaches an https target. The client
// certificates it presents (mtls) are issued by the client CA of the run
// (Options.ClientCA; `agentsso run` prints its file).
type TargetTLS struct {
	// CAFile is a PEM file of the CA certificates the target's server
	// certificate chains to, trusted besides the system roots and the
	// client CA of the run.
	CAFile string `yaml:"ca_file"`
	// ClientCertRequired declares that the target's handshake refuses a
	// caller without a client certificate: every call then presents the
	// bound certificate unless its step says otherwise.
	ClientCertRequired bool `yaml:"client_cert_required"`
}

// AuditSink locates the target's audit records.
type AuditSink struct {
	// File is a JSON-lines file the target writes.
	File string `yaml:"file"`
	// Webhook is the 127.0.0.0/8 HOST:PORT where the harness listens for
	// the target's audit records instead: the target POSTs JSON to
	// http://HOST:PORT/audit (one record, an array, or JSON lines).
	Webhook string `yaml:"webhook"`
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
		return bad("kind", "%q: want gateway, resource-server or agent", t.Kind)
	}
	if t.Kind == "agent" {
		return t.validateAgent(bad)
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
	if t.Has("mtls") && u.Scheme != "https" {
		return bad("url", "%q: mtls is declared, so the url must be https:// (client certificates travel in the TLS handshake)", t.URL)
	}
	if t.TLS != nil && u.Scheme != "https" {
		return bad("tls", "applies to an https:// url, not %q", t.URL)
	}
	if t.TLS != nil && t.TLS.CAFile != "" {
		if _, err := readCAFile(t.TLS.CAFile); err != nil {
			return bad("tls.ca_file", "%v", err)
		}
	}
	if t.Audit != nil {
		if err := t.Audit.validate(t, bad); err != nil {
			return err
		}
	}
	return nil
}

// readCAFile reads PEM CA certificates, at least one.
func readCAFile(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %v", path, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return out, nil
}
