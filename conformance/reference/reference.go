// Package reference runs the reference gateway (package refgw) against an
// emulator tenant and describes it as a conformance target: what
// `agentsso demo` tests, and what the harness's own tests prove every
// scenario against, with and without each flaw.
package reference

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/refgw"
	"github.com/agentsso/agentsso/emulator/tlsca"
)

// Options of the reference setup.
type Options struct {
	// IdPURL is the emulator's public base URL; Tenant the trusted tenant.
	IdPURL, Tenant string
	// ClientID and Secret are the gateway's own client at the tenant
	// (introspection, token exchange).
	ClientID, Secret string
	// UpstreamAudience is what the gateway exchanges tokens for.
	UpstreamAudience string
	// Dir receives the gateway's audit log.
	Dir string
	// AuditWebhook makes the gateway post its audit records to the
	// harness's webhook (a free 127.0.0.1 port, the target's
	// audit.webhook) instead of writing them to a file in Dir.
	AuditWebhook bool
	// Flaws turn checks off (refgw.FlawCatalog).
	Flaws refgw.Flaws
	// CA, when set, puts the gateway in mTLS mode (feature mtls): it
	// serves HTTPS with a server certificate of CA, requests client
	// certificates and verifies those CA issued, and accepts
	// certificate-bound tokens (RFC 8705). Give the same CA to the
	// harness (conformance.Options.ClientCA). The emulator's local CA
	// (tlsca.LoadOrCreate) does.
	CA *tlsca.CA
	// NoExchange forwards calls to the upstream without a token instead of
	// exchanging (token-exchange is then not declared). Negative controls
	// use it so that an accepted bad token reaches the upstream instead of
	// failing at the IdP's exchange endpoint with a 502.
	NoExchange bool
}

// Setup is a running reference gateway.
type Setup struct {
	Gateway *refgw.Gateway
	Target  *conformance.Target
	srv     *http.Server
	ln      net.Listener
}

// Zone is the reference gateway's compute zone.
const Zone = "zone-a"

// AllowedActor is the one actor the reference gateway's delegation policy
// allows.
const AllowedActor = "agent-a"

// Tool is the MCP tool the harness calls, and Scope the scope it needs.
const (
	Tool  = "get_ticket"
	Scope = "zendesk:tickets:read"
)

// Start runs the reference gateway on a free 127.0.0.1 port.
func Start(o Options) (*Setup, error) {
	if o.Tenant == "" {
		o.Tenant = "acme"
	}
	if o.ClientID == "" {
		o.ClientID, o.Secret = "mcp-gateway", "mcp-gateway-secret"
	}
	if o.UpstreamAudience == "" {
		o.UpstreamAudience = "https://api.acme.test/upstream"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up, err := freeAddr()
	if err != nil {
		ln.Close()
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	if o.CA != nil {
		cert, err := o.CA.ServerCert([]string{"127.0.0.1"})
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("reference gateway: %w", err)
		}
		ln = tls.NewListener(ln, refgw.TLSConfig(cert, o.CA.Pool()))
		base = "https://" + ln.Addr().String()
	}
	iss := o.IdPURL + "/t/" + o.Tenant
	audit, hook := "", ""
	switch {
	case o.AuditWebhook:
		if hook, err = freeAddr(); err != nil {
			ln.Close()
			return nil, err
		}
	case o.Dir != "":
		audit = filepath.Join(o.Dir, "gateway-audit.jsonl")
	}
	hookURL := ""
	if hook != "" {
		hookURL = conformance.WebhookURL(hook)
	}
	features := []string{"rfc9068", "introspection", "dpop", "context-binding", "resource-metadata", "act-policy"}
	var exchange *refgw.ExchangeConfig
	if !o.NoExchange {
		exchange = &refgw.ExchangeConfig{TokenURL: iss + "/token", ClientID: o.ClientID, ClientSecret: o.Secret, Audience: o.UpstreamAudience}
		features = append(features, "token-exchange")
	}
	gw, err := refgw.New(refgw.Config{
		Issuer:        iss,
		JWKSURL:       iss + "/jwks",
		Audience:      base + "/mcp",
		ToolScopes:    map[string]string{Tool: Scope},
		DefaultScope:  Scope,
		Introspection: &refgw.IntrospectionConfig{URL: iss + "/introspect", ClientID: o.ClientID, ClientSecret: o.Secret},
		DPoP:          true,
		AllowedActors: []string{AllowedActor},
		Zone:          Zone,
		Upstream:      "http://" + up,
		Exchange:      exchange,
		AuditPath:     audit,
		AuditWebhook:  hookURL,
		JWKSRefresh:   time.Second,
		MTLS:          o.CA != nil,
		Flaws:         o.Flaws,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("reference gateway: %w", err)
	}
	s := &Setup{Gateway: gw, ln: ln, srv: &http.Server{Handler: gw, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = s.srv.Serve(ln) }()
	t := &conformance.Target{
		Name: "agentsso reference gateway", Kind: "gateway", URL: base + "/mcp", Protocol: "mcp", Tool: Tool,
		Audience: base + "/mcp", Tenant: o.Tenant, Scope: Scope, Zone: Zone, Upstream: up, UpstreamAudience: o.UpstreamAudience,
		AllowedActor: AllowedActor,
	}
	if o.CA != nil {
		features = append(features, "mtls")
	}
	if audit != "" || hook != "" {
		features = append(features, "audit")
		t.Audit = &conformance.AuditSink{File: audit, Webhook: hook, Fields: map[string]string{
			"issuer": "iss", "idp_user_id": "sub", "agent_id": "agent", "audience": "aud", "token_id": "jti"}}
	}
	if len(o.Flaws) > 0 {
		t.Name += " (flaws: " + o.Flaws.String() + ")"
	}
	t.Features = features
	s.Target = t
	if err := t.Validate(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the gateway.
func (s *Setup) Close() error {
	return errors.Join(s.srv.Close(), s.Gateway.Close())
}

// freeAddr finds a free loopback port for the harness's fake upstream.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
