package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

func (e *env) runStep(ctx context.Context, s *Scenario, step *Step, st *state) {
	name := stepName(step)
	switch {
	case step.Mint != nil:
		tok, ref, err := e.mint(ctx, step.Mint.As, &step.Mint.TokenSpec)
		if err != nil {
			st.errs = append(st.errs, name+": "+err.Error())
			return
		}
		st.tokens[step.Mint.As], st.refs[step.Mint.As] = tok, ref
	case step.Call != nil:
		e.runCall(ctx, name, step.Call, st)
	case step.Revoke != nil:
		ref := st.refs[step.Revoke.Token]
		if ref == nil || ref.JTI == "" {
			st.errs = append(st.errs, name+": the token has no jti to revoke")
			return
		}
		if err := e.r.IdP.RevokeJTI(ctx, e.r.Target.Tenant, ref.JTI); err != nil {
			st.errs = append(st.errs, name+": "+err.Error())
			return
		}
		st.revoked = time.Now()
		st.ev = append(st.ev, Evidence{Step: name, Note: "revoked jti " + ref.JTI + " at the IdP", Verdict: "ok"})
	case step.Keys != nil:
		st.keysed = true
		kid := ""
		if step.Keys.Token != "" {
			if ref := st.refs[step.Keys.Token]; ref != nil {
				kid, _ = ref.Header["kid"].(string)
			}
		}
		var err error
		if step.Keys.Action == "restore" {
			err = e.r.IdP.ResetTenant(ctx, e.r.Target.Tenant)
		} else {
			err = e.r.IdP.KeyAction(ctx, e.r.Target.Tenant, step.Keys.Action, kid)
		}
		if err != nil {
			st.errs = append(st.errs, name+": "+err.Error())
			return
		}
		st.ev = append(st.ev, Evidence{Step: name, Note: strings.TrimSpace("keys " + step.Keys.Action + " " + kid), Verdict: "ok"})
	case step.Audit != nil:
		e.checkAudit(ctx, name, step.Audit, st)
	case step.Metadata != nil:
		e.checkMetadata(ctx, name, step.Metadata, st)
	case step.Fault != nil:
		if err := e.r.IdP.SetFault(ctx, e.r.Target.Tenant, *step.Fault); err != nil {
			st.errs = append(st.errs, name+": "+err.Error())
			return
		}
		st.faulted = true
		st.ev = append(st.ev, Evidence{Step: name, Note: "the IdP's " + step.Fault.Endpoint + " endpoint now answers: " + step.Fault.Mode, Verdict: "ok"})
	}
}

// mint resolves a token spec into a token: T valid for the target, with
// the mutations applied.
func (e *env) mint(ctx context.Context, label string, ts *TokenSpec) (string, *TokenRef, error) {
	t := e.r.Target
	m := MintRequest{
		Claims:   map[string]any{"aud": t.Audience, "sub": "agentsso-harness", "client_id": "agentsso-harness"},
		Header:   map[string]any{},
		Lifetime: "5m",
		Key:      "tenant",
		Typ:      "at+jwt",
	}
	if t.Scope != "" {
		m.Claims["scope"] = t.Scope
	}
	for k, v := range ts.Claims {
		m.Claims[k] = v
	}
	for k, v := range ts.Header {
		m.Header[k] = v
	}
	if ts.Lifetime != 0 {
		m.Lifetime = time.Duration(ts.Lifetime).String()
	}
	if ts.Offset != 0 {
		m.Offset = time.Duration(ts.Offset).String()
	}
	mc := e.mc
	mc.now = time.Now()
	var posts []func(string) string
	for _, name := range ts.Mutate {
		if mutationName(name) == "cnf-x5t" && mc.certX5T == "" {
			return "", nil, errNoClientCA
		}
		mu := mutations[mutationName(name)]
		if mu.pre != nil {
			mu.pre(&m, &mc, mutationArg(name))
		}
		if mu.post != nil {
			posts = append(posts, mu.post)
		}
	}
	if len(m.Header) == 0 {
		m.Header = nil
	}
	out, err := e.r.IdP.Mint(ctx, t.Tenant, m)
	if err != nil {
		return "", nil, err
	}
	tok := out.Token
	for _, p := range posts {
		tok = p(tok)
	}
	if label == "" {
		label = strings.Join(ts.Mutate, "+")
		if label == "" {
			label = "valid"
		}
	}
	e.minted.add(tok)
	return tok, tokenRef(label, tok), nil
}

func (e *env) runCall(ctx context.Context, name string, c *CallStep, st *state) {
	cs := callSpec{scheme: c.Scheme, from: c.From, inQuery: c.InQuery, dpop: c.DPoP, tool: c.Tool, cert: c.Cert, spoof: c.Spoof}
	if c.UseSession != "" {
		if e.r.Target.Protocol != "mcp" {
			st.skipped = append(st.skipped, name+" (MCP sessions only apply to MCP targets)")
			return
		}
		cs.session = st.sessions[c.UseSession]
		if cs.session == "" {
			st.errs = append(st.errs, name+": the session "+c.UseSession+" was never opened (the call that should have opened it failed)")
			return
		}
	}
	switch {
	case c.Token.None:
	case c.Token.Use != "":
		cs.token, cs.ref = st.tokens[c.Token.Use], st.refs[c.Token.Use]
	default:
		tok, ref, err := e.mint(ctx, "", &c.Token)
		if err != nil {
			st.errs = append(st.errs, name+": "+err.Error())
			return
		}
		cs.token, cs.ref = tok, ref
	}
	if c.From != "" && c.From != "127.0.0.1" && e.r.Target.BehindProxy {
		st.skipped = append(st.skipped, name+" (the target is behind a proxy that hides the source address)")
		return
	}
	certNote, ok := e.resolveCert(&cs)
	if !ok {
		if certNote != "" {
			st.errs = append(st.errs, name+": "+certNote)
		} else {
			st.skipped = append(st.skipped, name+" (the target is not https: no client certificate can be presented)")
		}
		return
	}
	st.ran++
	deadline := time.Now()
	if c.Poll != nil {
		within := time.Duration(c.Poll.Within)
		if within == 0 || within > e.r.Opts.PollBound {
			within = e.r.Opts.PollBound
		}
		deadline = deadline.Add(within)
	}
	every := 250 * time.Millisecond
	if c.Poll != nil && c.Poll.Every != 0 {
		every = time.Duration(c.Poll.Every)
	}
	var (
		res  callResult
		jd   judgement
		ups  []recorded
		cans []recorded
	)
	for {
		unlock := e.exclusive()
		um, cm := 0, e.canary.mark()
		if e.upstream != nil {
			um = e.upstream.mark()
		}
		cctx, cancel := e.timedCtx(ctx, c.Expect)
		t0 := time.Now()
		res = e.call.do(cctx, cs)
		elapsed := time.Since(t0)
		cancel()
		if e.upstream != nil {
			// The gateway answers after it forwarded, so whatever reached
			// the upstream is already recorded.
			ups = e.upstream.since(um)
		}
		cans = e.canaryHits(cm)
		unlock()
		jd = judge(c.Expect, res, ups, cs, e.r.Target)
		if c.Expect.Within != 0 {
			jd = e.judgeTimed(c.Expect, &c.Token, res, elapsed, jd, st)
		}
		if jd.ok() || c.Poll == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(every):
		case <-ctx.Done():
		}
	}
	if c.Poll != nil && !st.revoked.IsZero() && jd.ok() {
		st.figures["revocation_delay_ms"] = float64(time.Since(st.revoked).Milliseconds())
	}
	if c.Expect.Record != "" {
		st.figures[c.Expect.Record] = float64(res.status)
	}
	if c.SaveSession != "" && res.session != "" {
		st.sessions[c.SaveSession] = res.session
	}
	if res.echoed {
		jd.violations = append(jd.violations, violation{sev: SHOULD, msg: "the response body repeats the token (RFC 9700 section 4.3: tokens must not leak through error messages)"})
	}
	evd := Evidence{Step: name, Request: &res.req, Response: &res.resp, Expected: jd.expected, Verdict: jd.verdict(), Note: joinNotes(certNote, jd.note)}
	if len(ups) > 0 {
		evd.Upstream = upstreamEvidence(ups, cs.token)
	}
	if len(cans) > 0 {
		st.viol = append(st.viol, violation{sev: SHOULD, msg: fmt.Sprintf("the target fetched the canary URL named in the token header (%s %s): it follows attacker-supplied key locations", cans[0].method, cans[0].path)})
		evd.Note = strings.TrimSpace(evd.Note + " The canary listener received a request.")
	}
	st.ev = append(st.ev, evd)
	for _, v := range jd.violations {
		st.viol = append(st.viol, violation{sev: v.sev, msg: name + ": " + v.msg})
	}
	if jd.err != "" {
		st.errs = append(st.errs, name+": "+jd.err)
	}
}

// judgement is the outcome of one call against its expectation.
type judgement struct {
	expected   string
	violations []violation
	err        string
	note       string
}

func (j judgement) ok() bool { return len(j.violations) == 0 && j.err == "" }

func (j judgement) verdict() string {
	switch {
	case j.err != "":
		return "error"
	case len(j.violations) > 0:
		return "mismatch"
	}
	return "ok"
}

func judge(x Expect, r callResult, ups []recorded, cs callSpec, t *Target) judgement {
	var j judgement
	bad := func(sev Severity, format string, a ...any) {
		if x.Severity != "" && sev == "" {
			sev = x.Severity
		}
		j.violations = append(j.violations, violation{sev: sev, msg: fmt.Sprintf(format, a...)})
	}
	if x.Outcome == "record" {
		j.expected = "any answer (recorded)"
		if r.err != nil {
			j.note = "no answer: " + r.err.Error()
		}
		return j
	}
	if r.err != nil && x.Outcome == "reject" && cs.cert == "none" && tlsCertRequired(r.err) {
		// A target whose handshake requires a client certificate refuses
		// the call before any HTTP: a rejection nothing can get through.
		j.expected = "a rejection"
		j.note = "refused at the TLS handshake: " + r.err.Error()
		return j
	}
	if r.err != nil {
		j.err = "no answer: " + r.err.Error()
		return j
	}
	if r.status >= 500 {
		j.err = fmt.Sprintf("the target answered %d: a server error is never a judgement", r.status)
		return j
	}
	reached := t.Kind == "gateway" && len(ups) > 0
	// RFC 9449 section 7.1: a DPoP request, or a DPoP-bound token, may be
	// refused with a DPoP challenge carrying invalid_token,
	// invalid_dpop_proof or use_dpop_nonce.
	dpop := strings.EqualFold(cs.scheme, "DPoP") || dpopBound(cs.ref)
	wantScheme, wantError := "Bearer", "invalid_token"
	if dpop {
		wantScheme, wantError = "DPoP|Bearer", "invalid_token|invalid_dpop_proof|use_dpop_nonce"
	}
	switch x.Outcome {
	case "accept":
		j.expected = "2xx"
		if t.Kind == "gateway" {
			j.expected += ", and the request reaches the upstream"
		}
		if r.status < 200 || r.status > 299 {
			bad("", "a valid request was refused with %d", r.status)
			return j
		}
		if t.Kind == "gateway" && !reached {
			bad("", "the gateway answered %d but nothing reached the upstream", r.status)
		}
	case "reject":
		statuses := x.Status
		if len(statuses) == 0 {
			statuses = []int{401}
		}
		j.expected = fmt.Sprintf("%v with WWW-Authenticate %s error=%q", statuses, wantScheme, wantError)
		if t.Kind == "gateway" {
			j.expected += ", nothing reaching the upstream"
		}
		if r.status >= 200 && r.status <= 299 {
			bad("", "accepted (%d)", r.status)
			if reached {
				j.note = "the request reached the upstream"
			}
			return j
		}
		if reached {
			bad("", "rejected with %d, but the request still reached the upstream", r.status)
		}
		if !slices.Contains(statuses, r.status) {
			j.err = fmt.Sprintf("answered %d, which is neither acceptance nor the expected rejection %v", r.status, statuses)
			return j
		}
		if ch := x.Challenge; ch != nil || r.status == 401 {
			want := Challenge{Scheme: wantScheme, Error: wantError}
			if ch != nil {
				want = *ch
				if want.Scheme == "" {
					want.Scheme = wantScheme
				}
			}
			if msg := checkChallenge(r.header, want); msg != "" {
				sev := want.Severity
				if sev == "" {
					sev = SHOULD
				}
				bad(sev, "rejected, but %s", msg)
			}
		}
	case "insufficient_scope":
		j.expected = "403 with WWW-Authenticate Bearer error=\"insufficient_scope\" scope=…"
		if r.status >= 200 && r.status <= 299 {
			bad("", "a call without the required scope was accepted (%d)", r.status)
			return j
		}
		if reached {
			bad("", "refused with %d, but the request still reached the upstream", r.status)
		}
		switch r.status {
		case 403:
			if msg := checkChallenge(r.header, Challenge{Scheme: wantScheme, Error: "insufficient_scope", Param: "scope"}); msg != "" {
				bad(SHOULD, "refused with 403, but %s", msg)
			}
		case 401:
			bad(SHOULD, "refused with 401 instead of 403 insufficient_scope (RFC 6750 section 3.1)")
		default:
			j.err = fmt.Sprintf("answered %d to a call lacking a scope", r.status)
		}
	}
	if u := x.Upstream; u != nil && t.Kind == "gateway" {
		if u.Received != nil && *u.Received != reached {
			if *u.Received {
				bad("", "nothing reached the upstream")
			} else {
				bad("", "the request reached the upstream")
			}
		}
		if reached && (u.NotPassthrough || u.Audience != "") {
			for _, up := range ups {
				tok := bearerToken(up.auth)
				if u.NotPassthrough && tok != "" && tok == cs.token {
					bad("", "the gateway passed the caller's token through to the upstream")
					break
				}
				if u.NotPassthrough && tok == "" {
					j.note = "the upstream received no token"
				}
				if want := u.Audience; want != "" && tok != "" && tok != cs.token {
					if want == "${upstream_audience}" {
						want = t.upstreamAudience()
					}
					c := claimsOf(tok)
					if !audContains(c["aud"], want) {
						bad(SHOULD, "the upstream token's aud is %v, not the upstream %s", c["aud"], want)
					}
				}
			}
		}
	}
	return j
}

func audContains(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, _ := x.(string); s == want {
				return true
			}
		}
	}
	return false
}

// checkChallenge returns what is wrong with the WWW-Authenticate header,
// or "".
func checkChallenge(h http.Header, want Challenge) string {
	vals := h.Values("WWW-Authenticate")
	if len(vals) == 0 {
		return "no WWW-Authenticate header (RFC 6750 section 3)"
	}
	all := strings.Join(vals, ", ")
	schemes := strings.Split(want.Scheme, "|")
	errs := strings.Split(want.Error, "|")
	for _, v := range vals {
		scheme, params := parseChallenge(v)
		if !slices.ContainsFunc(schemes, func(s string) bool { return strings.EqualFold(s, scheme) }) {
			continue
		}
		if want.Error != "" && !slices.Contains(errs, params["error"]) {
			if params["error"] == "" {
				return fmt.Sprintf("the %s challenge has no error=%q (RFC 6750 section 3.1): %s", scheme, want.Error, all)
			}
			return fmt.Sprintf("the %s challenge says error=%q, want %q: %s", scheme, params["error"], want.Error, all)
		}
		if want.Param != "" && params[want.Param] == "" {
			return fmt.Sprintf("the %s challenge has no %s parameter: %s", scheme, want.Param, all)
		}
		return ""
	}
	return fmt.Sprintf("no %s challenge in WWW-Authenticate: %s", want.Scheme, all)
}

// parseChallenge splits `Scheme k="v", k2=v2`.
func parseChallenge(v string) (string, map[string]string) {
	v = strings.TrimSpace(v)
	scheme, rest, _ := strings.Cut(v, " ")
	params := map[string]string{}
	for len(rest) > 0 {
		rest = strings.TrimLeft(rest, " ,")
		k, r, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.TrimSpace(k)
		r = strings.TrimLeft(r, " ")
		var val string
		if strings.HasPrefix(r, `"`) {
			r = r[1:]
			var b strings.Builder
			for i := 0; i < len(r); i++ {
				if r[i] == '\\' && i+1 < len(r) {
					i++
					b.WriteByte(r[i])
					continue
				}
				if r[i] == '"' {
					r = r[i+1:]
					break
				}
				b.WriteByte(r[i])
				if i == len(r)-1 {
					r = ""
				}
			}
			val = b.String()
		} else {
			val, r, _ = strings.Cut(r, ",")
			val = strings.TrimSpace(val)
		}
		params[strings.ToLower(k)] = val
		rest = r
	}
	return scheme, params
}

// checkMetadata reads the resource_metadata URL from the target's
// challenge to a call without a token, fetches the document and checks
// that it names this resource and the issuer the target trusts (RFC 9728
// sections 3.3 and 5.1).
func (e *env) checkMetadata(ctx context.Context, name string, m *MetadataStep, st *state) {
	defer e.exclusive()()
	st.ran++
	t := e.r.Target
	res := e.call.do(ctx, callSpec{})
	ev := Evidence{Step: name, Request: &res.req, Response: &res.resp, Verdict: "ok",
		Expected: "a 401 challenge with resource_metadata, whose document has resource = " + t.Audience + " and the issuer in authorization_servers"}
	defer func() { st.ev = append(st.ev, ev) }()
	if res.err != nil {
		st.errs = append(st.errs, name+": no answer: "+res.err.Error())
		ev.Verdict = "error"
		return
	}
	var u string
	for _, v := range res.header.Values("WWW-Authenticate") {
		if _, p := parseChallenge(v); p["resource_metadata"] != "" {
			u = p["resource_metadata"]
		}
	}
	if u == "" {
		st.viol = append(st.viol, violation{msg: name + ": the 401 challenge names no resource_metadata URL (RFC 9728 section 5.1)"})
		ev.Verdict = "mismatch"
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		st.viol = append(st.viol, violation{msg: name + ": resource_metadata is not a URL: " + u})
		ev.Verdict = "mismatch"
		return
	}
	resp, err := e.call.client("").Do(req)
	if err != nil {
		st.errs = append(st.errs, name+": fetching "+u+": "+err.Error())
		ev.Verdict = "error"
		return
	}
	defer resp.Body.Close()
	var md map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&md) != nil {
		st.viol = append(st.viol, violation{msg: fmt.Sprintf("%s: %s answered %d without a JSON document", name, u, resp.StatusCode)})
		ev.Verdict = "mismatch"
		return
	}
	ev.Note = "fetched " + u
	if md["resource"] != t.Audience {
		st.viol = append(st.viol, violation{msg: fmt.Sprintf("%s: the metadata's resource is %v, not %s (RFC 9728 section 3.3)", name, md["resource"], t.Audience)})
		ev.Verdict = "mismatch"
	}
	iss := e.r.IdP.Issuer(t.Tenant)
	if as, _ := md["authorization_servers"].([]any); !slices.Contains(as, any(iss)) {
		st.viol = append(st.viol, violation{msg: fmt.Sprintf("%s: authorization_servers %v does not name the issuer %s", name, md["authorization_servers"], iss)})
		ev.Verdict = "mismatch"
	}
	for _, f := range m.Fields {
		if _, ok := md[f]; !ok {
			st.viol = append(st.viol, violation{sev: SHOULD, msg: name + ": the metadata has no " + f})
			ev.Verdict = "mismatch"
		}
	}
}

// resolveCert settles the client certificate of a call (cs.cert) and
// describes it for the evidence. ok is false when the call cannot be made
// as written: note then says why (an error), or is empty when the step
// does not apply (a certificate asked of a plain-HTTP target).
func (e *env) resolveCert(cs *callSpec) (note string, ok bool) {
	explicit := cs.cert != ""
	if !explicit {
		cs.cert = e.call.defaultCert(cs.ref)
	}
	if !strings.HasPrefix(strings.ToLower(e.r.Target.URL), "https:") {
		if explicit && cs.cert != "none" {
			return "", false
		}
		cs.cert = "none"
		return "", true
	}
	switch {
	case cs.cert == "none" && !explicit:
		return "", true
	case cs.cert == "none":
		return "no TLS client certificate", true
	case e.call.certs == nil:
		return errNoClientCA.Error(), false
	case cs.cert == "bound":
		return "TLS client certificate: the bound one (x5t#S256 " + e.call.certX5T + ")", true
	}
	return "TLS client certificate: another one of the same CA", true
}

// joinNotes joins the non-empty notes with "; ".
func joinNotes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

// dpopBound reports whether a token carries cnf.jkt.
func dpopBound(ref *TokenRef) bool {
	if ref == nil {
		return false
	}
	cnf, _ := ref.Claims["cnf"].(map[string]any)
	return cnf["jkt"] != nil
}

// tlsCertRequired reports whether a call failed because the server's TLS
// handshake wanted a client certificate (alerts certificate_required or
// bad_certificate). crypto/tls does not export the alert type of a
// received alert, so its text is matched.
func tlsCertRequired(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "tls: certificate required") || strings.Contains(msg, "tls: bad certificate")
}
