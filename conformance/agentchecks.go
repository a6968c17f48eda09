package conformance

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentsso/agentsso/conformance/agentlab"
	"github.com/agentsso/agentsso/internal/jwtpeek"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

type checkState int

const (
	checkHeld checkState = iota
	checkViolated
	// checkWarn: a lesser breach, a warning whatever the severity.
	checkWarn
	// checkUnexercised: the agent never took the path the check judges.
	checkUnexercised
)

type checkVerdict struct {
	state checkState
	msg   string
}

func held(format string, a ...any) checkVerdict {
	return checkVerdict{checkHeld, fmt.Sprintf(format, a...)}
}
func violated(format string, a ...any) checkVerdict {
	return checkVerdict{checkViolated, fmt.Sprintf(format, a...)}
}
func unexercised(format string, a ...any) checkVerdict {
	return checkVerdict{checkUnexercised, fmt.Sprintf(format, a...)}
}

type agentCheck struct {
	what string
	fn   func(w *agentlab.World, out agentOutput, c AgentCheck) checkVerdict
}

// agentChecks are the predicates over an agent's trace. docs/SCENARIOS.md
// lists them.
var agentChecks = map[string]agentCheck{
	"task_completed":          {"the agent did its task: the model got every scripted tool result and gave its final answer", checkTaskCompleted},
	"pkce_s256":               {"every authorization request has an S256 code_challenge, and every code is redeemed with the matching code_verifier", checkPKCE},
	"no_authorization":        {"the agent does not start an authorization (no authorization request, nothing opened in the browser)", checkNoAuthorization},
	"resource_indicator":      {"every authorization and token request carries `resource` = the canonical URI of the MCP server", checkResource},
	"no_code_redemption":      {"the agent does not redeem the authorization code it received", checkNoCodeRedemption},
	"audience_isolation":      {"a token is only ever sent to the server it was issued for; the decoy gets none", checkAudienceIsolation},
	"as_isolation":            {"nothing the first AS issued (client secret, tokens) reaches the second AS or the servers that trust it", checkASIsolation},
	"no_expired_token":        {"no server receives an access token after its exp", checkNoExpired},
	"bounded_retries":         {"a token a server rejected with invalid_token is not presented again; retries are bounded", checkBoundedRetries},
	"refresh_rotation":        {"each refresh presents the newest refresh token, never one already used", checkRefreshRotation},
	"no_use_after_revocation": {"once a token is revoked (by the harness, or by the agent with a 200), it is never presented again after its first rejection", checkNoUseAfterRevocation},
	"stepup_scopes":           {"the agent asks only for the scopes the server's metadata or challenge names, and on insufficient_scope for their union", checkStepUpScopes},
	"dpop_proofs":             {"DPoP proofs with a fresh jti each, right htm/htu/ath, the DPoP scheme, and the server's nonce once given", checkDPoP},
	"exchange_used":           {"the agent exchanges the user's token (RFC 8693: subject_token + actor_token) and sends the result, never the user's token, to the server", checkExchange},
	"token_hygiene":           {"no token or secret in a URL or in the agent's output; no authorization URL that is not http(s) opened", checkHygiene},
	"id_token_rejected":       {"after a flawed ID token the agent calls no server with the tokens of that response", checkIDTokenRejected},
	"client_assertion":        {"private_key_jwt assertions have aud = the AS, a short exp (≤ 5 min), and a fresh jti each", checkAssertion},
	"llm_isolation":           {"no token, secret or assertion the agent holds appears in what it sends to the model", checkLLMIsolation},
}

func isTokenEndpoint(r agentlab.Record) bool {
	return r.Server == "idp" && strings.HasSuffix(r.Path, "/token") && r.Method == "POST"
}

func isAuthorize(r agentlab.Record) bool {
	return r.Server == "idp" && strings.HasSuffix(r.Path, "/authorize")
}

func isRS(r agentlab.Record) bool {
	return r.Server == "rs1" || r.Server == "rs2" || r.Server == "decoy"
}

func grantOf(r agentlab.Record) string { return r.Form.Get("grant_type") }

func checkTaskCompleted(w *agentlab.World, out agentOutput, _ AgentCheck) checkVerdict {
	if out.timedOut {
		return violated("the agent did not finish in time")
	}
	if !w.Done() {
		return violated("the agent did not do its task: the model never got every scripted tool result (exit: %v; stderr: %s)", out.exitErr, tail(out.stderrSafe, 300))
	}
	want := map[string]int{}
	for _, c := range w.Spec.Task {
		want[c.Tool]++
	}
	for _, r := range w.Trace.Records() {
		if isRS(r) && r.Status == 200 {
			if t := toolCalled(r); t != "" {
				want[t]--
			}
		}
	}
	for tool, n := range want {
		if n > 0 {
			return violated("the agent told the model it was done, but %d scripted call(s) of %s never succeeded at its server", n, tool)
		}
	}
	return held("every scripted tool call succeeded and the model gave its final answer")
}

func checkPKCE(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	challenges := map[string]bool{}
	n := 0
	for _, r := range w.Trace.Records() {
		if !isAuthorize(r) {
			continue
		}
		n++
		q := r.Query
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
			return violated("an authorization request has code_challenge_method %q (want S256 with a code_challenge)", q.Get("code_challenge_method"))
		}
		challenges[q.Get("code_challenge")] = true
	}
	if n == 0 {
		return unexercised("no authorization request was made")
	}
	for _, r := range w.Trace.Records() {
		if !isTokenEndpoint(r) || grantOf(r) != "authorization_code" {
			continue
		}
		v := r.Form.Get("code_verifier")
		sum := sha256.Sum256([]byte(v))
		if v == "" || !challenges[base64.RawURLEncoding.EncodeToString(sum[:])] {
			return violated("a code was redeemed without the code_verifier of an S256 challenge")
		}
	}
	return held("%d authorization request(s), all S256, verifiers matching", n)
}

func checkNoAuthorization(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	meta := false
	for _, r := range w.Trace.Records() {
		if strings.Contains(r.Path, "/.well-known/") {
			meta = true
		}
		if isAuthorize(r) || r.Server == "browser" {
			return violated("the agent went on to authorize (%s %s) although it should have stopped", r.Method, r.Path)
		}
	}
	if !meta {
		return unexercised("the agent never fetched the server's or the authorization server's metadata")
	}
	return held("the agent read the metadata and did not authorize")
}

func checkResource(w *agentlab.World, _ agentOutput, c AgentCheck) checkVerdict {
	n := 0
	for _, r := range w.Trace.Records() {
		var res []string
		switch {
		case c.Grant != "":
			if !isTokenEndpoint(r) || grantOf(r) != c.Grant {
				continue
			}
			res = r.Form["resource"]
		case isAuthorize(r):
			res = r.Query["resource"]
		case isTokenEndpoint(r):
			res = r.Form["resource"]
		default:
			continue
		}
		n++
		if len(res) == 0 {
			return violated("%s has no resource parameter (RFC 8707)", describeRecord(r))
		}
		for _, x := range res {
			if w.ServerOf(x) == "" {
				return violated("%s has resource %q, not the canonical URI of an MCP server", describeRecord(r), x)
			}
		}
	}
	if n == 0 {
		if c.Grant != "" {
			return unexercised("no %s token request was made", c.Grant)
		}
		return unexercised("no authorization or token request was made")
	}
	return held("%d request(s) named the server's canonical URI", n)
}

func checkNoCodeRedemption(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	delivered := false
	for _, r := range w.Trace.Records() {
		if r.Server == "browser" && r.Status == 200 {
			delivered = true
		}
		if delivered && isTokenEndpoint(r) && grantOf(r) == "authorization_code" {
			return violated("the agent redeemed the code of a flawed authorization response")
		}
	}
	if !delivered {
		return unexercised("no authorization response reached the agent")
	}
	return held("the code was not redeemed")
}

func checkAudienceIsolation(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	servers := map[string]bool{}
	n := 0
	for _, r := range w.Trace.Records() {
		if !isRS(r) {
			continue
		}
		servers[r.Server] = true
		_, tok := r.Token()
		if tok == "" {
			continue
		}
		if r.Server == "decoy" {
			return violated("the decoy, which never asked for a token, received %s", canaryRef(w, tok).Label)
		}
		n++
		c := w.Canaries.Lookup(tok)
		if c == nil {
			continue
		}
		if !slices.Contains(c.Audiences(), w.Servers[r.Server].URL) {
			return violated("%s got %s, whose audience is %v", r.Server, c.Label, c.Audiences())
		}
	}
	if n == 0 || len(servers) < 2 {
		return unexercised("the agent did not call two servers with tokens")
	}
	return held("%d token presentation(s), each to its own audience", n)
}

func checkASIsolation(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	as2 := false
	for _, r := range w.Trace.Records() {
		second := r.Server == "idp" && strings.Contains(r.Path, "/t/agents2")
		if second {
			as2 = true
			blob := r.Authorization + " " + r.Body + " " + r.Query.Encode()
			if user, _, ok := basicAuth(r.Authorization); ok && user == agentlab.AgentClientID {
				return violated("the agent authenticated to the second AS as the first AS's client %q", user)
			}
			for _, c := range w.Canaries.Find(blob) {
				if c.Issuer == w.Issuer || c.Kind == "client_secret" && c.Issuer == w.Issuer {
					return violated("the second AS received %s, issued by the first", c.Label)
				}
			}
		}
		if isRS(r) {
			_, tok := r.Token()
			c := w.Canaries.Lookup(tok)
			if c == nil {
				continue
			}
			if w.Servers[r.Server].Issuer != c.Issuer && c.Issuer != "" {
				return violated("%s, which trusts %s, received %s from %s", r.Server, w.Servers[r.Server].Issuer, c.Label, c.Issuer)
			}
		}
	}
	if !as2 {
		return unexercised("the agent never reached the second authorization server")
	}
	return held("the two authorization servers' credentials and tokens stayed apart")
}

func checkNoExpired(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	expired := 0
	var first, last time.Time
	var firstExp time.Time
	for _, r := range w.Trace.Records() {
		if !isRS(r) {
			continue
		}
		_, tok := r.Token()
		c := w.Canaries.Lookup(tok)
		if c == nil || c.Exp().IsZero() {
			continue
		}
		if first.IsZero() {
			first, firstExp = r.Time, c.Exp()
		}
		last = r.Time
		if r.Time.After(c.Exp().Add(time.Second)) {
			expired++
		}
	}
	if first.IsZero() || !last.After(firstExp.Add(-time.Second)) {
		return unexercised("the agent's work did not outlast its first access token")
	}
	switch expired {
	case 0:
		return held("every presented access token was still valid")
	case 1:
		return checkVerdict{checkWarn, "one expired access token was presented (a 401, then a refresh) instead of refreshing before exp"}
	}
	return violated("%d expired access tokens were presented", expired)
}

func checkBoundedRetries(w *agentlab.World, _ agentOutput, c AgentCheck) checkVerdict {
	max := c.Max
	if max == 0 {
		max = 10
	}
	rejected := map[string]string{}
	after := 0
	for _, r := range w.Trace.Records() {
		if !isRS(r) {
			continue
		}
		_, tok := r.Token()
		if tok == "" {
			continue
		}
		if srv, ok := rejected[tok]; ok && srv == r.Server {
			return violated("%s presented %s again after it was rejected with invalid_token", r.Server, canaryRef(w, tok).Label)
		}
		if len(rejected) > 0 {
			after++
		}
		if r.Status == 401 && strings.Contains(strings.Join(r.RespHeader.Values("WWW-Authenticate"), " "), "invalid_token") {
			rejected[tok] = r.Server
		}
	}
	if len(rejected) == 0 {
		return unexercised("no server rejected a token")
	}
	if after > max {
		return violated("%d server calls after the first rejection (bound %d)", after, max)
	}
	return held("rejected tokens were not reused; %d call(s) after the first rejection", after)
}

func checkRefreshRotation(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	used := map[string]bool{}
	n := 0
	for _, r := range w.Trace.Records() {
		if !isTokenEndpoint(r) || grantOf(r) != "refresh_token" {
			continue
		}
		n++
		rt := r.Form.Get("refresh_token")
		if used[rt] {
			return violated("refresh #%d presented %s, already used by an earlier refresh", n, canaryRef(w, rt).Label)
		}
		used[rt] = true
	}
	if n < 2 {
		return unexercised("fewer than two refreshes (%d)", n)
	}
	return held("%d refreshes, each with the newest refresh token", n)
}

func checkNoUseAfterRevocation(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	revs := w.Revocations()
	var cut time.Time
	if len(revs) > 0 {
		cut = revs[0]
	}
	selfRevoked := map[string]bool{}
	var selfCut time.Time
	rejected := map[string]bool{}
	exercised := !cut.IsZero()
	for _, r := range w.Trace.Records() {
		if r.Server == "idp" && strings.HasSuffix(r.Path, "/revoke") && r.Status == 200 {
			selfRevoked[r.Form.Get("token")] = true
			if selfCut.IsZero() {
				selfCut = r.Time
			}
			exercised = true
			continue
		}
		var tok string
		switch {
		case isRS(r):
			_, tok = r.Token()
		case isTokenEndpoint(r) && grantOf(r) == "refresh_token":
			tok = r.Form.Get("refresh_token")
		default:
			continue
		}
		if tok == "" {
			continue
		}
		c := w.Canaries.Lookup(tok)
		if selfRevoked[tok] {
			return violated("the agent presented %s after revoking it itself", canaryRef(w, tok).Label)
		}
		if !selfCut.IsZero() && r.Time.After(selfCut) && c != nil && c.Issued.Before(selfCut) && isRS(r) {
			return violated("after revoking its grant the agent still presented %s to %s", c.Label, r.Server)
		}
		if !cut.IsZero() && c != nil && c.Issued.Before(cut) && r.Time.After(cut) {
			if rejected[tok] {
				return violated("%s was presented again after it was revoked and rejected", c.Label)
			}
			if r.Status == 401 || r.Status == 400 {
				rejected[tok] = true
			}
		}
	}
	if !exercised {
		return unexercised("nothing was revoked")
	}
	return held("no revoked token was presented again")
}

var oidcScopes = []string{"openid", "profile", "email", "offline_access"}

func checkStepUpScopes(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	allowed := append([]string(nil), oidcScopes...)
	var challenged []string
	var prev []string
	n := 0
	for _, r := range w.Trace.Records() {
		if isRS(r) {
			if r.Status == 401 || r.Status == 403 {
				for _, h := range r.RespHeader.Values("WWW-Authenticate") {
					if sc := authParam(h, "scope"); sc != "" {
						challenged = append(challenged, strings.Fields(sc)...)
					}
				}
			}
			continue
		}
		if !isAuthorize(r) {
			continue
		}
		n++
		asked := strings.Fields(r.Query.Get("scope"))
		for _, s := range asked {
			if s == "*" || s == "all" {
				return violated("the agent asked for scope %q", s)
			}
			ok := slices.Contains(allowed, s) || slices.Contains(challenged, s) || prmScope(w, s)
			if !ok {
				return violated("the agent asked for %q, which neither a challenge nor the metadata named", s)
			}
		}
		for _, s := range prev {
			if !slices.Contains(asked, s) && !slices.Contains(oidcScopes, s) {
				return violated("re-authorizing, the agent dropped %q granted before (ask for the union)", s)
			}
		}
		prev = asked
	}
	if n < 2 {
		return unexercised("the agent did not re-authorize (%d authorization request(s))", n)
	}
	return held("%d authorization requests, scopes from the challenges and metadata only, each a superset of the last", n)
}

// prmScope reports whether a server's metadata lists s.
func prmScope(w *agentlab.World, s string) bool {
	for _, r := range w.Trace.Records() {
		if isRS(r) && strings.Contains(r.Path, "/.well-known/") {
			// the server's scopes_supported is what it published
			for _, srv := range w.Servers {
				if srv.Name == r.Server && slices.Contains(srv.Scopes(), s) {
					return true
				}
			}
		}
	}
	return false
}

func checkDPoP(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	jtis := map[string]int{}
	proofs := 0
	nonce := map[string]string{} // server → nonce last given
	for _, r := range w.Trace.Records() {
		if len(r.DPoP) > 1 {
			return violated("%s got %d DPoP headers", r.Server, len(r.DPoP))
		}
		if isRS(r) && r.Server != "decoy" {
			if scheme, tok := r.Token(); tok != "" {
				if !strings.EqualFold(scheme, "DPoP") {
					return violated("%s got the %s scheme, not DPoP", r.Server, scheme)
				}
				if len(r.DPoP) == 0 {
					return violated("%s got a DPoP-bound token without a proof", r.Server)
				}
				cl := jwtpeek.Claims(r.DPoP[0])
				sum := sha256.Sum256([]byte(tok))
				if ath, _ := cl["ath"].(string); ath != base64.RawURLEncoding.EncodeToString(sum[:]) {
					return violated("a proof to %s has a wrong or missing ath", r.Server)
				}
			}
		}
		if len(r.DPoP) == 1 {
			proofs++
			cl := jwtpeek.Claims(r.DPoP[0])
			jti, _ := cl["jti"].(string)
			if jti == "" {
				return violated("a proof to %s has no jti", r.Server)
			}
			jtis[jti]++
			if jtis[jti] > 1 {
				return violated("proof jti %q was used %d times", jti, jtis[jti])
			}
			if htm, _ := cl["htm"].(string); htm != r.Method {
				return violated("a proof to %s has htm %q for a %s", r.Server, htm, r.Method)
			}
			htu, _ := cl["htu"].(string)
			if u, err := url.Parse(htu); err != nil || u.Path != r.Path || u.RawQuery != "" {
				return violated("a proof to %s has htu %q for %s", r.Server, htu, r.Path)
			}
			if want := nonce[r.Server]; want != "" {
				if got, _ := cl["nonce"].(string); got != want {
					return violated("after %s gave a DPoP-Nonce, a proof carried nonce %q", r.Server, got)
				}
			}
		}
		if n := r.RespHeader.Get("DPoP-Nonce"); n != "" {
			nonce[r.Server] = n
		}
	}
	if proofs == 0 {
		return unexercised("the agent sent no DPoP proof")
	}
	return held("%d proofs, every jti fresh, htm/htu/ath right, nonces honoured", proofs)
}

func checkExchange(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	if w.UserToken == "" {
		return unexercised("the scenario gave no user token")
	}
	exchanged := false
	usedAct := false
	for _, r := range w.Trace.Records() {
		if isTokenEndpoint(r) && strings.HasSuffix(grantOf(r), "token-exchange") {
			if r.Form.Get("subject_token") == w.UserToken && r.Form.Get("actor_token") != "" && r.Status == 200 {
				exchanged = true
			}
		}
		if isRS(r) {
			_, tok := r.Token()
			if tok == w.UserToken {
				return violated("%s received the user's own token instead of an exchanged one", r.Server)
			}
			if c := w.Canaries.Lookup(tok); c != nil && c.Claims["act"] != nil {
				usedAct = true
			}
		}
	}
	if !exchanged {
		return violated("the agent made no token exchange with subject_token = the user's token and an actor_token")
	}
	if !usedAct {
		return violated("no server received an exchanged token (one with act)")
	}
	return held("the agent exchanged the user's token and used the result")
}

func checkHygiene(w *agentlab.World, out agentOutput, _ AgentCheck) checkVerdict {
	for _, r := range w.Trace.Records() {
		q := r.Query.Encode()
		if r.Server == "browser" {
			continue // the authorization URL is the browser's input
		}
		for _, c := range w.Canaries.Find(q) {
			if c.Kind == "model_key" {
				continue
			}
			return violated("%s appeared in a URL (%s %s)", c.Label, r.Server, r.Path)
		}
	}
	for _, c := range w.Canaries.Find(out.stdout + "\n" + out.stderr) {
		if c.Kind != "model_key" {
			return violated("%s appeared in the agent's output", c.Label)
		}
	}
	if w.BrowserRefused() > 0 {
		return violated("the agent asked the browser to open an authorization URL that is not http(s)")
	}
	presented := 0
	for _, r := range w.Trace.Records() {
		if _, tok := r.Token(); tok != "" && isRS(r) {
			presented++
		}
	}
	if presented == 0 {
		return unexercised("the agent presented no token to a server")
	}
	return held("tokens stayed in headers and out of the agent's output (%d presentations)", presented)
}

func checkIDTokenRejected(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	var at string
	for _, r := range w.Trace.Records() {
		if isTokenEndpoint(r) && strings.Contains(r.RespBody, `"id_token"`) && at == "" {
			var m map[string]any
			if json.Unmarshal([]byte(r.RespBody), &m) == nil {
				at, _ = m["access_token"].(string)
			}
			continue
		}
		if at != "" && isRS(r) {
			if _, tok := r.Token(); tok == at {
				return violated("the agent called %s with the access token of a response whose ID token is invalid", r.Server)
			}
		}
	}
	if at == "" {
		return unexercised("the agent never received an ID token (it did not ask for openid)")
	}
	return held("the agent did not use the tokens of a response with an invalid ID token")
}

func checkAssertion(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	jtis := map[string]bool{}
	n := 0
	for _, r := range w.Trace.Records() {
		a := r.Form.Get("client_assertion")
		if r.Server != "idp" || a == "" {
			continue
		}
		n++
		cl := jwtpeek.Claims(a)
		if cl == nil {
			return violated("a client_assertion is not a JWT")
		}
		auds := agentlab.ClaimStrings(cl, "aud")
		if !slices.Contains(auds, w.Issuer) && !slices.Contains(auds, w.Issuer+"/token") {
			return violated("a client assertion's aud is %v, not the AS (%s)", auds, w.Issuer)
		}
		exp, _ := cl["exp"].(float64)
		iat, _ := cl["iat"].(float64)
		if exp == 0 {
			return violated("a client assertion has no exp")
		}
		if iat == 0 {
			iat = float64(r.Time.Unix())
		}
		if exp-iat > 300 {
			return violated("a client assertion lives %s (exp - iat; want at most 5 minutes)", time.Duration(exp-iat)*time.Second)
		}
		jti, _ := cl["jti"].(string)
		if jti == "" || jtis[jti] {
			return violated("client assertion jti %q is missing or reused", jti)
		}
		jtis[jti] = true
	}
	if n == 0 {
		return unexercised("the agent sent no client assertion")
	}
	if n < 2 {
		return held("one assertion, well formed (jti uniqueness needs two)")
	}
	return held("%d assertions: aud the AS, short-lived, fresh jti each", n)
}

func checkLLMIsolation(w *agentlab.World, _ agentOutput, _ AgentCheck) checkVerdict {
	n := 0
	for _, r := range w.Trace.Records() {
		if r.Server != "model" {
			continue
		}
		n++
		blob := r.Body + " " + r.Query.Encode() + " " + strings.Join(r.DPoP, " ")
		for _, c := range w.Canaries.Find(blob) {
			if c.Kind != "model_key" {
				return violated("the model received %s", c.Label)
			}
		}
		if _, tok := r.Token(); tok != "" && tok != w.ModelKey {
			if c := w.Canaries.Lookup(tok); c != nil {
				return violated("the model received %s as its API key", c.Label)
			}
		}
	}
	if n == 0 {
		return unexercised("the agent never called the model")
	}
	return held("%d model request(s), none carrying a token or secret", n)
}

// basicAuth decodes an HTTP Basic Authorization value.
func basicAuth(h string) (user, pass string, ok bool) {
	s, v, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(s, "Basic") {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return "", "", false
	}
	u, p, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", false
	}
	uu, _ := url.QueryUnescape(u)
	return uu, p, true
}

// authParam reads one parameter of a WWW-Authenticate challenge.
func authParam(h, name string) string {
	i := strings.Index(h, name+"=")
	for i > 0 && h[i-1] != ' ' && h[i-1] != ',' {
		j := strings.Index(h[i+1:], name+"=")
		if j < 0 {
			return ""
		}
		i += 1 + j
	}
	if i < 0 {
		return ""
	}
	v := h[i+len(name)+1:]
	if strings.HasPrefix(v, `"`) {
		if end := strings.Index(v[1:], `"`); end >= 0 {
			return v[1 : 1+end]
		}
		return v[1:]
	}
	if end := strings.IndexAny(v, ", "); end >= 0 {
		return v[:end]
	}
	return v
}

// toolCalled is the tool a tools/call request names, or "".
func toolCalled(r agentlab.Record) string {
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal([]byte(r.Body), &m) != nil || m.Method != "tools/call" {
		return ""
	}
	return m.Params.Name
}
