package refgw

import (
	"fmt"

	"github.com/agentsso/agentsso/internal/flaws"
)

// Flaws switches off checks by name (see FlawCatalog). A nil or empty
// Flaws is the conforming gateway.
type Flaws = flaws.Set

// Flaw is one switch that turns off exactly one check. Scenarios names the
// catalogue scenarios (shared SCENARIOS.md section A) that must fail when
// it is on: the negative control for that scenario.
type Flaw = flaws.Flaw

// ParseFlaws turns names (as given to `agentsso demo --flaw`) into Flaws,
// refusing names that are not in FlawCatalog.
func ParseFlaws(names ...string) (Flaws, error) {
	f, err := FlawCatalog.Parse(names...)
	if err != nil {
		return nil, fmt.Errorf("refgw: %w", err)
	}
	return f, nil
}

// Flaw names. They are stable: reports, `agentsso demo --flaw` and tests
// refer to them.
const (
	FlawAcceptAlgNone         = "accept-alg-none"
	FlawHS256Confusion        = "hs256-confusion"
	FlawSkipSignature         = "skip-signature"
	FlawTrustHeaderKeys       = "trust-header-keys"
	FlawAcceptAnyTenantKey    = "accept-any-tenant-key"
	FlawNoKeyRefetch          = "no-key-refetch"
	FlawKeepRemovedKeys       = "keep-removed-keys"
	FlawIgnoreCrit            = "ignore-crit"
	FlawSkipIssuer            = "skip-issuer"
	FlawSkipAudience          = "skip-audience"
	FlawSkipExpiry            = "skip-expiry"
	FlawSkipNbf               = "skip-nbf"
	FlawNoLifetimeLimit       = "no-lifetime-limit"
	FlawSkipTyp               = "skip-typ"
	FlawSkipScope             = "skip-scope"
	FlawLooseScope            = "loose-scope"
	FlawAnyActor              = "any-actor"
	FlawSkipIntrospection     = "skip-introspection"
	FlawIntrospectionFailOpen = "introspection-fail-open"
	FlawPassthrough           = "passthrough"
	FlawDPoPAsBearer          = "dpop-as-bearer"
	FlawSkipDPoPProofChecks   = "skip-dpop-proof-checks"
	FlawSkipContext           = "skip-context"
	FlawUnboundSession        = "unbound-session"
	FlawNoAudit               = "no-audit"
	FlawNoResourceMetadata    = "no-resource-metadata"
	FlawQueryToken            = "query-token"
	FlawNoSizeLimit           = "no-size-limit"
	FlawIdentityBySubOnly     = "identity-by-sub-only"
	FlawIdentityByEmail       = "identity-by-email"
	FlawMTLSBindingUnchecked  = "mtls-binding-unchecked"
	FlawMTLSTrustsCertHeader  = "mtls-trusts-cert-header"
	FlawTrustsForwardedFor    = "trusts-forwarded-for"
)

// FlawCatalog lists every flaw, in the order of the checks they disable.
var FlawCatalog = flaws.Catalog{
	{Name: FlawAcceptAlgNone, Description: "accepts an unsigned token (alg none, in any letter case) without verifying anything", Scenarios: []string{"jwt-alg-none"}},
	{Name: FlawHS256Confusion, Description: "accepts HS256 tokens, using a JWKS public key's bytes (PEM, DER or JWK JSON) as the HMAC secret: the RS/HS key-confusion bug", Scenarios: []string{"jwt-alg-confusion-hs256"}},
	{Name: FlawSkipSignature, Description: "parses the token with the algorithm allow-list but never verifies its signature", Scenarios: []string{"jwt-bad-signature"}},
	{Name: FlawTrustHeaderKeys, Description: "verifies with a key the token names or carries: an embedded jwk, the leaf of x5c, or a key set fetched from jku/x5u (CVE-2018-0114)", Scenarios: []string{"jwt-header-key-injection"}},
	{Name: FlawAcceptAnyTenantKey, Description: "lets the token's iss choose the key set: any issuer on the configured issuer's host is accepted, verified with the key set at {iss}/jwks", Scenarios: []string{"tenant-issuer-confusion"}},
	{Name: FlawNoKeyRefetch, Description: "fetches the JWKS once and never again, so a key added by a rotation is never learnt", Scenarios: []string{"jwt-key-rotation"}},
	{Name: FlawKeepRemovedKeys, Description: "merges refetched keys into the cache and never drops one, so a key the issuer withdrew stays trusted", Scenarios: []string{"jwt-key-rotation"}},
	{Name: FlawIgnoreCrit, Description: "accepts crit header parameters it does not understand (RFC 7515 section 4.1.11)", Scenarios: []string{"jwt-structure-confusion"}},
	{Name: FlawSkipIssuer, Description: "does not check iss", Scenarios: []string{"iss-mismatch", "tenant-issuer-confusion"}},
	{Name: FlawSkipAudience, Description: "does not check aud (confused deputy)", Scenarios: []string{"aud-wrong-resource", "aud-malformed"}},
	{Name: FlawSkipExpiry, Description: "does not check exp, and accepts a token without one", Scenarios: []string{"jwt-temporal"}},
	{Name: FlawSkipNbf, Description: "does not check nbf, nor an iat in the future", Scenarios: []string{"jwt-temporal"}},
	{Name: FlawNoLifetimeLimit, Description: "accepts tokens whose lifetime (exp - iat) exceeds MaxLifetime", Scenarios: []string{"long-lived-token-policy"}},
	{Name: FlawSkipTyp, Description: "does not require typ at+jwt, so ID tokens and other JWTs pass as access tokens", Scenarios: []string{"token-kind-confusion"}},
	{Name: FlawSkipScope, Description: "does not check the scope a tool or REST call needs", Scenarios: []string{"scope-insufficient"}},
	{Name: FlawLooseScope, Description: "matches scopes by substring and honours wildcards (*, all) instead of exact space-delimited tokens", Scenarios: []string{"scope-overbroad-or-foreign"}},
	{Name: FlawAnyActor, Description: "with AllowedActors, accepts a chain in which any actor is allowed, not only the current (outermost) one", Scenarios: []string{"act-current-actor"}},
	{Name: FlawSkipIntrospection, Description: "never introspects, so revocation at the IdP is ignored", Scenarios: []string{"revoked-token-rejected", "introspection-checks"}},
	{Name: FlawIntrospectionFailOpen, Description: "lets a request through when introspection fails (error, 5xx, timeout) instead of refusing it", Scenarios: []string{"introspection-checks"}},
	{Name: FlawPassthrough, Description: "forwards the inbound token to the upstream instead of exchanging it", Scenarios: []string{"token-passthrough"}},
	{Name: FlawDPoPAsBearer, Description: "accepts a DPoP-bound token (cnf.jkt) with the Bearer scheme and no proof", Scenarios: []string{"dpop-bound-as-bearer"}},
	{Name: FlawSkipDPoPProofChecks, Description: "accepts any well-formed DPoP proof: no typ, alg, signature, htm, htu, iat, ath, key binding or replay checks", Scenarios: []string{"dpop-proof-checks"}},
	{Name: FlawSkipContext, Description: "ignores the ctx claim (source networks, zone, environment)", Scenarios: []string{"context-binding-replay"}},
	{Name: FlawUnboundSession, Description: "does not bind an Mcp-Session-Id to the principal that created it", Scenarios: []string{"state-handle-hijack"}},
	{Name: FlawNoAudit, Description: "writes no audit record", Scenarios: []string{"audit-record-fields"}},
	{Name: FlawNoResourceMetadata, Description: "answers 401 without resource_metadata in WWW-Authenticate", Scenarios: []string{"rs-baseline-control"}},
	{Name: FlawQueryToken, Description: "accepts a token in the access_token query parameter", Scenarios: []string{"bearer-hygiene"}},
	{Name: FlawNoSizeLimit, Description: "puts no bound on what a token costs: no 16 KiB cap, a zip: DEF payload inflated in full, and an encrypted token's PBES2 key derived with as many iterations as its p2c asks (go-jose before 3.0.1, CVE-2024-28180)", Scenarios: []string{"jwt-oversize-dos"}},
	{Name: FlawIdentityBySubOnly, Description: "keys per-user state (MCP sessions) on sub alone, so a client whose sub equals a user's id gets that user's state (RFC 9700 section 4.15)", Scenarios: []string{"sub-identity-confusion"}},
	{Name: FlawIdentityByEmail, Description: "keys per-user state (MCP sessions) on the email claim when there is one, so another subject with the same email gets that user's state", Scenarios: []string{"sub-identity-confusion"}},
	{Name: FlawMTLSBindingUnchecked, Description: "ignores cnf.x5t#S256: accepts a certificate-bound token over any client certificate, or none (RFC 8705 section 3)", Scenarios: []string{"mtls-binding"}},
	{Name: FlawMTLSTrustsCertHeader, Description: "takes the client certificate from a request header (Client-Cert, X-Client-Cert, X-SSL-Client-Cert, X-Forwarded-Client-Cert, X-ARR-ClientCert) before the TLS peer's", Scenarios: []string{"mtls-binding"}},
	{Name: FlawTrustsForwardedFor, Description: "takes the source address from X-Forwarded-For, X-Real-IP or Forwarded instead of the TCP peer", Scenarios: []string{"mtls-binding"}},
}
