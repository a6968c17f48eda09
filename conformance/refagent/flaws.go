package refagent

import (
	"fmt"
	"sort"
	"strings"
)

// EnvFlaws is the environment variable that switches flaws on: a
// comma-separated list of FlawCatalog names. The subprocess (`agentsso
// reference-agent`) and the in-process path read it from the same env map.
const EnvFlaws = "AGENTSSO_REFAGENT_FLAWS"

// Flaw is one switch that breaks exactly one behaviour of the agent.
// Scenarios names the catalogue scenarios (shared SCENARIOS.md section B)
// that must fail when it is on: the negative control for each.
type Flaw struct {
	Name        string
	Description string
	Scenarios   []string
}

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
var FlawCatalog = []Flaw{
	{FlawIgnorePRMResource, "uses protected resource metadata whose resource is not the server's URL", []string{"agent-prm-resource-mismatch"}},
	{FlawIgnoreIssuerMismatch, "uses authorization server metadata whose issuer is not the issuer it asked for", []string{"agent-issuer-mixup-defense"}},
	{FlawPKCEPlain, "sends code_challenge_method=plain (the verifier itself as the challenge)", []string{"agent-pkce-s256"}},
	{FlawPKCEUnadvertisedOK, "authorizes even though the metadata does not list S256 in code_challenge_methods_supported", []string{"agent-pkce-s256"}},
	{FlawNoResource, "sends no resource parameter (RFC 8707) in the authorization, token and refresh requests", []string{"agent-resource-indicator"}},
	{FlawGreedyScopes, "asks for every scope in the authorization server's scopes_supported instead of the challenged or PRM scopes", []string{"agent-scope-stepup"}},
	{FlawOpenAnyScheme, "opens an authorization_endpoint of any scheme (javascript:, file:, data:) in the browser", []string{"agent-token-hygiene"}},
	{FlawNoStateCheck, "redeems the code whatever state the redirect carries", []string{"agent-issuer-mixup-defense"}},
	{FlawIgnoreIss, "ignores the RFC 9207 iss of the redirect (wrong or missing)", []string{"agent-issuer-mixup-defense"}},
	{FlawSkipIDTokenCheck, "uses the ID token without verifying iss, aud, signature, exp or nonce", []string{"agent-id-token-validation"}},
	{FlawAssertionLongLived, "signs private_key_jwt assertions valid for 24 hours", []string{"agent-client-assertion"}},
	{FlawAssertionFixedJTI, "uses the same jti in every private_key_jwt assertion", []string{"agent-client-assertion"}},
	{FlawReuseClientAcrossAS, "presents the first authorization server's client credentials to any other authorization server instead of registering", []string{"agent-cross-as-isolation"}},
	{FlawOneTokenForAll, "attaches the first access token it obtained to every server that has no token of its own, decoy included", []string{"agent-no-token-to-other-audience"}},
	{FlawNoProactiveRefresh, "keeps using an access token until a server rejects it, instead of refreshing before expiry", []string{"agent-refresh-before-expiry"}},
	{FlawReuseFirstRT, "refreshes with the first refresh token it was given, not the newest", []string{"agent-rt-rotation"}},
	{FlawRetry401Forever, "retries a call rejected with 401 with the same token up to 50 times, never refreshing", []string{"agent-handles-401"}},
	{FlawUseAfterRevoke, "after revoking its refresh token, makes one more tool call with the old access token", []string{"agent-stops-after-revocation"}},
	{FlawDPoPReuseJTI, "puts the jti of its first DPoP proof in every proof", []string{"agent-dpop-proofs"}},
	{FlawPassUserToken, "sends the user's token to the servers instead of exchanging it (RFC 8693)", []string{"agent-token-exchange"}},
	{FlawTokenInQuery, "also sends the access token in the access_token query parameter", []string{"agent-token-hygiene"}},
	{FlawLeakTokenToModel, "puts the access token into the tool messages it sends to the model", []string{"agent-llm-isolation"}},
	{FlawTokenInLog, "prints the access and refresh tokens it obtains on standard error", []string{"agent-token-hygiene"}},
	{FlawIgnoreDPoPRequirement, "uses Bearer tokens even where the protected resource requires DPoP", []string{"agent-dpop-proofs"}},
}

// Flaws returns the flaw catalogue: every switch with a one-line
// description and the scenarios it must make fail.
func Flaws() []Flaw {
	out := make([]Flaw, len(FlawCatalog))
	for i, f := range FlawCatalog {
		f.Scenarios = append([]string(nil), f.Scenarios...)
		out[i] = f
	}
	return out
}

var flawByName = func() map[string]Flaw {
	m := make(map[string]Flaw, len(FlawCatalog))
	for _, f := range FlawCatalog {
		m[f.Name] = f
	}
	return m
}()

// FlawSet is the set of flaws switched on; nil or empty is the conforming
// agent.
type FlawSet map[string]bool

// On reports whether the flaw name is switched on.
func (f FlawSet) On(name string) bool { return f[name] }

// String lists the flaws that are on, sorted, comma-separated: the value
// of AGENTSSO_REFAGENT_FLAWS that selects them.
func (f FlawSet) String() string {
	var on []string
	for n, v := range f {
		if v {
			on = append(on, n)
		}
	}
	sort.Strings(on)
	return strings.Join(on, ",")
}

// ParseFlaws reads a comma-separated list of flaw names (blanks around
// names ignored), refusing names that are not in FlawCatalog.
func ParseFlaws(list string) (FlawSet, error) {
	f := FlawSet{}
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := flawByName[n]; !ok {
			return nil, fmt.Errorf("%s: unknown flaw %q (known: %s)", EnvFlaws, n, strings.Join(flawNames(), ", "))
		}
		f[n] = true
	}
	return f, nil
}

func flawNames() []string {
	names := make([]string, len(FlawCatalog))
	for i, f := range FlawCatalog {
		names[i] = f.Name
	}
	return names
}
