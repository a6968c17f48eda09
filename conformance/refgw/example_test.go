package refgw_test

import (
	"log"
	"net/http"

	"github.com/agentsso/agentsso/conformance/refgw"
)

// A gateway in front of an upstream API, for tenant acme of a local
// agentsso emulator: tools need their own scope, every token is
// introspected, and the upstream gets an exchanged token.
func ExampleNew() {
	gw, err := refgw.New(refgw.Config{
		Issuer:   "http://127.0.0.1:8080/t/acme",
		JWKSURL:  "http://127.0.0.1:8080/t/acme/jwks",
		Audience: "https://mcp.acme.test/zendesk",
		ToolScopes: map[string]string{
			"get_ticket":    "zendesk:tickets:read",
			"update_ticket": "zendesk:tickets:write",
		},
		DefaultScope: "zendesk:tickets:read",
		Introspection: &refgw.IntrospectionConfig{
			URL: "http://127.0.0.1:8080/t/acme/introspect", ClientID: "mcp-gateway", ClientSecret: "mcp-gateway-secret",
		},
		Upstream: "http://127.0.0.1:9090",
		Exchange: &refgw.ExchangeConfig{
			TokenURL: "http://127.0.0.1:8080/t/acme/token", ClientID: "mcp-gateway", ClientSecret: "mcp-gateway-secret",
			Audience: "https://api.acme.test/upstream",
		},
		AuditPath: "gateway-audit.jsonl",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer gw.Close()
	srv := &http.Server{Addr: "127.0.0.1:8443", Handler: gw}
	_ = srv // srv.ListenAndServe()
}
