package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ory/fosite"

	"github.com/agentsso/agentsso/emulator/audit"
)

// maxFormBytes bounds a request body on every form endpoint.
const maxFormBytes = 64 << 10

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	t := s.tenantHandler
	// Discovery at every place clients look (RFC 8414 section 3.1 puts the
	// well-known segment before the issuer's path; OIDC appends it).
	m.HandleFunc("GET /.well-known/openid-configuration/t/{tenant}", t("discovery", (*tenant).discovery))
	m.HandleFunc("GET /.well-known/oauth-authorization-server/t/{tenant}", t("discovery", (*tenant).discovery))
	m.HandleFunc("GET /t/{tenant}/.well-known/openid-configuration", t("discovery", (*tenant).discovery))
	m.HandleFunc("GET /t/{tenant}/.well-known/oauth-authorization-server", t("discovery", (*tenant).discovery))
	m.HandleFunc("GET /t/{tenant}/jwks", t("jwks", (*tenant).serveJWKS))
	m.HandleFunc("POST /t/{tenant}/token", t("token", (*tenant).token))
	m.HandleFunc("GET /t/{tenant}/authorize", t("authorize", (*tenant).authorize))
	m.HandleFunc("POST /t/{tenant}/authorize", t("authorize", (*tenant).authorize))
	m.HandleFunc("POST /t/{tenant}/introspect", t("introspect", (*tenant).introspect))
	m.HandleFunc("POST /t/{tenant}/revoke", t("revoke", (*tenant).revoke))
	m.HandleFunc("GET /t/{tenant}/userinfo", t("userinfo", (*tenant).userinfo))
	m.HandleFunc("POST /t/{tenant}/userinfo", t("userinfo", (*tenant).userinfo))
	m.HandleFunc("POST /t/{tenant}/register", t("register", (*tenant).register))
	m.HandleFunc("POST /t/{tenant}/device_authorization", t("device_authorization", (*tenant).deviceAuthorization)) // device.go: RFC 8628
	m.HandleFunc("GET /t/{tenant}/device", t("device", (*tenant).device))
	m.HandleFunc("POST /t/{tenant}/device", t("device", (*tenant).device))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "not_found", "No such endpoint. Tenants live under /t/{tenant}; discovery is at /t/{tenant}/.well-known/openid-configuration.")
	})
	s.mux = m
}

// ServeHTTP serves the public endpoints of every tenant.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// tenantHandler resolves the tenant, applies injected faults and hands
// over to the endpoint.
func (s *Server) tenantHandler(endpoint string, h func(*tenant, http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := s.tenant(r.PathValue("tenant"))
		if t == nil {
			writeJSONError(w, http.StatusNotFound, "not_found", "Unknown tenant "+strconv.Quote(r.PathValue("tenant"))+".")
			return
		}
		if t.faults.apply(endpoint, w, r) {
			t.event(r, audit.Event{Endpoint: endpoint, Decision: audit.DecisionError, Reason: "injected fault", Status: 0})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		h(t, w, r)
	}
}

// event writes an audit event for a request of this tenant. It is called
// before the response is written.
func (t *tenant) event(r *http.Request, e audit.Event) {
	e.Tenant = t.name
	e.Method = r.Method
	e.Source = r.RemoteAddr
	if e.Time.IsZero() {
		e.Time = t.clock.Now()
	}
	_, _ = t.srv.audit.Write(e)
}

// --- discovery and JWKS ---

// Metadata is the tenant's authorization server metadata (RFC 8414) and
// OpenID Provider metadata.
func (t *tenant) Metadata() map[string]any {
	iss := t.issuer()
	t.mu.RLock()
	cfg := t.cfg
	t.mu.RUnlock()
	scopes := slices.Concat([]string{"openid", "profile", "email", "offline_access"}, cfg.Scopes)
	md := map[string]any{
		"issuer":                                           iss,
		"authorization_endpoint":                           iss + "/authorize",
		"token_endpoint":                                   iss + "/token",
		"jwks_uri":                                         iss + "/jwks",
		"introspection_endpoint":                           iss + "/introspect",
		"revocation_endpoint":                              iss + "/revoke",
		"userinfo_endpoint":                                iss + "/userinfo",
		"scopes_supported":                                 scopes,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            []string{GrantAuthorizationCode, GrantClientCredentials, GrantRefreshToken, GrantTokenExchange},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "PS256", "ES256", "ES384"},
		"introspection_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"revocation_endpoint_auth_methods_supported":       []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{cfg.Alg},
		"claims_supported":                                 []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "name", "email", "client_id", "scope", "act", "cnf", "ctx"},
		"authorization_response_iss_parameter_supported":   true,
		"resource_indicators_supported":                    true,
		"client_id_metadata_document_supported":            cfg.Registration.ClientIDMetadataDocuments,
		"access_token_signing_alg_values_supported":        []string{cfg.Alg},
		"token_exchange_requested_token_types_supported":   []string{tokenTypeAccessToken},
		"agentsso_context_claim":                           "ctx",
		"agentsso_claim_conventions":                       "https://github.com/agentsso/agentsso/blob/main/docs/CLAIMS.md",
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  false,
		"claims_parameter_supported":                       false,
		"service_documentation":                            "https://github.com/agentsso/agentsso#readme",
		"ui_locales_supported":                             []string{"en"},
	}
	if cfg.Registration.Dynamic {
		md["registration_endpoint"] = iss + "/register"
	}
	md["dpop_signing_alg_values_supported"] = dpopAlgNames // RFC 9449 section 5.1
	t.mtlsMetadata(md)                                     // mtls.go: RFC 8705
	// device.go (RFC 8628), federation.go (RFC 7523)
	md["device_authorization_endpoint"] = iss + "/device_authorization"
	md["grant_types_supported"] = append(md["grant_types_supported"].([]string), GrantDeviceCode, GrantJWTBearer)
	return md
}

func (t *tenant) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, t.Metadata())
}

func (t *tenant) serveJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=60")
	_, _ = w.Write(t.jwks())
}

// --- token endpoint ---

func (t *tenant) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := t.provider()
	ev := audit.Event{Endpoint: "token"}
	if err := r.ParseForm(); err != nil {
		t.tokenError(w, r, &ev, fosite.ErrInvalidRequest.WithHint("The request body is not a valid form: "+err.Error()))
		return
	}
	ev.GrantType = r.PostForm.Get("grant_type")
	ev.ScopesRequested = strings.Fields(r.PostForm.Get("scope"))
	if id, _, ok := r.BasicAuth(); ok {
		ev.ClientID, _ = url.QueryUnescape(id)
	} else {
		ev.ClientID = r.PostForm.Get("client_id")
	}
	// RFC 8707: resource indicators become requested audiences. Token
	// exchange reads audience and resource itself.
	if ev.GrantType != GrantTokenExchange {
		if err := mergeResource(r.PostForm); err != nil {
			t.tokenError(w, r, &ev, err)
			return
		}
	} else if r.Header.Get("Authorization") == "" && r.PostForm.Get("client_id") == "" && r.PostForm.Get("client_assertion") == "" {
		// Token exchange requires client authentication; a request with
		// none is invalid_client (RFC 6749 section 5.2), where fosite
		// would answer invalid_request.
		t.tokenError(w, r, &ev, fosite.ErrInvalidClient.WithHint("Token exchange requires client authentication: use client_secret_basic, client_secret_post or private_key_jwt."))
		return
	}
	// RFC 9449: the DPoP proof and its nonce are checked before fosite
	// sees the request (dpop.go); replay and binding once the client is
	// authenticated.
	proof, err := t.tokenDPoP(r, ev.ClientID)
	if err != nil {
		t.dpopTokenError(w, r, &ev, proof, err)
		return
	}
	sess := NewSession()
	ar, err := p.NewAccessRequest(ctx, r, sess)
	if err != nil {
		t.tokenError(w, r, &ev, err)
		return
	}
	ev.ClientID = ar.GetClient().GetID()
	if err := t.bindDPoP(ar, proof); err != nil {
		t.dpopTokenError(w, r, &ev, proof, err)
		return
	}
	if err := t.grantDefaults(ar); err != nil {
		t.tokenError(w, r, &ev, err)
		return
	}
	if err := t.userGrantPolicy(ar); err != nil { // authorize.go
		t.tokenError(w, r, &ev, err)
		return
	}
	if err := t.bindToken(r, ar); err != nil { // context.go: context, mTLS binding, step-up
		t.tokenError(w, r, &ev, err)
		return
	}
	resp, err := p.NewAccessResponse(ctx, ar)
	if err != nil {
		t.tokenError(w, r, &ev, err)
		return
	}
	if ev.GrantType == GrantTokenExchange {
		resp.SetExtra("issued_token_type", tokenTypeAccessToken)
	}
	resp.SetTokenType("Bearer")
	if proof != nil {
		resp.SetTokenType("DPoP") // RFC 9449 section 5
		t.dpopAccepted(w, ar, proof)
	}
	// The code and refresh grants replace the session with the grant's.
	if s, ok := ar.GetSession().(*Session); ok && s.Issued != nil {
		sess = s
	}
	if c := sess.Issued; c != nil {
		ev.Sub, ev.Jti, ev.GrantID, ev.Aud = c.Subject, c.ID, c.GrantID, c.Audience
		ev.Act = c.Act.Chain()
	}
	ev.ScopesGranted = ar.GetGrantedScopes()
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusOK
	t.event(r, ev)
	p.WriteAccessResponse(ctx, w, ar, resp)
}

// grantDefaults grants what fosite leaves to the caller for
// client_credentials: the requested scopes (already checked against the
// client's), or the client's required scopes when none were asked for,
// and the requested audience, or the client's default.
func (t *tenant) grantDefaults(ar fosite.AccessRequester) error {
	if !ar.GetGrantTypes().ExactOne(GrantClientCredentials) {
		return nil
	}
	c, _ := ar.GetClient().(*client)
	if len(ar.GetRequestedScopes()) == 0 && c != nil {
		for _, s := range c.cfg.RequiredScopes {
			ar.GrantScope(s)
		}
	} else {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
	}
	aud := ar.GetRequestedAudience()
	if len(aud) == 0 && c != nil {
		aud = c.cfg.DefaultAudience
	}
	if len(aud) == 0 {
		return ErrInvalidTarget.WithHint("Name a resource or audience: the client has no default audience.")
	}
	for _, a := range aud {
		ar.GrantAudience(a)
	}
	return nil
}

// mergeResource validates RFC 8707 resource parameters (absolute URIs
// without a fragment) and adds them to the audience fosite reads.
func mergeResource(form url.Values) error {
	res := form["resource"]
	if len(res) == 0 {
		return nil
	}
	for _, v := range res {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return ErrInvalidTarget.WithHintf("The resource %q is not an absolute URI without a fragment (RFC 8707 section 2).", v)
		}
	}
	aud := fosite.GetAudiences(form)
	for _, v := range res {
		if !slices.Contains(aud, v) {
			aud = append(aud, v)
		}
	}
	form.Del("audience")
	form["audience"] = aud
	return nil
}

func (t *tenant) tokenError(w http.ResponseWriter, r *http.Request, ev *audit.Event, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	ev.Decision = audit.DecisionDeny
	if rfc.CodeField >= 500 {
		ev.Decision = audit.DecisionError
	}
	ev.Reason = rfc.ErrorField + ": " + rfc.GetDescription()
	ev.Status = rfc.CodeField
	t.event(r, *ev)
	t.provider().WriteAccessError(r.Context(), w, fosite.NewAccessRequest(NewSession()), err)
}

// --- introspection (RFC 7662) ---

// authenticateClient authenticates the calling client with fosite's
// client authentication (secret basic/post, private_key_jwt, none).
func (t *tenant) authenticateClient(ctx context.Context, r *http.Request) (*client, error) {
	if err := r.ParseForm(); err != nil {
		return nil, fosite.ErrInvalidRequest.WithHint("The request body is not a valid form.")
	}
	fc, err := t.provider().AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		return nil, err
	}
	c, _ := fc.(*client)
	if c == nil {
		return nil, fosite.ErrInvalidClient
	}
	return c, nil
}

// introspect answers RFC 7662 for access tokens of this tenant (JWTs,
// checked against the revocation lists) and for its refresh tokens.
func (t *tenant) introspect(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Endpoint: "introspect"}
	c, err := t.authenticateClient(r.Context(), r)
	if err != nil {
		t.formError(w, r, &ev, err)
		return
	}
	ev.ClientID = c.cfg.ID
	if !c.cfg.Introspect {
		t.formError(w, r, &ev, fosite.ErrUnauthorizedClient.WithHint("This client may not introspect tokens: set introspect: true in its configuration."))
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		t.formError(w, r, &ev, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	out, reason := t.introspection(r.Context(), tok, r.PostForm.Get("token_type_hint"))
	active, _ := out["active"].(bool)
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusOK
	if active {
		ev.Sub, _ = out["sub"].(string)
		ev.Jti, _ = out["jti"].(string)
		ev.GrantID, _ = out["grant_id"].(string)
		if a, ok := out["aud"].(Audience); ok {
			ev.Aud = a
		}
	} else {
		ev.Reason = "inactive: " + reason
	}
	ev.Extra = map[string]any{"active": active}
	t.event(r, ev)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// introspection returns the RFC 7662 response for a token and, when it is
// inactive, why.
func (t *tenant) introspection(ctx context.Context, tok, hint string) (map[string]any, string) {
	if hint != "refresh_token" && strings.Count(tok, ".") == 2 {
		c, err := t.verifyAccessToken(tok)
		if err != nil {
			return map[string]any{"active": false}, err.Error()
		}
		out := map[string]any{
			"active":     true,
			"iss":        c.Issuer,
			"sub":        c.Subject,
			"aud":        c.Audience,
			"exp":        c.Expiry,
			"iat":        c.IssuedAt,
			"jti":        c.ID,
			"client_id":  c.ClientID,
			"token_type": "Bearer",
		}
		if c.Scope != "" {
			out["scope"] = c.Scope
		}
		if c.Act != nil {
			out["act"] = c.Act
		}
		if c.Cnf != nil {
			out["cnf"] = c.Cnf
			if _, ok := c.Cnf["jkt"]; ok {
				out["token_type"] = "DPoP"
			}
		}
		if c.Ctx != nil {
			out["ctx"] = c.Ctx
		}
		if c.GrantID != "" {
			out["grant_id"] = c.GrantID
		}
		if c.AuthTime != 0 {
			out["auth_time"] = c.AuthTime
		}
		return out, ""
	}
	sig := t.refreshSignature(tok)
	req, err := t.store.GetRefreshTokenSession(ctx, sig, nil)
	if err != nil || req == nil {
		return map[string]any{"active": false}, "unknown, expired, rotated or revoked refresh token"
	}
	sess, _ := req.GetSession().(*Session)
	out := map[string]any{
		"active":     true,
		"iss":        t.issuer(),
		"client_id":  req.GetClient().GetID(),
		"scope":      strings.Join(req.GetGrantedScopes(), " "),
		"aud":        Audience(req.GetGrantedAudience()),
		"grant_id":   req.GetID(),
		"token_type": "refresh_token",
	}
	if sess != nil && sess.GetSubject() != "" {
		out["sub"] = sess.GetSubject()
	}
	return out, ""
}

// refreshSignature is the stored handle of a refresh token.
func (t *tenant) refreshSignature(tok string) string {
	if i := strings.LastIndexByte(tok, '.'); i >= 0 {
		return tok[i+1:]
	}
	return tok
}

// --- revocation (RFC 7009) ---

// revoke revokes an access token (its jti) or a refresh token (its whole
// grant). As RFC 7009 section 2.2 asks, an invalid or unknown token, or
// one issued to another client, still gets a 200 and changes nothing.
func (t *tenant) revoke(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Endpoint: "revoke"}
	c, err := t.authenticateClient(r.Context(), r)
	if err != nil {
		t.formError(w, r, &ev, err)
		return
	}
	ev.ClientID = c.cfg.ID
	tok := r.PostForm.Get("token")
	if tok == "" {
		t.formError(w, r, &ev, fosite.ErrInvalidRequest.WithHint("The token parameter is missing."))
		return
	}
	hint := r.PostForm.Get("token_type_hint")
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusOK
	now := t.clock.Now()
	switch {
	case hint != "refresh_token" && strings.Count(tok, ".") == 2:
		claims, err := t.verifyAccessToken(tok)
		switch {
		case claims == nil || errors.Is(err, ErrTokenSignature) || errors.Is(err, ErrTokenKey) || errors.Is(err, ErrTokenIssuer):
			ev.Reason = "not a token of this tenant; nothing revoked"
		case claims.ClientID != c.cfg.ID:
			ev.Reason = "token was issued to another client; nothing revoked"
		default:
			t.rev.revokeJTI(claims.ID, claims.Expiry, now)
			ev.Jti, ev.Sub, ev.GrantID, ev.Aud = claims.ID, claims.Subject, claims.GrantID, claims.Audience
			ev.Reason = "access token revoked"
		}
	default:
		req, _ := t.store.GetRefreshTokenSession(r.Context(), t.refreshSignature(tok), nil)
		switch {
		case req == nil:
			ev.Reason = "unknown refresh token; nothing revoked"
		case req.GetClient().GetID() != c.cfg.ID:
			ev.Reason = "refresh token was issued to another client; nothing revoked"
		default:
			t.rev.revokeGrant(req.GetID(), now, "refresh token revoked by its client")
			ev.GrantID = req.GetID()
			ev.Reason = "refresh token and its grant revoked"
		}
	}
	t.event(r, ev)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// formError answers an OAuth error on a non-token endpoint.
func (t *tenant) formError(w http.ResponseWriter, r *http.Request, ev *audit.Event, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	ev.Decision, ev.Status = audit.DecisionDeny, rfc.CodeField
	if rfc.CodeField >= 500 {
		ev.Decision = audit.DecisionError
	}
	ev.Reason = rfc.ErrorField + ": " + rfc.GetDescription()
	t.event(r, *ev)
	if rfc.ErrorField == "invalid_client" {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+t.issuer()+`"`)
	}
	writeJSONError(w, rfc.CodeField, rfc.ErrorField, rfc.GetDescription())
}

// --- helpers ---

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
