package refagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Bounds of the authorization logic around one request to a server.
const (
	maxAuthRetries    = 2  // re-authorizations or refreshes per call
	flawForeverTries  = 50 // retry-401-forever: attempts with the same token
	maxRequestBody    = 16 << 20
	maxDiscardedBytes = 64 << 10
)

// errStopped is returned for any request once the task is over and the
// agent has revoked its grants.
var errStopped = errors.New("refagent: the task is over and the grants are revoked; no further requests")

// serverConn is one MCP server: the agent's authorization state for it
// (its own resource, authorization server, token) and the http.RoundTripper
// through which the MCP SDK's client reaches it. Tokens are per server:
// what was obtained for this server is attached to requests to this
// server only, and a server that never challenges gets no token at all.
type serverConn struct {
	a   *agent
	srv Server

	// mu serializes the requests to the server, and with them the
	// authorization steps a request may set off.
	mu sync.Mutex
	// From the first 401: the resource (PRM resource), its authorization
	// server, the client there, the scopes the PRM lists, whether to use
	// DPoP.
	resource  string
	as        *authServer
	client    *clientCreds
	prmScopes []string
	useDPoP   bool
	// refused, once set, ends the use of this server.
	refused error

	tok        *token
	firstRT    string   // the first refresh token of the current grant
	retiredRTs []string // refresh tokens of replaced grants, revoked at the end
	rejectedAT map[string]bool
	refusedRT  map[string]bool
	rsNonce    string // the server's last DPoP-Nonce

	session *mcp.ClientSession
	tools   []*mcp.Tool
}

func newServerConn(a *agent, srv Server) *serverConn {
	return &serverConn{a: a, srv: srv, rejectedAT: map[string]bool{}, refusedRT: map[string]bool{}}
}

// RoundTrip sends one request of the MCP client, authorizing as the MCP
// authorization spec says: on 401, discover (RFC 9728, RFC 8414) and
// obtain a token for this server's resource; on 401 invalid_token, refresh
// or re-authorize and retry, at most twice per call; on 403
// insufficient_scope, re-authorize with the union of scopes, once.
func (s *serverConn) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.a
	if a.isStopped() {
		if !a.takeAfterRevoke() {
			return nil, errStopped
		}
		a.log.printf("flaw %s: one more request to %s with the access token of before the revocation", FlawUseAfterRevoke, s.srv.Name)
		return a.base.RoundTrip(s.prepare(req, body, s.tok))
	}
	if s.refused != nil {
		return nil, s.refused
	}
	ctx := req.Context()
	if s.tok != nil && !a.flaws.On(FlawNoProactiveRefresh) && s.tok.refreshDue(time.Now()) {
		if err := s.renew(ctx, "the access token expires soon"); err != nil {
			return nil, s.fail(err)
		}
	}
	retries, sameToken := 0, 0
	nonceRetried, steppedUp := false, false
	forever := a.flaws.On(FlawRetry401Forever)
	for {
		if s.tok != nil && s.rejectedAT[s.tok.access] && !forever {
			// An earlier call's token was rejected and could not be
			// replaced then: never present it again, renew first.
			if retries >= maxAuthRetries {
				return nil, fmt.Errorf("server %s: no usable access token after %d attempts", s.srv.Name, retries)
			}
			retries++
			if err := s.renew(ctx, "the server rejected the access token"); err != nil {
				return nil, s.fail(err)
			}
			continue
		}
		tok := s.tok
		if tok == nil && a.flaws.On(FlawOneTokenForAll) {
			tok = a.firstToken()
		}
		resp, err := a.base.RoundTrip(s.prepare(req, body, tok))
		if err != nil {
			return nil, err
		}
		if n := resp.Header.Get("DPoP-Nonce"); n != "" {
			s.rsNonce = n
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			chs := challenges(resp)
			if tok != nil && tok.dpop && param(chs, "error") == "use_dpop_nonce" && !nonceRetried && resp.Header.Get("DPoP-Nonce") != "" {
				nonceRetried = true
				discard(resp)
				continue
			}
			if tok != nil && tok == s.tok {
				s.rejectedAT[tok.access] = true
				a.log.printf("server %s: access token rejected (%s)", s.srv.Name, firstNonEmpty(param(chs, "error"), "401"))
			}
			if s.tok != nil && forever {
				if sameToken++; sameToken < flawForeverTries {
					discard(resp)
					continue
				}
				return nil, s.giveUp(resp, chs)
			}
			if retries >= maxAuthRetries {
				a.log.printf("server %s: still 401 after %d authorization attempts; giving up on this call", s.srv.Name, retries)
				return nil, s.giveUp(resp, chs)
			}
			discard(resp)
			if s.tok == nil {
				retries++
				if err := s.authorize(ctx, chs); err != nil {
					return nil, s.fail(err)
				}
			}
			// else: the loop's top renews the rejected token.
			continue
		case http.StatusForbidden:
			chs := challenges(resp)
			if s.tok == nil || param(chs, "error") != "insufficient_scope" || steppedUp || retries >= maxAuthRetries {
				return nil, s.giveUp(resp, chs)
			}
			steppedUp = true
			retries++
			discard(resp)
			if err := s.stepUp(ctx, param(chs, "scope")); err != nil {
				return nil, s.fail(err)
			}
			continue
		}
		return resp, nil
	}
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// giveUp ends a call the server refused (401 or 403) with an error
// rather than the response: the MCP SDK treats an error from the HTTP
// client as a failed request and keeps the session, where a 401 or 403
// answer would break the connection for every later call.
func (s *serverConn) giveUp(resp *http.Response, chs []challenge) error {
	discard(resp)
	msg := fmt.Sprintf("server %s answered %d", s.srv.Name, resp.StatusCode)
	if e := param(chs, "error"); e != "" {
		msg += " " + e
	}
	if d := param(chs, "error_description"); d != "" {
		msg += ": " + d
	}
	return errors.New(msg)
}

// fail records a refusal, which ends the use of this server, and returns
// err.
func (s *serverConn) fail(err error) error {
	var r *refusal
	if errors.As(err, &r) {
		s.refused = err
		s.a.noteRefusal(s.srv.Name, err)
	}
	s.a.log.printf("server %s: %v", s.srv.Name, err)
	return fmt.Errorf("server %s: %w", s.srv.Name, err)
}

// prepare clones req for one attempt, with the token (if any) in the
// Authorization header (and a DPoP proof), nowhere else.
func (s *serverConn) prepare(req *http.Request, body []byte, tok *token) *http.Request {
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if len(body) == 0 && (req.Body == nil || req.Body == http.NoBody) {
		r.Body, r.GetBody = http.NoBody, nil
	}
	r.Header.Del("Authorization")
	r.Header.Del("DPoP")
	if tok == nil || !sameOrigin(r.URL, s.srv.URL) {
		return r
	}
	if tok.dpop {
		proof, err := s.a.dpopProof(r.Method, r.URL.String(), s.rsNonce, tok.access)
		if err != nil {
			s.a.log.printf("server %s: %v", s.srv.Name, err)
			return r
		}
		r.Header.Set("Authorization", "DPoP "+tok.access)
		r.Header.Set("DPoP", proof)
	} else {
		r.Header.Set("Authorization", "Bearer "+tok.access)
	}
	if s.a.flaws.On(FlawTokenInQuery) {
		q := r.URL.Query()
		q.Set("access_token", tok.access)
		u := *r.URL
		u.RawQuery = q.Encode()
		r.URL = &u
	}
	return r
}

// authorize is the first authorization for this server, after its 401.
func (s *serverConn) authorize(ctx context.Context, chs []challenge) error {
	a := s.a
	if s.as == nil {
		p, err := a.fetchPRM(ctx, s.srv.URL, chs)
		if err != nil {
			return err
		}
		if len(p.AuthorizationServers) == 0 {
			return fmt.Errorf("protected resource metadata of %s lists no authorization_servers", s.srv.URL)
		}
		as, err := a.authServerFor(ctx, p.AuthorizationServers[0])
		if err != nil {
			return err
		}
		s.resource, s.as, s.prmScopes = p.Resource, as, p.ScopesSupported
		dpopWanted := p.DPoPBoundAccessTokensRequired || (len(as.meta.DPoPSigningAlgValuesSupported) > 0 && hasScheme(chs, "dpop"))
		s.useDPoP = dpopWanted && !a.flaws.On(FlawIgnoreDPoPRequirement)
		if dpopWanted && !s.useDPoP {
			a.log.printf("flaw %s: using Bearer tokens at %s, which wants DPoP", FlawIgnoreDPoPRequirement, s.srv.Name)
		}
	}
	tok, err := s.obtain(ctx, s.scopesFor(param(chs, "scope"), nil))
	if err != nil {
		return err
	}
	s.setToken(tok, true)
	return nil
}

// scopesFor chooses the scopes of an authorization: the challenge's, else
// the PRM's, joined to those already granted, plus offline_access for the
// authorization code grant when the server supports it.
func (s *serverConn) scopesFor(challenged string, granted []string) []string {
	a := s.a
	if a.flaws.On(FlawGreedyScopes) && len(s.as.meta.ScopesSupported) > 0 {
		return slices.Clone(s.as.meta.ScopesSupported)
	}
	want := strings.Fields(challenged)
	if len(want) == 0 {
		want = s.prmScopes
	}
	want = union(granted, want)
	if s.exchanging() {
		// Exchange only narrows (RFC 8693 section 2.1): ask for what both
		// the server wants and the user's token holds, when that can be
		// read from the token.
		if held := a.userTokenScopes(); len(held) > 0 {
			var both []string
			for _, sc := range want {
				if slices.Contains(held, sc) {
					both = append(both, sc)
				}
			}
			if len(both) > 0 {
				want = both
			}
		}
	}
	if a.cfg.Grant == GrantAuthorizationCode && !s.exchanging() && slices.Contains(s.as.meta.ScopesSupported, scopeOfflineAccess) {
		want = union(want, []string{scopeOfflineAccess})
	}
	return want
}

// exchanging reports whether this server's tokens come from token
// exchange: with a user token, at AGENTSSO_ISSUER only (another server
// never sees the user's token).
func (s *serverConn) exchanging() bool {
	return s.a.cfg.UserToken != "" && s.a.isHome(s.as.issuer)
}

// obtain gets a new token for this server's resource with scopes.
func (s *serverConn) obtain(ctx context.Context, scopes []string) (*token, error) {
	a := s.a
	if s.exchanging() && a.flaws.On(FlawPassUserToken) {
		a.log.printf("flaw %s: sending the user's token to %s", FlawPassUserToken, s.srv.Name)
		return &token{access: a.cfg.UserToken, issued: time.Now(), scopes: scopes}, nil
	}
	c, err := a.clientAt(ctx, s.as)
	if err != nil {
		return nil, err
	}
	s.client = c
	if s.useDPoP {
		if err := a.ensureDPoPKey(); err != nil {
			return nil, err
		}
	}
	var tok *token
	switch {
	case s.exchanging():
		tok, err = a.exchange(ctx, s.as, c, s.resourceParam(), scopes, s.useDPoP)
	case a.cfg.Grant == GrantClientCredentials:
		form := url.Values{"grant_type": {GrantClientCredentials}}
		if len(scopes) > 0 {
			form.Set("scope", strings.Join(scopes, " "))
		}
		if r := s.resourceParam(); r != "" {
			form.Set("resource", r)
		}
		tok, err = a.tokenRequest(ctx, s.as, c, form, s.useDPoP)
	default:
		tok, err = a.authorizationCode(ctx, s.as, c, s.resource, scopes, s.useDPoP)
	}
	if err != nil {
		return nil, err
	}
	if s.useDPoP && !tok.dpop {
		a.log.printf("server %s: the authorization server issued a %s token despite the DPoP proof", s.srv.Name, "Bearer")
	}
	a.log.printf("server %s: obtained an access token (scope %q, expires in %s)", s.srv.Name, strings.Join(tok.scopes, " "), tok.lifetime().Round(time.Second))
	return tok, nil
}

// resourceParam is the RFC 8707 resource to send, "" with no-resource.
func (s *serverConn) resourceParam() string {
	if s.a.flaws.On(FlawNoResource) {
		return ""
	}
	return s.resource
}

// setToken installs a token; newGrant starts a new refresh token lineage.
func (s *serverConn) setToken(t *token, newGrant bool) {
	if newGrant {
		if s.tok != nil && s.tok.refresh != "" && !s.refusedRT[s.tok.refresh] && s.tok.refresh != t.refresh {
			s.retiredRTs = append(s.retiredRTs, s.tok.refresh)
		}
		s.firstRT = t.refresh
	}
	if s.firstRT == "" {
		s.firstRT = t.refresh
	}
	s.tok = t
	s.a.noteToken(t)
}

// renew replaces the current token: by refresh when there is a refresh
// token the server has not refused, else by a new authorization with the
// scopes granted so far.
func (s *serverConn) renew(ctx context.Context, why string) error {
	a := s.a
	old := s.tok
	rt := old.refresh
	if a.flaws.On(FlawReuseFirstRT) && s.firstRT != "" {
		rt = s.firstRT
	}
	if rt != "" && !s.refusedRT[rt] && s.client != nil {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if r := s.resourceParam(); r != "" {
			form.Set("resource", r)
		}
		tok, err := a.tokenRequest(ctx, s.as, s.client, form, s.useDPoP)
		if err == nil {
			if tok.refresh == "" {
				tok.refresh = old.refresh // not rotated: the old one stays valid
			}
			if len(tok.scopes) == 0 {
				tok.scopes = old.scopes
			}
			a.log.printf("server %s: refreshed the access token: %s", s.srv.Name, why)
			s.setToken(tok, false)
			return nil
		}
		a.log.printf("server %s: refresh refused (%v); authorizing again", s.srv.Name, err)
		s.refusedRT[rt] = true
	}
	tok, err := s.obtain(ctx, s.scopesFor("", old.scopes))
	if err != nil {
		return err
	}
	s.setToken(tok, true)
	return nil
}

// stepUp re-authorizes with the scopes granted so far and those the 403
// challenge asked for.
func (s *serverConn) stepUp(ctx context.Context, challenged string) error {
	scopes := s.scopesFor(challenged, s.tok.scopes)
	s.a.log.printf("server %s: insufficient_scope; authorizing again for %q", s.srv.Name, strings.Join(scopes, " "))
	tok, err := s.obtain(ctx, scopes)
	if err != nil {
		return err
	}
	s.setToken(tok, true)
	return nil
}

// liveRefreshTokens are the refresh tokens to revoke at the end.
func (s *serverConn) liveRefreshTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if s.tok != nil && s.tok.refresh != "" && !s.refusedRT[s.tok.refresh] {
		out = append(out, s.tok.refresh)
	}
	for _, rt := range s.retiredRTs {
		if !s.refusedRT[rt] && !slices.Contains(out, rt) {
			out = append(out, rt)
		}
	}
	return out
}

func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, maxRequestBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRequestBody {
		return nil, fmt.Errorf("refagent: request body over %d bytes", maxRequestBody)
	}
	return b, nil
}

func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDiscardedBytes))
	resp.Body.Close()
}

// sameOrigin reports whether u has the scheme and host of base.
func sameOrigin(u *url.URL, base string) bool {
	b, err := url.Parse(base)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, b.Scheme) && strings.EqualFold(u.Host, b.Host)
}
