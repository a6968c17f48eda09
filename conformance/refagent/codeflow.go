package refagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Bounds of the browser step.
const (
	browserTimeout  = 2 * time.Minute // the user signs in and consents
	callbackGrace   = 5 * time.Second // after the shim answered, for the redirect to arrive
	maxShimResponse = 64 << 10
)

// redirectListener receives the authorization response at
// AGENTSSO_REDIRECT_URI.
type redirectListener struct {
	srv  *http.Server
	path string
	ch   chan url.Values
}

func startRedirectListener(redirectURI string) (*redirectListener, error) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_REDIRECT_URI: %v", err)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("AGENTSSO_REDIRECT_URI: listen on %s: %v", u.Host, err)
	}
	rl := &redirectListener{path: u.Path, ch: make(chan url.Values, 1)}
	if rl.path == "" {
		rl.path = "/"
	}
	rl.srv = &http.Server{
		Handler:           http.HandlerFunc(rl.serve),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go rl.srv.Serve(ln) //nolint:errcheck // ends with Close
	return rl, nil
}

func (rl *redirectListener) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != rl.path {
		http.NotFound(w, r)
		return
	}
	select {
	case rl.ch <- r.URL.Query():
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "agentsso reference agent: authorization response received; you can close this window.\n")
	default:
		http.Error(w, "no authorization response is awaited", http.StatusConflict)
	}
}

// drain forgets a response nobody waited for.
func (rl *redirectListener) drain() {
	for {
		select {
		case <-rl.ch:
		default:
			return
		}
	}
}

func (rl *redirectListener) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return rl.srv.Shutdown(ctx)
}

// browse has the user visit authURL (the browser shim, or $BROWSER) and
// returns the query of the redirect to AGENTSSO_REDIRECT_URI.
func (a *agent) browse(ctx context.Context, authURL string) (url.Values, error) {
	a.browserMu.Lock()
	defer a.browserMu.Unlock()
	a.mu.Lock()
	if a.redirect == nil {
		rl, err := startRedirectListener(a.cfg.RedirectURI)
		if err != nil {
			a.mu.Unlock()
			return nil, err
		}
		a.redirect = rl
	}
	rl := a.redirect
	a.mu.Unlock()
	rl.drain()

	ctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	shimDone := make(chan shimResult, 1)
	if a.cfg.BrowserURL != "" {
		go func() { shimDone <- a.callShim(ctx, authURL) }()
	} else {
		cmd := exec.CommandContext(ctx, a.cfg.BrowserCmd, authURL)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("BROWSER: %v", err)
		}
		go func() { _ = cmd.Wait() }() // a browser may stay open; only the redirect counts
	}
	var grace <-chan time.Time
	var shim shimResult
	for {
		select {
		case q := <-rl.ch:
			return q, nil
		case shim = <-shimDone:
			if shim.err != nil {
				return nil, shim.err
			}
			grace = time.After(callbackGrace)
		case <-grace:
			// The shim says where it was redirected; use that if it is our
			// redirect URI and the delivery did not reach us.
			if q, ok := a.sameRedirect(shim.redirect); ok {
				return q, nil
			}
			return nil, fmt.Errorf("browser shim answered status %d but no authorization response reached %s", shim.status, a.cfg.RedirectURI)
		case <-ctx.Done():
			return nil, fmt.Errorf("no authorization response at %s: %w", a.cfg.RedirectURI, ctx.Err())
		}
	}
}

type shimResult struct {
	status   int
	redirect string
	err      error
}

// callShim asks the browser shim to visit authURL:
// GET {AGENTSSO_BROWSER_URL}?url={authURL}.
func (a *agent) callShim(ctx context.Context, authURL string) shimResult {
	u, err := url.Parse(a.cfg.BrowserURL)
	if err != nil {
		return shimResult{err: fmt.Errorf("AGENTSSO_BROWSER_URL: %v", err)}
	}
	q := u.Query()
	q.Set("url", authURL)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return shimResult{err: err}
	}
	resp, err := a.browserc.Do(req)
	if err != nil {
		return shimResult{err: fmt.Errorf("browser shim: %w", err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxShimResponse))
	var out struct {
		Redirect string `json:"redirect"`
	}
	_ = json.Unmarshal(b, &out)
	return shimResult{status: resp.StatusCode, redirect: out.Redirect}
}

// sameRedirect returns the query of r when it is AGENTSSO_REDIRECT_URI.
func (a *agent) sameRedirect(r string) (url.Values, bool) {
	if r == "" {
		return nil, false
	}
	got, err := url.Parse(r)
	if err != nil {
		return nil, false
	}
	want, err := url.Parse(a.cfg.RedirectURI)
	if err != nil {
		return nil, false
	}
	if got.Scheme != want.Scheme || got.Host != want.Host || got.Path != want.Path {
		return nil, false
	}
	return got.Query(), true
}

// authorizationCode runs the authorization code grant with PKCE at as
// for resource and scopes, and returns the token.
func (a *agent) authorizationCode(ctx context.Context, as *authServer, c *clientCreds, resource string, scopes []string, useDPoP bool) (*token, error) {
	m := as.meta
	if !slices.Contains(m.CodeChallengeMethodsSupported, "S256") {
		if !a.flaws.On(FlawPKCEUnadvertisedOK) {
			return nil, &refusal{fmt.Sprintf("authorization server %s does not advertise PKCE S256 (code_challenge_methods_supported %v): refusing to authorize (MCP authorization: clients MUST refuse)", as.issuer, m.CodeChallengeMethodsSupported)}
		}
		a.log.printf("flaw %s: authorizing at %s without S256 advertised", FlawPKCEUnadvertisedOK, as.issuer)
	}
	au, err := url.Parse(m.AuthorizationEndpoint)
	if err != nil || m.AuthorizationEndpoint == "" {
		return nil, fmt.Errorf("authorization server %s: authorization_endpoint %q is not a URL", as.issuer, m.AuthorizationEndpoint)
	}
	if (au.Scheme != "http" && au.Scheme != "https") || au.Host == "" {
		if !a.flaws.On(FlawOpenAnyScheme) {
			return nil, &refusal{fmt.Sprintf("authorization server %s: authorization_endpoint has scheme %q: only http and https URLs are opened in the browser", as.issuer, au.Scheme)}
		}
		a.log.printf("flaw %s: opening a %s: authorization endpoint", FlawOpenAnyScheme, au.Scheme)
	}

	conf := &oauth2.Config{
		ClientID:    c.id,
		Endpoint:    oauth2.Endpoint{AuthURL: m.AuthorizationEndpoint, TokenURL: m.TokenEndpoint},
		RedirectURL: a.cfg.RedirectURI,
		Scopes:      scopes,
	}
	oidcFlow := slices.Contains(scopes, scopeOpenID)
	plain := a.flaws.On(FlawPKCEPlain)
	var q url.Values
	var verifier, nonce, state string
	for {
		verifier, state = oauth2.GenerateVerifier(), randomString(24)
		var opts []oauth2.AuthCodeOption
		if plain {
			opts = append(opts, oauth2.SetAuthURLParam("code_challenge", verifier), oauth2.SetAuthURLParam("code_challenge_method", "plain"))
		} else {
			opts = append(opts, oauth2.S256ChallengeOption(verifier))
		}
		if !a.flaws.On(FlawNoResource) {
			opts = append(opts, oauth2.SetAuthURLParam("resource", resource))
		}
		if oidcFlow {
			nonce = randomString(24)
			opts = append(opts, oauth2.SetAuthURLParam("nonce", nonce))
		}
		var err error
		q, err = a.browse(ctx, conf.AuthCodeURL(state, opts...))
		if err != nil {
			return nil, err
		}
		if e := q.Get("error"); e != "" {
			if plain {
				// The flawed client falls back to S256 when the server
				// refuses plain, as real ones do, so its task still runs.
				a.log.printf("flaw %s: %s refused plain PKCE (%s); trying S256", FlawPKCEPlain, as.issuer, e)
				plain = false
				continue
			}
			return nil, fmt.Errorf("authorization refused by %s: %s %s", as.issuer, e, q.Get("error_description"))
		}
		break
	}
	if q.Get("state") != state {
		if !a.flaws.On(FlawNoStateCheck) {
			return nil, &refusal{"the authorization response's state does not match the one sent: not redeeming the code (RFC 9700 section 4.7)"}
		}
		a.log.printf("flaw %s: redeeming a code that came with the wrong state", FlawNoStateCheck)
	}
	switch iss, has := q.Get("iss"), q.Has("iss"); {
	case has && iss != as.issuer, !has && m.AuthorizationResponseIssParameterSupported:
		if !a.flaws.On(FlawIgnoreIss) {
			if has {
				return nil, &refusal{fmt.Sprintf("the authorization response's iss %q is not the issuer %q (RFC 9207): not redeeming the code", iss, as.issuer)}
			}
			return nil, &refusal{fmt.Sprintf("the authorization response has no iss, though %s advertises authorization_response_iss_parameter_supported (RFC 9207): not redeeming the code", as.issuer)}
		}
		a.log.printf("flaw %s: redeeming a code despite its iss", FlawIgnoreIss)
	}
	code := q.Get("code")
	if code == "" {
		return nil, errors.New("the authorization response has no code")
	}
	a.secrets.add(code, verifier)
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {a.cfg.RedirectURI},
		"code_verifier": {verifier},
	}
	if !a.flaws.On(FlawNoResource) {
		form.Set("resource", resource)
	}
	tok, err := a.tokenRequest(ctx, as, c, form, useDPoP)
	if err != nil {
		return nil, err
	}
	if len(tok.scopes) == 0 {
		tok.scopes = scopes
	}
	if oidcFlow {
		if err := a.verifyIDToken(ctx, as, c, tok.idToken, nonce); err != nil {
			if !a.flaws.On(FlawSkipIDTokenCheck) {
				return nil, &refusal{"ID token rejected: " + err.Error()}
			}
			a.log.printf("flaw %s: using an ID token that fails verification (%v)", FlawSkipIDTokenCheck, err)
		}
	}
	return tok, nil
}

// verifyIDToken checks an ID token with go-oidc: signature against the
// issuer's JWKS, iss, aud (the client), exp, and the nonce sent.
func (a *agent) verifyIDToken(ctx context.Context, as *authServer, c *clientCreds, raw, nonce string) error {
	if raw == "" {
		return errors.New("openid was requested but the token response has no id_token")
	}
	if as.meta.JWKSURI == "" {
		return fmt.Errorf("authorization server %s has no jwks_uri", as.issuer)
	}
	algs := []string{}
	for _, alg := range as.meta.IDTokenSigningAlgValuesSupported {
		if alg != "none" && !strings.HasPrefix(alg, "HS") {
			algs = append(algs, alg)
		}
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	a.mu.Lock()
	ks := a.keySets[as.meta.JWKSURI]
	if ks == nil {
		ks = oidc.NewRemoteKeySet(oidc.ClientContext(a.runCtx, a.httpc), as.meta.JWKSURI)
		a.keySets[as.meta.JWKSURI] = ks
	}
	a.mu.Unlock()
	v := oidc.NewVerifier(as.issuer, ks, &oidc.Config{ClientID: c.id, SupportedSigningAlgs: algs})
	idt, err := v.Verify(oidc.ClientContext(ctx, a.httpc), raw)
	if err != nil {
		return err
	}
	if idt.Nonce != nonce {
		return errors.New("the ID token's nonce is not the one sent")
	}
	return nil
}
