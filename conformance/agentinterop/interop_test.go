package agentinterop_test

import (
	"bytes"
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentsso/agentsso/conformance"
	"github.com/agentsso/agentsso/conformance/agentinterop"
	"github.com/agentsso/agentsso/conformance/agentlab"
	"github.com/agentsso/agentsso/conformance/report"
	"github.com/agentsso/agentsso/scenarios"
)

// expectation is what one scenario did against one client, as observed:
// its status and the evidence steps whose verdict was not ok
// ("variant: check: verdict").
type expectation struct {
	Status conformance.Status
	Bad    []string
}

func pass() expectation { return expectation{Status: conformance.StatusPass} }

func skip() expectation { return expectation{Status: conformance.StatusSkip} }

func depErr() expectation { return expectation{Status: conformance.StatusError} }

func status(s conformance.Status, bad ...string) expectation {
	return expectation{Status: s, Bad: bad}
}

// sdkCodeFeatures: the MCP Go SDK's features without client-credentials.
// Declared together, extauth's client credentials handler fails the
// baseline's client-credentials run (sdkClientCredentials below), and a
// failed baseline turns every other scenario into an error, which would
// hide what the authorization code handler does.
var sdkCodeFeatures = []string{"authorization-code", "dynamic-registration"}

// sdkAuthorizationCode is what the MCP Go SDK v1.8.0's
// auth.AuthorizationCodeHandler does (SDKAgent, authorization code,
// public client bound to AGENTSSO_ISSUER).
var sdkAuthorizationCode = map[string]expectation{
	"agent-baseline-control": pass(),
	// No private_key_jwt (nor client-credentials in this run).
	"agent-client-assertion": skip(),
	// The preregistered client is bound to AGENTSSO_ISSUER. At rs2, whose
	// metadata names the second AS, the handler stops with "authorization
	// server issuer … does not match pre-registered credentials issuer":
	// it does not go on to the DynamicClientRegistrationConfig it was also
	// given (handleRegistration returns the mismatch instead of trying
	// registration). Nothing leaks (as_isolation holds); the task is not
	// done. Unbound, it fails too (sdkUnbound).
	"agent-cross-as-isolation": status(conformance.StatusFail, "task_completed: mismatch"),
	"agent-dpop-proofs":        skip(),
	// On 401 invalid_token the transport calls Authorize: a whole new
	// authorization code flow through the browser (the refresh token it
	// holds is never used), then one retry; a second 401 ends the call.
	"agent-handles-401": pass(),
	// Not declared: the handler may ask for openid (when the metadata
	// lists it) but never looks at the ID token.
	"agent-id-token-validation": skip(),
	// GetAuthServerMeta refuses a metadata issuer mismatch;
	// validateIssuerResponse refuses a wrong RFC 9207 iss and a missing one
	// when authorization_response_iss_parameter_supported is advertised;
	// the state is compared.
	"agent-issuer-mixup-defense": pass(),
	"agent-llm-isolation":        pass(),
	// One handler per server: tokens are obtained on a server's own 401 for
	// its own resource; the decoy never challenges and gets none.
	"agent-no-token-to-other-audience": pass(),
	// S256 always; GetAuthServerMeta refuses metadata without
	// code_challenge_methods_supported ("does not implement PKCE").
	"agent-pkce-s256": pass(),
	// Passes only because the client is bound to AGENTSSO_ISSUER: the SDK
	// discards the mismatched metadata, falls back to the 2025-03-26 rule
	// (the server's origin is the AS, endpoints /authorize and /token,
	// no PKCE check) and the binding refuses that issuer. Unbound, it opens
	// the browser at the server's /authorize (sdkUnbound).
	"agent-prm-resource-mismatch": pass(),
	// The oauth2 token source refreshes on the first use within 10 s
	// (expiryDelta) of exp: no expired token is presented. The refresh
	// carries no resource (TestRefreshCarriesNoResource).
	"agent-refresh-before-expiry": pass(),
	// resource = the metadata's resource in the authorization request and
	// the code exchange. The refresh variant is not exercised: on 401 the
	// SDK re-authorizes instead of refreshing.
	"agent-resource-indicator": status(conformance.StatusPass, "a refresh too: resource_indicator: skip"),
	// The second call is rejected: the SDK re-authorizes (it never
	// refreshes on 401), retries once with the new token, which the
	// scenario rejects too (its third call), and the call fails. No
	// refresh at all, task not done: a SHOULD, so warn.
	"agent-rt-rotation": status(conformance.StatusWarn, "refresh_rotation: skip", "task_completed: mismatch"),
	// 403 insufficient_scope: Authorize again with the union of the
	// granted and challenged scopes (SEP-2350), plus offline_access.
	"agent-scope-stepup": pass(),
	// After the revocation the next call gets 401; the SDK re-authorizes,
	// the new token is refused too (the whole client's grant is revoked)
	// and it stops: no revoked token is presented twice.
	"agent-stops-after-revocation": pass(),
	"agent-token-exchange":         skip(),
	// validateAuthServerMetaURLs refuses a javascript: authorization
	// endpoint before the browser is asked (so no token to judge there).
	"agent-token-hygiene": status(conformance.StatusPass, "javascript authorization endpoint: token_hygiene: skip"),
}

// sdkClientCredentials is what extauth.ClientCredentialsHandler does
// (SDKAgent, client credentials, client_secret_basic client).
var sdkClientCredentials = map[string]expectation{
	// The handler picks the client authentication method from the AS
	// metadata (client_secret_post first when advertised), not the
	// client's registration (client_secret_basic), and has no setting for
	// it: the token endpoint answers invalid_client.
	"agent-baseline-control": status(conformance.StatusFail, "client credentials: task_completed: mismatch"),
	"agent-client-assertion": skip(),
	// The others skip (they need the authorization code grant, which it
	// does not declare here), or are errors because the baseline failed.
	"agent-cross-as-isolation":         skip(),
	"agent-dpop-proofs":                skip(),
	"agent-handles-401":                skip(),
	"agent-id-token-validation":        skip(),
	"agent-issuer-mixup-defense":       skip(),
	"agent-llm-isolation":              depErr(),
	"agent-no-token-to-other-audience": skip(),
	"agent-pkce-s256":                  skip(),
	"agent-prm-resource-mismatch":      skip(),
	"agent-refresh-before-expiry":      skip(),
	"agent-resource-indicator":         skip(),
	"agent-rt-rotation":                skip(),
	"agent-scope-stepup":               skip(),
	"agent-stops-after-revocation":     skip(),
	"agent-token-exchange":             skip(),
	"agent-token-hygiene":              skip(),
}

// sdkUnboundScenarios are run with the preregistered client bound to no
// issuer: the scenarios the binding decides.
var sdkUnboundScenarios = []string{"agent-baseline-control", "agent-cross-as-isolation", "agent-issuer-mixup-defense", "agent-prm-resource-mismatch"}

// sdkUnbound is the authorization code handler with
// oauthex.ClientCredentials.Issuer left empty.
var sdkUnbound = map[string]expectation{
	"agent-baseline-control": pass(),
	// The first AS's client id goes to the second AS's authorization
	// endpoint, which does not know it (400; the browser cannot finish).
	// Registration is never tried while a preregistered client is set.
	"agent-cross-as-isolation": status(conformance.StatusFail, "task_completed: mismatch"),
	// The binding plays no part here: the metadata checks are the SDK's.
	"agent-issuer-mixup-defense": pass(),
	// With the mismatched metadata discarded, the 2025-03-26 fallback
	// makes the server's origin the AS: the SDK opens
	// {origin}/authorize in the browser (twice: server/discover, then
	// initialize).
	"agent-prm-resource-mismatch": status(conformance.StatusFail, "no_authorization: mismatch"),
}

// oauth2Expected is what golang.org/x/oauth2 v0.37.0 does on its own
// (OAuth2Agent: configured up front, one token per server, oauth2.Transport).
var oauth2Expected = map[string]expectation{
	"agent-baseline-control": pass(),
	"agent-client-assertion": skip(),
	// No dynamic registration in x/oauth2.
	"agent-cross-as-isolation": skip(),
	"agent-dpop-proofs":        skip(),
	// oauth2.Transport does nothing with a 401: the rejected call fails and
	// the run ends. The rejected token is not sent again (bounded_retries
	// holds in both runs), but the task is not done.
	"agent-handles-401":         status(conformance.StatusFail, "one rejection: task_completed: mismatch"),
	"agent-id-token-validation": skip(),
	// x/oauth2 has no discovery and no RFC 9207: the metadata is taken as
	// given (a mismatched issuer goes unnoticed) and Exchange redeems the
	// code whatever iss says or omits. A wrong state is caught by the
	// glue's state comparison.
	"agent-issuer-mixup-defense": status(conformance.StatusFail,
		"iss missing although advertised: no_code_redemption: mismatch",
		"metadata issuer mismatch: no_authorization: mismatch",
		"wrong iss in the authorization response: no_code_redemption: mismatch"),
	"agent-llm-isolation": pass(),
	// Configured up front, oauth2.Transport attaches a token to every
	// request to every configured server: the decoy, which never asked,
	// gets one (its own audience; rs1 and rs2 get theirs).
	"agent-no-token-to-other-audience": status(conformance.StatusFail, "audience_isolation: mismatch"),
	// S256ChallengeOption always sends S256, but nothing refuses an AS
	// that does not advertise PKCE.
	"agent-pkce-s256": status(conformance.StatusFail, "PKCE not advertised: no_authorization: mismatch"),
	// The metadata's resource is not compared with the server.
	"agent-prm-resource-mismatch": status(conformance.StatusFail, "no_authorization: mismatch"),
	// ReuseTokenSource refreshes within 10 s of exp (expiryDelta).
	"agent-refresh-before-expiry": pass(),
	// SetAuthURLParam("resource") on AuthCodeURL and Exchange, as the
	// package documents. The refresh variant is not exercised: a 401 ends
	// the call (no refresh on 401).
	"agent-resource-indicator": status(conformance.StatusPass, "a refresh too: resource_indicator: skip"),
	// The rejected second call fails (no 401 handling): no refresh, task
	// not done; a SHOULD, so warn.
	"agent-rt-rotation": status(conformance.StatusWarn, "refresh_rotation: skip", "task_completed: mismatch"),
	// 403 insufficient_scope fails the call: no step-up.
	"agent-scope-stepup": status(conformance.StatusWarn, "stepup_scopes: skip", "task_completed: mismatch"),
	// The first 401 after the revocation ends the run: the revoked token
	// is never presented again (it passes by giving up).
	"agent-stops-after-revocation": pass(),
	"agent-token-exchange":         skip(),
	// AuthCodeURL builds on a javascript: authorization endpoint and the
	// URL goes to the browser (which refuses it): x/oauth2 checks no
	// scheme.
	"agent-token-hygiene": status(conformance.StatusFail,
		"javascript authorization endpoint: no_authorization: mismatch",
		"javascript authorization endpoint: token_hygiene: mismatch"),
}

func TestMCPGoSDKAuthorizationCode(t *testing.T) {
	t.Parallel()
	checkPinned(t, runCatalogue(t, "MCP Go SDK (authorization code)", agentinterop.SDKAgent, sdkCodeFeatures), sdkAuthorizationCode)
}

func TestMCPGoSDKClientCredentials(t *testing.T) {
	t.Parallel()
	checkPinned(t, runCatalogue(t, "MCP Go SDK (client credentials)", agentinterop.SDKAgent, []string{"client-credentials"}), sdkClientCredentials)
}

func TestMCPGoSDKUnboundClient(t *testing.T) {
	t.Parallel()
	checkPinned(t, runCatalogue(t, "MCP Go SDK (unbound client)", agentinterop.SDKAgentUnbound, sdkCodeFeatures, sdkUnboundScenarios...), sdkUnbound)
}

func TestXOAuth2(t *testing.T) {
	t.Parallel()
	checkPinned(t, runCatalogue(t, "golang.org/x/oauth2", agentinterop.OAuth2Agent, agentinterop.OAuth2Features), oauth2Expected)
}

// TestFeaturesDeclared: the exported declarations are valid agent features
// and what the tables above were pinned with.
func TestFeaturesDeclared(t *testing.T) {
	for name, f := range map[string][]string{"SDK": agentinterop.SDKFeatures, "x/oauth2": agentinterop.OAuth2Features} {
		target := &conformance.Target{Kind: "agent", Features: f}
		if err := target.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if d := cmp.Diff([]string{"authorization-code", "client-credentials", "dynamic-registration"}, agentinterop.SDKFeatures); d != "" {
		t.Errorf("SDKFeatures changed; the SDK tables were pinned with these (-pinned +now):\n%s", d)
	}
	if d := cmp.Diff([]string{"authorization-code", "client-credentials"}, agentinterop.OAuth2Features); d != "" {
		t.Errorf("OAuth2Features changed; the x/oauth2 table was pinned with these (-pinned +now):\n%s", d)
	}
}

// TestPinnedDiff: a table that no longer matches is reported, naming the
// scenario; the same table is not.
func TestPinnedDiff(t *testing.T) {
	rep := &conformance.Report{Results: []conformance.Result{
		{ID: "agent-a", Status: conformance.StatusPass},
		{ID: "agent-b", Status: conformance.StatusFail, Evidence: []conformance.Evidence{{Step: "x", Verdict: "mismatch"}, {Step: "y", Verdict: "ok"}}},
	}}
	same := map[string]expectation{"agent-a": pass(), "agent-b": status(conformance.StatusFail, "x: mismatch")}
	if d := pinnedDiff(rep, same); d != "" {
		t.Errorf("a matching table gave a diff:\n%s", d)
	}
	for name, want := range map[string]map[string]expectation{
		"status":  {"agent-a": pass(), "agent-b": status(conformance.StatusWarn, "x: mismatch")},
		"steps":   {"agent-a": pass(), "agent-b": status(conformance.StatusFail, "y: mismatch")},
		"missing": {"agent-a": pass()},
		"extra":   {"agent-a": pass(), "agent-b": status(conformance.StatusFail, "x: mismatch"), "agent-c": pass()},
	} {
		d := pinnedDiff(rep, want)
		if d == "" {
			t.Errorf("%s: a changed table gave no diff", name)
		}
		if name != "extra" && !strings.Contains(d, "agent-b") {
			t.Errorf("%s: the diff does not name agent-b:\n%s", name, d)
		}
	}
}

// checkPinned fails with a diff when the run differs from the pinned
// table, and logs the evidence of every scenario that changed.
func checkPinned(t *testing.T, rep *conformance.Report, want map[string]expectation) {
	t.Helper()
	d := pinnedDiff(rep, want)
	if d == "" {
		return
	}
	t.Errorf("observed behaviour differs from the pinned table (-pinned +observed):\n%s", d)
	for _, r := range rep.Results {
		if !cmp.Equal(want[r.ID], observed(r)) {
			t.Log(report.Text(&r))
		}
	}
}

func pinnedDiff(rep *conformance.Report, want map[string]expectation) string {
	got := map[string]expectation{}
	for _, r := range rep.Results {
		got[r.ID] = observed(r)
	}
	return cmp.Diff(want, got)
}

func observed(r conformance.Result) expectation {
	var bad []string
	for _, e := range r.Evidence {
		if e.Verdict != "ok" {
			bad = append(bad, e.Step+": "+e.Verdict)
		}
	}
	slices.Sort(bad)
	return expectation{Status: r.Status, Bad: bad}
}

// runCatalogue runs the agent scenarios (all, or only) against agent,
// which declares features.
func runCatalogue(t *testing.T, name string, agent conformance.AgentFunc, features []string, only ...string) *conformance.Report {
	t.Helper()
	return runTarget(t, &conformance.Target{Kind: "agent", Name: name, Features: features}, conformance.AgentOptions{Agent: agent}, only...)
}

// runTarget runs the agent scenarios (all, or only) against target.
func runTarget(t *testing.T, target *conformance.Target, ao conformance.AgentOptions, only ...string) *conformance.Report {
	t.Helper()
	if testing.Short() {
		t.Skip("the agent catalogue waits on 30-second tokens; run without -short")
	}
	cs, err := conformance.Load(map[string]fs.FS{"scenarios": scenarios.FS()}, []string{"scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Validate(); err != nil {
		t.Fatal(err)
	}
	r := &conformance.Runner{Target: target, Catalogue: cs, Opts: conformance.Options{
		Only: only, Version: "test", Parallel: 8, AgentOptions: ao,
	}}
	t0 := time.Now()
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d scenarios in %s", target.Name, len(rep.Results), time.Since(t0).Round(100*time.Millisecond))
	return rep
}

// refreshSeen is what a world's trace shows of an agent's refresh.
type refreshSeen struct {
	// Refreshed: a refresh_token grant succeeded.
	Refreshed bool
	// BeforeExpiry: it came before the first access token's exp.
	BeforeExpiry bool
	// Resource is the refresh request's resource parameter.
	Resource []string
	// NewTokenUsed: the server then got the refreshed token.
	NewTokenUsed bool
}

// TestRefreshCarriesNoResource pins what the catalogue does not look at:
// both clients refresh ahead of exp (oauth2's 10 s expiryDelta; 12-second
// tokens here, so the second call 4 s in refreshes), and neither sends
// resource (RFC 8707 section 2, the MCP spec's "MUST include the resource
// parameter in ... token requests") when refreshing: oauth2's refresh
// request has grant_type and refresh_token only.
func TestRefreshCarriesNoResource(t *testing.T) {
	want := refreshSeen{Refreshed: true, BeforeExpiry: true, Resource: nil, NewTokenUsed: true}
	for name, agent := range map[string]conformance.AgentFunc{"sdk": agentinterop.SDKAgent, "x/oauth2": agentinterop.OAuth2Agent} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec := agentlab.Spec{
				AccessTokenLifetime: agentlab.Duration(12 * time.Second),
				Task:                []agentlab.ToolCall{{Tool: "notes_read"}, {Tool: "notes_read", Delay: agentlab.Duration(4 * time.Second)}},
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			w, err := agentlab.New(ctx, "probe-refresh", spec, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var stdout, stderr bytes.Buffer
			if err := agent(ctx, w.Env(), &stdout, &stderr); err != nil {
				t.Fatalf("the agent failed: %v\n%s", err, stderr.String())
			}
			got := refreshSeen{}
			var first *agentlab.Canary
			for _, r := range w.Trace.Records() {
				_, tok := r.Token()
				if r.Server == "rs1" && tok != "" && first == nil {
					first = w.Canaries.Lookup(tok)
				}
				if r.Server == "idp" && strings.HasSuffix(r.Path, "/token") && r.Form.Get("grant_type") == "refresh_token" && r.Status == 200 {
					got.Refreshed = true
					got.Resource = r.Form["resource"]
					got.BeforeExpiry = first != nil && r.Time.Before(first.Exp())
				}
				if got.Refreshed && r.Server == "rs1" && tok != "" && first != nil && tok != first.Value() && r.Status == 200 {
					got.NewTokenUsed = true
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("refresh behaviour differs from the pinned one (-pinned +observed):\n%s", d)
			}
		})
	}
}

// TestBadEnvironment: a missing or malformed variable is an error that
// names it, before any traffic.
func TestBadEnvironment(t *testing.T) {
	good := map[string]string{
		"AGENTSSO_ISSUER": "http://127.0.0.1:1/t/agents", "AGENTSSO_CLIENT_ID": "agent",
		"AGENTSSO_MCP_SERVERS": "rs1=http://127.0.0.1:1/mcp", "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
		"AGENTSSO_REDIRECT_URI": "http://127.0.0.1:1/callback", "AGENTSSO_BROWSER_URL": "http://127.0.0.1:1/open",
	}
	cases := []struct {
		name string
		set  map[string]string
		want string
	}{
		{"no servers", map[string]string{"AGENTSSO_MCP_SERVERS": ""}, "AGENTSSO_MCP_SERVERS"},
		{"bad pair", map[string]string{"AGENTSSO_MCP_SERVERS": "rs1"}, "AGENTSSO_MCP_SERVERS"},
		{"bad url", map[string]string{"AGENTSSO_MCP_SERVERS": "rs1=ftp://x/mcp"}, "AGENTSSO_MCP_SERVERS"},
		{"no client", map[string]string{"AGENTSSO_CLIENT_ID": ""}, "AGENTSSO_CLIENT_ID"},
		{"no issuer", map[string]string{"AGENTSSO_ISSUER": ""}, "AGENTSSO_ISSUER"},
		{"no model", map[string]string{"OPENAI_BASE_URL": ""}, "OPENAI_BASE_URL"},
		{"bad grant", map[string]string{"AGENTSSO_GRANT": "password"}, "AGENTSSO_GRANT"},
		{"cc without secret", map[string]string{"AGENTSSO_GRANT": "client_credentials"}, "AGENTSSO_CLIENT_SECRET"},
		{"no browser", map[string]string{"AGENTSSO_BROWSER_URL": ""}, "AGENTSSO_BROWSER_URL"},
		{"redirect not loopback http", map[string]string{"AGENTSSO_REDIRECT_URI": "myapp:/callback"}, "AGENTSSO_REDIRECT_URI"},
	}
	for _, c := range cases {
		env := map[string]string{}
		for k, v := range good {
			env[k] = v
		}
		for k, v := range c.set {
			env[k] = v
		}
		for name, agent := range map[string]conformance.AgentFunc{"sdk": agentinterop.SDKAgent, "x/oauth2": agentinterop.OAuth2Agent} {
			var stderr bytes.Buffer
			err := agent(context.Background(), env, &bytes.Buffer{}, &stderr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s, %s: got %v, want an error naming %s", name, c.name, err, c.want)
			}
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("%s, %s: stderr %q does not name %s", name, c.name, stderr.String(), c.want)
			}
		}
	}
}
