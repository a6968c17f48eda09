package refgw

import (
	"fmt"
	"sort"
	"strings"
)

// Flaws switches off checks by name (see FlawCatalog). A nil or empty
// Flaws is the conforming gateway.
type Flaws map[string]bool

// On reports whether the flaw name is switched on.
func (f Flaws) On(name string) bool { return f[name] }

// String lists the flaws that are on, sorted, comma-separated.
func (f Flaws) String() string {
	var on []string
	for n, v := range f {
		if v {
			on = append(on, n)
		}
	}
	sort.Strings(on)
	return strings.Join(on, ",")
}

// ParseFlaws turns names (as given to `agentsso demo --flaw`) into Flaws,
// refusing names that are not in FlawCatalog.
func ParseFlaws(names ...string) (Flaws, error) {
	f := Flaws{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := flawByName[n]; !ok {
			return nil, fmt.Errorf("refgw: unknown flaw %q; see FlawCatalog", n)
		}
		f[n] = true
	}
	return f, nil
}

// Flaw is one switch that turns off exactly one check. Scenarios names the
// catalogue scenarios (shared SCENARIOS.md section A) that must fail when
// it is on: the negative control for that scenario.
type Flaw struct {
	Name        string
	Description string
	Scenarios   []string
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
var FlawCatalog = []Flaw{
	{FlawAcceptAlgNone, "accepts an unsigned token (alg none, in any letter case) without verifying anything", []string{"jwt-alg-none"}},
	{FlawHS256Confusion, "accepts HS256 tokens, using a JWKS public key's bytes (PEM, DER or JWK JSON) as the HMAC secret: the RS/HS key-confusion bug", []string{"jwt-alg-confusion-hs256"}},
	{FlawSkipSignature, "parses the token with the algorithm allow-list but never verifies its signature", []string{"jwt-bad-signature"}},
	{FlawTrustHeaderKeys, "verifies with a key the token names or carries: an embedded jwk, the leaf of x5c, or a key set fetched from jku/x5u (CVE-2018-0114)", []string{"jwt-header-key-injection"}},
	{FlawAcceptAnyTenantKey, "lets the token's iss choose the key set: any issuer on the configured issuer's host is accepted, verified with the key set at {iss}/jwks", []string{"tenant-issuer-confusion"}},
	{FlawNoKeyRefetch, "fetches the JWKS once and never again, so a key added by a rotation is never learnt", []string{"jwt-key-rotation"}},
	{FlawKeepRemovedKeys, "merges refetched keys into the cache and never drops one, so a key the issuer withdrew stays trusted", []string{"jwt-key-rotation"}},
	{FlawIgnoreCrit, "accepts crit header parameters it does not understand (RFC 7515 section 4.1.11)", []string{"jwt-structure-confusion"}},
	{FlawSkipIssuer, "does not check iss", []string{"iss-mismatch", "tenant-issuer-confusion"}},
	{FlawSkipAudience, "does not check aud (confused deputy)", []string{"aud-wrong-resource", "aud-malformed"}},
	{FlawSkipExpiry, "does not check exp, and accepts a token without one", []string{"jwt-temporal"}},
	{FlawSkipNbf, "does not check nbf, nor an iat in the future", []string{"jwt-temporal"}},
	{FlawNoLifetimeLimit, "accepts tokens whose lifetime (exp - iat) exceeds MaxLifetime", []string{"long-lived-token-policy"}},
	{FlawSkipTyp, "does not require typ at+jwt, so ID tokens and other JWTs pass as access tokens", []string{"token-kind-confusion"}},
	{FlawSkipScope, "does not check the scope a tool or REST call needs", []string{"scope-insufficient"}},
	{FlawLooseScope, "matches scopes by substring and honours wildcards (*, all) instead of exact space-delimited tokens", []string{"scope-overbroad-or-foreign"}},
	{FlawAnyActor, "with AllowedActors, accepts a chain in which any actor is allowed, not only the current (outermost) one", []string{"act-current-actor"}},
	{FlawSkipIntrospection, "never introspects, so revocation at the IdP is ignored", []string{"revoked-token-rejected", "introspection-checks"}},
	{FlawIntrospectionFailOpen, "lets a request through when introspection fails (error, 5xx, timeout) instead of refusing it", []string{"introspection-checks"}},
	{FlawPassthrough, "forwards the inbound token to the upstream instead of exchanging it", []string{"token-passthrough"}},
	{FlawDPoPAsBearer, "accepts a DPoP-bound token (cnf.jkt) with the Bearer scheme and no proof", []string{"dpop-bound-as-bearer"}},
	{FlawSkipDPoPProofChecks, "accepts any well-formed DPoP proof: no typ, alg, signature, htm, htu, iat, ath, key binding or replay checks", []string{"dpop-proof-checks"}},
	{FlawSkipContext, "ignores the ctx claim (source networks, zone, environment)", []string{"context-binding-replay"}},
	{FlawUnboundSession, "does not bind an Mcp-Session-Id to the principal that created it", []string{"state-handle-hijack"}},
	{FlawNoAudit, "writes no audit record", []string{"audit-record-fields"}},
	{FlawNoResourceMetadata, "answers 401 without resource_metadata in WWW-Authenticate", []string{"rs-baseline-control"}},
	{FlawQueryToken, "accepts a token in the access_token query parameter", []string{"bearer-hygiene"}},
	{FlawNoSizeLimit, "puts no bound on what a token costs: no 16 KiB cap, a zip: DEF payload inflated in full, and an encrypted token's PBES2 key derived with as many iterations as its p2c asks (go-jose before 3.0.1, CVE-2024-28180)", []string{"jwt-oversize-dos"}},
	{FlawIdentityBySubOnly, "keys per-user state (MCP sessions) on sub alone, so a client whose sub equals a user's id gets that user's state (RFC 9700 section 4.15)", []string{"sub-identity-confusion"}},
	{FlawIdentityByEmail, "keys per-user state (MCP sessions) on the email claim when there is one, so another subject with the same email gets that user's state", []string{"sub-identity-confusion"}},
	{FlawMTLSBindingUnchecked, "ignores cnf.x5t#S256: accepts a certificate-bound token over any client certificate, or none (RFC 8705 section 3)", []string{"mtls-binding"}},
	{FlawMTLSTrustsCertHeader, "takes the client certificate from a request header (Client-Cert, X-Client-Cert, X-SSL-Client-Cert, X-Forwarded-Client-Cert, X-ARR-ClientCert) before the TLS peer's", []string{"mtls-binding"}},
	{FlawTrustsForwardedFor, "takes the source address from X-Forwarded-For, X-Real-IP or Forwarded instead of the TCP peer", []string{"mtls-binding"}},
}

var flawByName = func() map[string]Flaw {
	m := make(map[string]Flaw, len(FlawCatalog))
	for _, f := range FlawCatalog {
		m[f.Name] = f
	}
	return m
}()
