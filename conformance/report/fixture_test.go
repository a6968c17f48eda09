package report

import (
	"time"

	"github.com/agentsso/agentsso/conformance"
)

// fixture is a realistic run against a gateway that fronts an MCP server:
// every status, a MUST failure whose evidence is a 401 with
// WWW-Authenticate, a token-passthrough failure with upstream evidence, a
// revocation delay, an expected failure, a stale one, skips with reasons
// and an error whose body is the target's HTML; then two agent scenarios
// with their traces (agentResults). Numbers in claims are float64, as
// JSON decoding gives them back.
func fixture() *conformance.Report {
	const (
		targetURL = "http://127.0.0.1:18080/mcp"
		aud       = "https://mcp.acme.test/mcp"
		issuer    = "http://127.0.0.1:9400/t/acme"
		kid       = "acme-es256-2026-03"
		iat       = 1772460191.0 // 2026-03-02T14:03:11Z
	)
	started := time.Date(2026, 3, 2, 14, 3, 11, 250_000_000, time.UTC)

	tok := func(label, jti, sha string, mutate func(h, c map[string]any)) *conformance.TokenRef {
		h := map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"}
		c := map[string]any{
			"iss": issuer, "sub": "agent-7", "aud": aud, "client_id": "agent-7",
			"scope": "mcp:read mcp:tools", "iat": iat, "exp": iat + 300, "jti": jti,
		}
		if mutate != nil {
			mutate(h, c)
		}
		return &conformance.TokenRef{Label: label, JTI: jti, SHA256: sha, Header: h, Claims: c}
	}
	call := func(src string, t *conformance.TokenRef) *conformance.Request {
		return &conformance.Request{
			Method: "POST", URL: targetURL, Source: src,
			Headers: map[string]string{
				"Authorization":        "Bearer <token " + t.SHA256 + ">",
				"Content-Type":         "application/json",
				"Mcp-Session-Id":       "5d0c7a1e-2b8f-4d51-9f0e-6c1a3b7e9d24",
				"MCP-Protocol-Version": "2025-06-18",
			},
			Body:  `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_invoice","arguments":{"id":"INV-1042"}}}`,
			Token: t,
		}
	}
	resp := func(status int, ms float64, wwwAuth, body string) *conformance.Response {
		h := map[string]string{"Content-Type": "application/json"}
		if wwwAuth != "" {
			h["WWW-Authenticate"] = wwwAuth
		}
		return &conformance.Response{Status: status, Headers: h, Body: body, DurationMS: ms}
	}
	const okBody = `{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"INV-1042: 1,250.00 EUR, due 2026-03-31"}]}}`
	const invalidToken = `Bearer realm="acme-mcp", error="invalid_token", error_description="token is not valid"`
	reject := func(ms float64) *conformance.Response {
		return resp(401, ms, invalidToken, `{"error":"invalid_token"}`)
	}
	const expectReject = `401 with WWW-Authenticate: Bearer error="invalid_token"; nothing reaches the upstream`
	rfc9068 := conformance.SpecRef{ID: "RFC9068-4", URL: "https://www.rfc-editor.org/rfc/rfc9068#section-4",
		Text: "Resource servers receiving a JWT access token MUST validate it in the following manner."}
	rfc8725 := conformance.SpecRef{ID: "RFC8725-3.1", URL: "https://www.rfc-editor.org/rfc/rfc8725#section-3.1",
		Text: "Libraries MUST enable the caller to specify a supported set of algorithms and MUST NOT use any other algorithms when performing cryptographic operations."}

	baseline := tok("valid", "01JNQ6Z3V8K2M4R7T9W1Y3B5D7", "3f9a0c7e51b2d864", nil)
	results := []conformance.Result{
		{
			ID: "rs-baseline-control", Title: "A valid token is accepted; no token gets a 401 with resource metadata",
			Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"w1", "control"},
			Duration: 41 * time.Millisecond,
			Reason:   "a valid token was accepted (200) and a call without a token got 401 with resource_metadata",
			Why:      "Every rejection below counts only if the same call with a valid token succeeds in the same run; otherwise a target that rejects everything would pass.",
			SpecRefs: []conformance.SpecRef{
				{ID: "RFC9728-5.1", URL: "https://www.rfc-editor.org/rfc/rfc9728#section-5.1"},
			},
			Evidence: []conformance.Evidence{
				{Step: "call with a valid token", Request: call("127.0.0.1:50412", baseline), Response: resp(200, 12.4, "", okBody), Expected: "2xx", Verdict: "ok"},
				{Step: "call without a token", Request: &conformance.Request{Method: "POST", URL: targetURL, Source: "127.0.0.1:50414"},
					Response: resp(401, 1.9, `Bearer resource_metadata="http://127.0.0.1:18080/.well-known/oauth-protected-resource/mcp"`, ""),
					Expected: "401 with WWW-Authenticate carrying resource_metadata", Verdict: "ok"},
			},
		},
		{
			ID: "jwt-alg-none", Title: "Unsigned tokens (alg none) are rejected",
			Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"w1", "jwt"},
			Duration: 18 * time.Millisecond, Reason: "all three alg=none spellings were rejected with 401 invalid_token",
			SpecRefs: []conformance.SpecRef{rfc9068, rfc8725, {ID: "CVE-2015-2951"}},
			Evidence: []conformance.Evidence{
				{Step: `call with alg "none"`, Request: call("127.0.0.1:50420", tok("alg-none", "01JNQ6Z3W0A1B2C3D4E5F6G7H8", "a1d45e0b7c3f9926", func(h, _ map[string]any) { h["alg"] = "none"; delete(h, "kid") })),
					Response: reject(2.1), Expected: expectReject, Verdict: "ok"},
			},
		},
		{
			ID: "jwt-alg-confusion-hs256", Title: "HS256 signed with the IdP's public key is rejected",
			Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"w1", "jwt"},
			Duration: 9 * time.Millisecond, Reason: "rejected with 401 invalid_token (PEM and JWK variants)",
			SpecRefs: []conformance.SpecRef{rfc8725, {ID: "CVE-2016-10555"}},
		},
		{
			ID: "jwt-bad-signature", Title: "Tokens with a broken signature are rejected",
			Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"w1", "jwt"},
			Duration: 14 * time.Millisecond, Reason: "a flipped signature bit and ES256 with r=s=0 were rejected with 401 invalid_token",
			SpecRefs: []conformance.SpecRef{rfc9068, {ID: "CVE-2022-21449", URL: "https://nvd.nist.gov/vuln/detail/CVE-2022-21449"}},
		},
		{
			ID: "jwt-temporal", Title: "Expired and not-yet-valid tokens are rejected",
			Status: conformance.StatusFail, Severity: conformance.MUST, Tags: []string{"w1", "jwt"},
			Duration: 63 * time.Millisecond,
			Reason:   "accepted a token whose nbf is 10 minutes in the future (200, and the call reached the upstream)",
			Why:      "A gateway that ignores nbf accepts tokens minted for later use: a token stolen before its validity window opens is usable at once, and the code that skips nbf often mishandles exp too.",
			SpecRefs: []conformance.SpecRef{
				{ID: "RFC7519-4.1.5", URL: "https://www.rfc-editor.org/rfc/rfc7519#section-4.1.5",
					Text: `The "nbf" (not before) claim identifies the time before which the JWT MUST NOT be accepted for processing.`},
				rfc9068,
			},
			Figures: map[string]float64{"accepted_skew_s": 30},
			Evidence: []conformance.Evidence{
				{Step: "call with exp 5 minutes in the past", Request: call("127.0.0.1:50431", tok("expired", "01JNQ6Z40M3N4P5Q6R7S8T9V0W", "be07c2d94a6f1135", func(_, c map[string]any) { c["iat"] = iat - 900; c["exp"] = iat - 300 })),
					Response: resp(401, 2.4, `Bearer realm="acme-mcp", error="invalid_token", error_description="token expired"`, `{"error":"invalid_token"}`),
					Expected: expectReject, Verdict: "ok"},
				{Step: "call with nbf 10 minutes in the future", Request: call("127.0.0.1:50433", tok("nbf-future", "01JNQ6Z41X2Y3Z4A5B6C7D8E9F", "5c21e8f06b9d4a73", func(_, c map[string]any) { c["nbf"] = iat + 600 })),
					Response: resp(200, 15.8, "", okBody),
					Upstream: []conformance.Upstream{{Method: "POST", Path: "/v1/tools/call", Passthrough: true,
						Token: &conformance.TokenRef{Label: "nbf-future", JTI: "01JNQ6Z41X2Y3Z4A5B6C7D8E9F", SHA256: "5c21e8f06b9d4a73"}}},
					Expected: expectReject, Verdict: "mismatch"},
			},
		},
		{
			ID: "iss-mismatch", Title: "Tokens from a foreign or look-alike issuer are rejected",
			Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"jwt"}, Stale: true,
			Duration: 21 * time.Millisecond,
			Reason:   "listed as an expected failure but passed: remove it from the expected-failures file",
			SpecRefs: []conformance.SpecRef{{ID: "RFC8725-3.8", URL: "https://www.rfc-editor.org/rfc/rfc8725#section-3.8",
				Text: `When a JWT contains an "iss" (issuer) claim, the application MUST validate that the cryptographic keys used for the cryptographic operations in the JWT belong to the issuer. If they do not, the application MUST reject the JWT.`}},
		},
		{
			ID: "tenant-issuer-confusion", Title: "A token from another tenant of the same IdP is rejected",
			Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"w1"},
			Duration: 17 * time.Millisecond, Reason: "tokens of tenant globex, and iss=acme signed with globex's key, were rejected",
			SpecRefs: []conformance.SpecRef{{ID: "RFC8725-3.8"}, rfc9068},
		},
		{
			ID: "aud-wrong-resource", Title: "A token for another resource is rejected (confused deputy)",
			Status: conformance.StatusFail, Severity: conformance.MUST, Tags: []string{"w1", "aud"}, Expected: true,
			Duration: 16 * time.Millisecond,
			Reason:   "expected failure (ACME-1432: audience check ships in 2.3): accepted a token whose aud is https://billing.acme.test/api (200)",
			Why:      "A gateway that accepts tokens for other resources lets any service that receives a user's token replay it here.",
			SpecRefs: []conformance.SpecRef{{ID: "RFC8707-2", URL: "https://www.rfc-editor.org/rfc/rfc8707#section-2"}, rfc9068},
			Evidence: []conformance.Evidence{
				{Step: "call with aud of a sibling resource", Request: call("127.0.0.1:50440", tok("aud-sibling", "01JNQ6Z42G3H4J5K6L7M8N9P0Q", "d7e3a1094c5b8f20", func(_, c map[string]any) { c["aud"] = "https://billing.acme.test/api" })),
					Response: resp(200, 14.2, "", okBody), Expected: expectReject, Verdict: "mismatch"},
			},
		},
		{
			ID: "scope-insufficient", Title: "A call without the required scope gets 403 insufficient_scope",
			Status: conformance.StatusFail, Severity: conformance.MUST, Tags: []string{"w1", "scope"},
			Duration: 22 * time.Millisecond,
			Reason:   "answered 401 invalid_token instead of 403 insufficient_scope to a token with scope mcp:read calling tools/call (needs mcp:tools)",
			Why:      "A 401 tells the agent its token is bad, so it throws the token away and loops through authorization again; 403 with insufficient_scope and the scope needed lets it step up to exactly the scope the tool requires.",
			SpecRefs: []conformance.SpecRef{
				{ID: "RFC6750-3.1", URL: "https://www.rfc-editor.org/rfc/rfc6750#section-3.1",
					Text: `insufficient_scope: The request requires higher privileges than provided by the access token. The resource server SHOULD respond with the HTTP 403 (Forbidden) status code and MAY include the "scope" attribute with the scope necessary to access the protected resource.`},
				{ID: "MCP-Scope-Challenge", URL: "https://modelcontextprotocol.io/specification/draft/basic/authorization"},
			},
			Evidence: []conformance.Evidence{
				{Step: "call tools/call with scope mcp:read only", Request: call("127.0.0.1:50452", tok("scope-read", "01JNQ6Z43R4S5T6V7W8X9Y0Z1A", "0e6b9f2c83d17a45", func(_, c map[string]any) { c["scope"] = "mcp:read" })),
					Response: resp(401, 3.2, invalidToken, `{"error":"invalid_token","error_description":"token is not valid"}`),
					Expected: `403 with WWW-Authenticate: Bearer error="insufficient_scope", scope="mcp:tools"; nothing reaches the upstream`, Verdict: "mismatch"},
			},
		},
		{
			ID: "token-passthrough", Title: "The gateway does not pass the client's token through to the upstream",
			Status: conformance.StatusFail, Severity: conformance.MUST, Tags: []string{"w1", "gateway"},
			Duration: 35 * time.Millisecond,
			Reason:   "the upstream received the very token the harness sent (sha256 3f9a0c7e51b2d864), with aud https://mcp.acme.test/mcp instead of the upstream's",
			Why:      "A passed-through token lets the upstream (or anyone who compromises it) replay the user's token against the gateway and every other service that accepts it, and the upstream cannot tell the agent from the user.",
			SpecRefs: []conformance.SpecRef{
				{ID: "MCP-Token-Passthrough", URL: "https://modelcontextprotocol.io/specification/2025-06-18/basic/authorization#access-token-privilege-restriction",
					Text: "The MCP server MUST NOT pass through the token it received from the MCP client."},
				{ID: "RFC8693-1", URL: "https://www.rfc-editor.org/rfc/rfc8693#section-1"},
			},
			Evidence: []conformance.Evidence{
				{Step: "call tools/call with a valid token", Request: call("127.0.0.1:50460", baseline), Response: resp(200, 16.7, "", okBody),
					Upstream: []conformance.Upstream{{
						Method: "POST", Path: "/v1/tools/call", Passthrough: true,
						Token:  &conformance.TokenRef{Label: "valid", JTI: "01JNQ6Z3V8K2M4R7T9W1Y3B5D7", SHA256: "3f9a0c7e51b2d864"},
						Claims: map[string]any{"aud": aud, "iss": issuer, "sub": "agent-7"},
					}},
					Expected: "the upstream receives a different token whose aud is the upstream (http://127.0.0.1:18090), ideally an RFC 8693 exchange with act",
					Verdict:  "mismatch"},
			},
		},
		{
			ID: "revoked-token-rejected", Title: "A revoked token stops working promptly",
			Status: conformance.StatusWarn, Severity: conformance.SHOULD, Tags: []string{"w1", "revocation"},
			Duration: 12_650 * time.Millisecond,
			Reason:   "the revoked token was still accepted for 12.4 s; the target declares no introspection, so the bound is 5 s",
			Why:      "Until a gateway notices a revocation, a stolen token keeps working: the delay is the attacker's window after the user or the IdP has reacted.",
			SpecRefs: []conformance.SpecRef{{ID: "RFC7009-2.1", URL: "https://www.rfc-editor.org/rfc/rfc7009#section-2.1"}},
			Figures:  map[string]float64{"revocation_delay_ms": 12400, "poll_interval_ms": 250, "token_lifetime_s": 300},
			Evidence: []conformance.Evidence{
				{Step: "revoke the token", Note: "revoked jti 01JNQ6Z44B5C6D7E8F9G0H1J2K at the IdP", Verdict: "ok"},
				{Step: "poll until the target rejects it", Request: call("127.0.0.1:50471", tok("revoked", "01JNQ6Z44B5C6D7E8F9G0H1J2K", "91c0d6e4f8a2b357", nil)),
					Response: reject(2.6), Expected: "401 within 5 s of the revocation", Verdict: "mismatch",
					Note: "rejected on poll 50 of 120, 12.4 s after the revocation"},
			},
		},
		{
			ID: "jwt-header-key-injection", Title: "Keys named in the token header (jwk, jku, x5u, kid) are not trusted",
			Status: conformance.StatusError, Severity: conformance.MUST, Tags: []string{"jwt"},
			Duration: 5_012 * time.Millisecond,
			Reason:   "the target answered 502 to a token whose jku points at the canary: an unexpected status, so the scenario cannot be judged",
			SpecRefs: []conformance.SpecRef{{ID: "RFC8725-3.10", URL: "https://www.rfc-editor.org/rfc/rfc8725#section-3.10"}, {ID: "CVE-2018-0114"}},
			Evidence: []conformance.Evidence{
				{Step: "call with jku pointing at the canary", Request: call("127.0.0.1:50480", tok("jku-canary", "01JNQ6Z45L6M7N8P9Q0R1S2T3V", "6a8d2b05e91f7c43", func(h, _ map[string]any) { h["jku"] = "http://127.0.0.1:18099/jwks.json" })),
					Response: &conformance.Response{Status: 502, DurationMS: 5003.5, Headers: map[string]string{"Content-Type": "text/html"},
						Body: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"},
					Expected: expectReject + "; the canary records no fetch", Verdict: "error",
					Note: "the canary listener recorded no fetch"},
			},
		},
		{
			ID: "dpop-bound-as-bearer", Title: "A DPoP-bound token presented as Bearer is rejected",
			Status: conformance.StatusSkip, Severity: conformance.MUSTIfDeclared, Tags: []string{"dpop"},
			Reason:   "the target does not declare the dpop feature",
			SpecRefs: []conformance.SpecRef{{ID: "RFC9449-7.1", URL: "https://www.rfc-editor.org/rfc/rfc9449#section-7.1"}},
		},
		{
			ID: "context-binding-replay", Title: "A token replayed from another source address is rejected",
			Status: conformance.StatusSkip, Severity: conformance.SHOULD, Tags: []string{"w1", "binding"},
			Reason:   "every call reaches the target from 127.0.0.1 (it sits behind a port proxy), so a replay from 127.0.0.2 cannot be told apart",
			SpecRefs: []conformance.SpecRef{{ID: "RFC9700-4.10.1", URL: "https://www.rfc-editor.org/rfc/rfc9700#section-4.10.1"}},
		},
		{
			ID: "jwt-key-rotation", Title: "A rotated signing key is picked up; a removed key is refused",
			Status: conformance.StatusPass, Severity: conformance.SHOULD, Tags: []string{"jwt", "keys"},
			Duration: 1_290 * time.Millisecond, Reason: "accepted the new kid after one JWKS refetch and refused the removed kid",
			SpecRefs: []conformance.SpecRef{{ID: "OIDCC-10.1.1", URL: "https://openid.net/specs/openid-connect-core-1_0.html#RotateSigKeys"}},
			Figures:  map[string]float64{"jwks_refresh_delay_ms": 830},
		},
		{
			ID: "audit-record-fields", Title: "Every decision leaves an audit record with the agent, the token id and the reason",
			Status: conformance.StatusSkip, Severity: conformance.SHOULD, Tags: []string{"w1", "audit"},
			Reason:   "the target file names no audit sink",
			SpecRefs: []conformance.SpecRef{{ID: "MCP-Sec-Token-Theft", URL: "https://modelcontextprotocol.io/specification/draft/basic/security_best_practices"}},
		},
	}

	results = append(results, agentResults()...)

	var sm conformance.Summary
	sm.Total = len(results)
	for _, r := range results {
		switch r.Status {
		case conformance.StatusPass:
			sm.Pass++
		case conformance.StatusFail:
			sm.Fail++
		case conformance.StatusWarn:
			sm.Warn++
		case conformance.StatusSkip:
			sm.Skip++
		case conformance.StatusError:
			sm.Error++
		}
		if r.Expected {
			sm.ExpectedFailures++
		}
		if r.Stale {
			sm.StaleExpected++
		}
	}
	return &conformance.Report{
		Schema: conformance.SchemaVersion,
		Agentsso: conformance.Build{Version: "v0.3.0", GoVersion: "go1.26.8",
			Digest: "9b2e6f0a4c8d1e3f5a7b9c0d2e4f6a8b1c3d5e7f9a0b2c4d6e8f1a3b5c7d9e0f"},
		Catalogue: conformance.Catalogue{Version: "2026.03.0", Hash: "c41d7e2a9b0f3c5e8d6a1b4f7e0c2d9a5b8e1f4c7a0d3b6e9f2c5a8d1b4e7f0a"},
		Target: conformance.TargetInfo{Name: "acme-mcp-gateway", Kind: "gateway", URL: targetURL, Audience: aud, Tenant: "acme",
			Features: []string{"rfc9068", "token-exchange"}},
		IdP: conformance.IdPInfo{URL: "http://127.0.0.1:9400", Tenants: []conformance.TenantKeys{
			{Tenant: "acme", Issuer: issuer, Backend: "pkcs11", KID: kid, Alg: "ES256"},
			{Tenant: "globex", Issuer: "http://127.0.0.1:9400/t/globex", Backend: "memory", KID: "globex-rs256-1", Alg: "RS256"},
		}},
		Started:       started,
		Duration:      19_830 * time.Millisecond,
		Summary:       sm,
		Results:       results,
		Verdict:       "fail",
		VerdictReason: "not conforming: jwt-temporal, iss-mismatch (stale expected failure), scope-insufficient, token-passthrough, jwt-header-key-injection (error), agent-no-token-to-other-audience",
	}
}

// agentResults are two agent scenarios as the engine reports them
// against the reference agent (traces taken from real runs): one that
// failed (its first access token went to rs2 and to the decoy) with a
// single run, and one that passed with two runs (variants).
func agentResults() []conformance.Result {
	at1 := &conformance.TokenRef{Label: "access token #1 (aud rs1)", JTI: "MOJJOaiA1JAJa4autGDzBw", SHA256: "39fd81ce8fa3b2d0"}
	at2 := &conformance.TokenRef{Label: "access token #2 (aud rs2)", JTI: "HEaC5YubqSY2-n1d8jXXhA", SHA256: "0203c1bd84d4e917"}
	key := &conformance.TokenRef{Label: "the model API key", SHA256: "1c2fc2583010a4b6"}
	type row struct {
		ms           float64
		from, to     string
		method, path string
		what         string
		status       int
		tok          *conformance.TokenRef
		note         string
	}
	trace := func(run string, rows ...row) []conformance.TraceEntry {
		out := make([]conformance.TraceEntry, len(rows))
		for i, r := range rows {
			out[i] = conformance.TraceEntry{Run: run, Seq: i + 1, AtMS: r.ms, From: r.from, To: r.to, Method: r.method, Path: r.path,
				What: r.what, Status: r.status, Token: r.tok, Note: r.note}
		}
		return out
	}
	const (
		prm   = "/.well-known/oauth-protected-resource/mcp"
		asMD  = "/.well-known/oauth-authorization-server/t/agents"
		chat  = "/v1/chat/completions"
		token = "/t/agents/token"
	)
	leak := conformance.Result{
		ID: "agent-no-token-to-other-audience", Title: "The agent never sends a token for one server to another server or to a decoy",
		Status: conformance.StatusFail, Severity: conformance.MUST, Tags: []string{"agent", "w1", "audience"},
		Duration: 412 * time.Millisecond,
		Reason:   "rs2 got access token #1 (aud rs1), whose audience is [http://127.0.0.1:35877/mcp]; the decoy got access token #1 (aud rs1)",
		Why:      "A token sent to the wrong server is a token given away: that server can replay it where it is valid (the confused deputy). The decoy never asks for a token; an agent that sends it one leaks.",
		SpecRefs: []conformance.SpecRef{
			{ID: "MCP-Authorization-Token-Handling", Text: "MCP clients MUST NOT send tokens to the MCP server other than ones issued by the MCP server's authorization server"},
			{ID: "RFC9700-4.9", URL: "https://www.rfc-editor.org/rfc/rfc9700#section-4.9", Text: "access tokens ... SHOULD be audience-restricted"},
		},
		Evidence: []conformance.Evidence{
			{Step: "audience_isolation", Expected: "a token is only ever sent to the server it was issued for; the decoy gets none", Verdict: "mismatch",
				Note: "rs2 got access token #1 (aud rs1), whose audience is [http://127.0.0.1:35877/mcp]; the decoy got access token #1 (aud rs1)"},
			{Step: "task_completed", Expected: "the agent did its task: the model got every scripted tool result and gave its final answer", Verdict: "ok",
				Note: "every scripted tool call succeeded and the model gave its final answer"},
		},
		Trace: trace("",
			row{0, "agent", "rs1", "POST", "/mcp", "initialize", 401, nil, ""},
			row{3.41, "agent", "rs1", "GET", prm, "metadata", 200, nil, ""},
			row{4.47, "agent", "idp", "GET", asMD, "metadata", 200, nil, ""},
			row{24.8, "agent", "browser", "GET", "/open", "open authorization URL", 200, nil, ""},
			row{29.85, "browser", "idp", "GET", "/t/agents/authorize", "authorize", 303, nil, ""},
			row{45.83, "agent", "idp", "POST", token, "token: authorization_code", 200, nil, ""},
			row{66.59, "agent", "idp", "GET", "/t/agents/jwks", "", 200, nil, ""},
			row{79.67, "agent", "rs1", "POST", "/mcp", "initialize", 200, at1, ""},
			row{88.37, "agent", "rs1", "POST", "/mcp", "notifications/initialized", 202, at1, ""},
			row{97.07, "agent", "rs1", "POST", "/mcp", "tools/list", 200, at1, ""},
			row{100.75, "agent", "rs2", "POST", "/mcp", "initialize", 401, at1, "invalid_token: the access token is not for this resource"},
			row{106.45, "agent", "rs2", "GET", prm, "metadata", 200, nil, ""},
			row{106.53, "agent", "browser", "GET", "/open", "open authorization URL", 200, nil, ""},
			row{117.77, "browser", "idp", "GET", "/t/agents/authorize", "authorize", 303, nil, ""},
			row{117.88, "agent", "idp", "POST", token, "token: authorization_code", 200, nil, ""},
			row{118.81, "agent", "rs2", "POST", "/mcp", "initialize", 200, at2, ""},
			row{119.04, "agent", "rs2", "POST", "/mcp", "notifications/initialized", 202, at2, ""},
			row{119.05, "agent", "rs2", "POST", "/mcp", "tools/list", 200, at2, ""},
			row{119.06, "agent", "decoy", "POST", "/mcp", "initialize", 200, at1, ""},
			row{119.39, "agent", "decoy", "POST", "/mcp", "notifications/initialized", 202, at1, ""},
			row{119.39, "agent", "decoy", "POST", "/mcp", "tools/list", 200, at1, ""},
			row{119.39, "agent", "model", "POST", chat, "model", 200, key, ""},
			row{119.44, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 200, at1, ""},
			row{119.48, "agent", "model", "POST", chat, "model", 200, key, ""},
			row{119.48, "agent", "rs2", "POST", "/mcp", "tools/call search", 200, at2, ""},
			row{119.48, "agent", "model", "POST", chat, "model", 200, key, ""},
			row{119.49, "agent", "decoy", "POST", "/mcp", "tools/call lookup", 200, at1, ""},
			row{120, "agent", "model", "POST", chat, "model", 200, key, ""},
			row{120.45, "agent", "idp", "POST", "/t/agents/revoke", "revoke", 200, nil, ""},
			row{122.34, "agent", "idp", "POST", "/t/agents/revoke", "revoke", 200, nil, ""},
		),
	}

	a1 := &conformance.TokenRef{Label: "access token #1 (aud rs1)", JTI: "XT9zDC7K483Ja9RadSL0lQ", SHA256: "37806aeb22ac51f0"}
	a2 := &conformance.TokenRef{Label: "access token #2 (aud rs1)", JTI: "7l0LCinLD2kd8GQLIzQcbg", SHA256: "e25f88dab3153c77"}
	b1 := &conformance.TokenRef{Label: "access token #1 (aud rs1)", JTI: "nP-qXP5pqPuzAIu9udn1vQ", SHA256: "04f50b1e77369a2c"}
	b2 := &conformance.TokenRef{Label: "access token #2 (aud rs1)", JTI: "BDzrD8Ai_nxB_ffRq1X3_A", SHA256: "eae891d7101f6b48"}
	b3 := &conformance.TokenRef{Label: "access token #3 (aud rs1)", JTI: "R89wjuUvx9YuelseqpGaLw", SHA256: "d5d7d05074713e95"}
	key2 := &conformance.TokenRef{Label: "the model API key", SHA256: "fbfb3691a09f2e61"}
	const revoked = "invalid_token: the access token was revoked"
	start := func(run string, tok *conformance.TokenRef, rows ...row) []conformance.TraceEntry {
		return trace(run, append([]row{
			{0, "agent", "rs1", "POST", "/mcp", "initialize", 401, nil, ""},
			{6.4, "agent", "rs1", "GET", prm, "metadata", 200, nil, ""},
			{10.58, "agent", "idp", "GET", asMD, "metadata", 200, nil, ""},
			{12.3, "agent", "browser", "GET", "/open", "open authorization URL", 200, nil, ""},
			{12.66, "browser", "idp", "GET", "/t/agents/authorize", "authorize", 303, nil, ""},
			{13.1, "agent", "idp", "POST", token, "token: authorization_code", 200, nil, ""},
			{17.16, "agent", "rs1", "POST", "/mcp", "initialize", 200, tok, ""},
			{24.51, "agent", "rs1", "POST", "/mcp", "notifications/initialized", 202, tok, ""},
			{33.9, "agent", "rs1", "POST", "/mcp", "tools/list", 200, tok, ""},
		}, rows...)...)
	}
	retry := conformance.Result{
		ID: "agent-handles-401", Title: "On invalid_token the agent refreshes or re-authorizes once, and its retries are bounded",
		Status: conformance.StatusPass, Severity: conformance.MUST, Tags: []string{"agent"},
		Duration: 1_870 * time.Millisecond, Reason: "every check held",
		SpecRefs: []conformance.SpecRef{{ID: "RFC6750-3.1", Text: "invalid_token ... The client MAY request a new access token and retry"}},
		Evidence: []conformance.Evidence{
			{Step: "one rejection: bounded_retries", Expected: "a token a server rejected with invalid_token is not presented again; retries are bounded", Verdict: "ok",
				Note: "rejected tokens were not reused; 2 call(s) after the first rejection"},
			{Step: "one rejection: task_completed", Expected: "the agent did its task: the model got every scripted tool result and gave its final answer", Verdict: "ok",
				Note: "every scripted tool call succeeded and the model gave its final answer"},
			{Step: "rejected from the second call on: bounded_retries", Expected: "a token a server rejected with invalid_token is not presented again; retries are bounded", Verdict: "ok",
				Note: "rejected tokens were not reused; 4 call(s) after the first rejection"},
		},
		Trace: append(start("one rejection", a1,
			row{94.49, "agent", "model", "POST", chat, "model", 200, key2, ""},
			row{96.36, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 200, a1, ""},
			row{102.43, "agent", "model", "POST", chat, "model", 200, key2, ""},
			row{107.65, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 401, a1, revoked},
			row{115.35, "agent", "idp", "POST", token, "token: refresh_token", 200, nil, ""},
			row{117.57, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 200, a2, ""},
			row{117.95, "agent", "model", "POST", chat, "model", 200, key2, ""},
			row{134.26, "agent", "idp", "POST", "/t/agents/revoke", "revoke", 200, nil, ""},
		), start("rejected from the second call on", b1,
			row{43.09, "agent", "model", "POST", chat, "model", 200, key2, ""},
			row{44.34, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 200, b1, ""},
			row{45.88, "agent", "model", "POST", chat, "model", 200, key2, ""},
			row{47.87, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 401, b1, revoked},
			row{53.24, "agent", "idp", "POST", token, "token: refresh_token", 200, nil, ""},
			row{55.01, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 401, b2, revoked},
			row{55.88, "agent", "idp", "POST", token, "token: refresh_token", 200, nil, ""},
			row{57.22, "agent", "rs1", "POST", "/mcp", "tools/call notes_read", 401, b3, revoked},
			row{61.75, "agent", "model", "POST", chat, "model", 200, key2, ""},
			row{63.97, "agent", "idp", "POST", "/t/agents/revoke", "revoke", 200, nil, ""},
		)...),
	}
	return []conformance.Result{leak, retry}
}
