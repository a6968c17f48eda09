package refagent

import (
	"fmt"

	"github.com/agentsso/agentsso/internal/flaws"
)

// EnvFlaws is the environment variable that switches flaws on: a
// comma-separated list of FlawCatalog names. The subprocess (`agentsso
// reference-agent`) and the in-process path read it from the same env map.
const EnvFlaws = "AGENTSSO_REFAGENT_FLAWS"

// Flaw is one switch that breaks exactly one behaviour of the agent.
// Scenarios names the catalogue scenarios (shared SCENARIOS.md section B)
// that must fail when it is on: the negative control for each.
type Flaw = flaws.Flaw

// Flaw names. They are stable: reports, tests and AGENTSSO_REFAGENT_FLAWS
// refer to them.
const (
	FlawIgnorePRMResource     = "ignore-prm-resource"
	FlawIgnoreIssuerMismatch  = "ignore-issuer-mismatch"
	FlawPKCEPlain             = "pkce-plain"
	FlawPKCEUnadvertisedOK    = "pkce-unadvertised-ok"
	FlawNoResource            = "no-resource"
	FlawGreedyScopes          = "greedy-scopes"
	FlawOpenAnyScheme         = "open-any-scheme"
	FlawNoStateCheck          = "no-state-check"
	FlawIgnoreIss             = "ignore-iss"
	FlawSkipIDTokenCheck      = "skip-id-token-check"
	FlawAssertionLongLived    = "assertion-long-lived"
	FlawAssertionFixedJTI     = "assertion-fixed-jti"
	FlawReuseClientAcrossAS   = "reuse-client-across-as"
	FlawOneTokenForAll        = "one-token-for-all"
	FlawNoProactiveRefresh    = "no-proactive-refresh"
	FlawReuseFirstRT          = "reuse-first-rt"
	FlawRetry401Forever       = "retry-401-forever"
	FlawUseAfterRevoke        = "use-after-revoke"
	FlawDPoPReuseJTI          = "dpop-reuse-jti"
	FlawPassUserToken         = "pass-user-token"
	FlawTokenInQuery          = "token-in-query"
	FlawLeakTokenToModel      = "leak-token-to-model"
	FlawTokenInLog            = "token-in-log"
	FlawIgnoreDPoPRequirement = "ignore-dpop-requirement"
)

// FlawCatalog lists every flaw, in the order of the behaviours they break.
var FlawCatalog = flaws.Catalog{
	{Name: FlawIgnorePRMResource, Description: "uses protected resource metadata whose resource is not the server's URL", Scenarios: []string{"agent-prm-resource-mismatch"}},
	{Name: FlawIgnoreIssuerMismatch, Description: "uses authorization server metadata whose issuer is not the issuer it asked for", Scenarios: []string{"agent-issuer-mixup-defense"}},
	{Name: FlawPKCEPlain, Description: "sends code_challenge_method=plain (the verifier itself as the challenge)", Scenarios: []string{"agent-pkce-s256"}},
	{Name: FlawPKCEUnadvertisedOK, Description: "authorizes even though the metadata does not list S256 in code_challenge_methods_supported", Scenarios: []string{"agent-pkce-s256"}},
	{Name: FlawNoResource, Description: "sends no resource parameter (RFC 8707) in the authorization, token and refresh requests", Scenarios: []string{"agent-resource-indicator"}},
	{Name: FlawGreedyScopes, Description: "asks for every scope in the authorization server's scopes_supported instead of the challenged or PRM scopes", Scenarios: []string{"agent-scope-stepup"}},
	{Name: FlawOpenAnyScheme, Description: "opens an authorization_endpoint of any scheme (javascript:, file:, data:) in the browser", Scenarios: []string{"agent-token-hygiene"}},
	{Name: FlawNoStateCheck, Description: "redeems the code whatever state the redirect carries", Scenarios: []string{"agent-issuer-mixup-defense"}},
	{Name: FlawIgnoreIss, Description: "ignores the RFC 9207 iss of the redirect (wrong or missing)", Scenarios: []string{"agent-issuer-mixup-defense"}},
	{Name: FlawSkipIDTokenCheck, Description: "uses the ID token without verifying iss, aud, signature, exp or nonce", Scenarios: []string{"agent-id-token-validation"}},
	{Name: FlawAssertionLongLived, Description: "signs private_key_jwt assertions valid for 24 hours", Scenarios: []string{"agent-client-assertion"}},
	{Name: FlawAssertionFixedJTI, Description: "uses the same jti in every private_key_jwt assertion", Scenarios: []string{"agent-client-assertion"}},
	{Name: FlawReuseClientAcrossAS, Description: "presents the first authorization server's client credentials to any other authorization server instead of registering", Scenarios: []string{"agent-cross-as-isolation"}},
	{Name: FlawOneTokenForAll, Description: "attaches the first access token it obtained to every server that has no token of its own, decoy included", Scenarios: []string{"agent-no-token-to-other-audience"}},
	{Name: FlawNoProactiveRefresh, Description: "keeps using an access token until a server rejects it, instead of refreshing before expiry", Scenarios: []string{"agent-refresh-before-expiry"}},
	{Name: FlawReuseFirstRT, Description: "refreshes with the first refresh token it was given, not the newest", Scenarios: []string{"agent-rt-rotation"}},
	{Name: FlawRetry401Forever, Description: "retries a call rejected with 401 with the same token up to 50 times, never refreshing", Scenarios: []string{"agent-handles-401"}},
	{Name: FlawUseAfterRevoke, Description: "after revoking its refresh token, makes one more tool call with the old access token", Scenarios: []string{"agent-stops-after-revocation"}},
	{Name: FlawDPoPReuseJTI, Description: "puts the jti of its first DPoP proof in every proof", Scenarios: []string{"agent-dpop-proofs"}},
	{Name: FlawPassUserToken, Description: "sends the user's token to the servers instead of exchanging it (RFC 8693)", Scenarios: []string{"agent-token-exchange"}},
	{Name: FlawTokenInQuery, Description: "also sends the access token in the access_token query parameter", Scenarios: []string{"agent-token-hygiene"}},
	{Name: FlawLeakTokenToModel, Description: "puts the access token into the tool messages it sends to the model", Scenarios: []string{"agent-llm-isolation"}},
	{Name: FlawTokenInLog, Description: "prints the access and refresh tokens it obtains on standard error", Scenarios: []string{"agent-token-hygiene"}},
	{Name: FlawIgnoreDPoPRequirement, Description: "uses Bearer tokens even where the protected resource requires DPoP", Scenarios: []string{"agent-dpop-proofs"}},
}

// Flaws returns the flaw catalogue: every switch with a one-line
// description and the scenarios it must make fail.
func Flaws() []Flaw { return FlawCatalog.Copy() }

// FlawSet is the set of flaws switched on; nil or empty is the conforming
// agent.
type FlawSet = flaws.Set

// ParseFlaws reads a comma-separated list of flaw names (blanks around
// names ignored), refusing names that are not in FlawCatalog.
func ParseFlaws(list string) (FlawSet, error) {
	f, err := FlawCatalog.Parse(list)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvFlaws, err)
	}
	return f, nil
}
