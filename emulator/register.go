package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsso/agentsso/emulator/audit"
)

// Dynamic client registration (RFC 7591) at POST /t/{tenant}/register,
// on when the tenant's registration.dynamic is set. Registration is open:
// no initial access token is asked for, as MCP clients expect.
//
// agentsso understands these metadata (RFC 7591 section 2) and ignores any
// other member, as section 2 asks:
//
//	redirect_uris               absolute, no fragment; https, http on a loopback
//	                            host (127.0.0.1, [::1], localhost) or a
//	                            private-use scheme with a dot (com.example.app:/cb)
//	token_endpoint_auth_method  client_secret_basic (default), client_secret_post,
//	                            private_key_jwt or none
//	token_endpoint_auth_signing_alg
//	                            RS256, PS256, ES256 or ES384 (private_key_jwt;
//	                            default from the key: its alg, else RS256 for
//	                            RSA, ES256/ES384 for EC P-256/P-384)
//	grant_types                 authorization_code (default), refresh_token,
//	                            client_credentials
//	response_types              code (the default with authorization_code)
//	jwks, jwks_uri              public keys (not both); needed by private_key_jwt
//	scope                       space-separated, each in the tenant's catalogue
//	client_name, client_uri, logo_uri, tos_uri, policy_uri, contacts,
//	software_id, software_version
//	                            informational, echoed back
//
// A registered client:
//   - may hold exactly the scopes it registered, all granted when a
//     request names none; with no scope registered it may ask for any scope
//     of the tenant's catalogue (and is granted none unless it asks);
//   - may request tokens for any audience of the tenant's audiences
//     catalogue (RFC 7591 has no audience metadata); it has a default
//     audience only when the catalogue has exactly one, otherwise every
//     token request must name a resource (RFC 8707) or audience;
//   - gets the tenant's lifetimes, and a random client_id and (when
//     confidential) client_secret that never expires
//     (client_secret_expires_at 0). It lives until the tenant is reset or
//     the emulator restarts.
//
// Errors are those of RFC 7591 section 3.2.2 (invalid_redirect_uri,
// invalid_client_metadata), each description naming the member at fault.

// maxClientsPerTenant bounds registration, so that a loop registering
// clients cannot exhaust memory.
const maxClientsPerTenant = 10000

// Registration error codes (RFC 7591 section 3.2.2).
const (
	errInvalidRedirectURI    = "invalid_redirect_uri"
	errInvalidClientMetadata = "invalid_client_metadata"
)

// RegistrationError is an RFC 7591 section 3.2.2 error: the code, the
// metadata member at fault and what is wrong with it.
type RegistrationError struct {
	Code  string // invalid_redirect_uri or invalid_client_metadata
	Field string // e.g. "redirect_uris[0]", "jwks"
	Msg   string
}

// Sentinels for errors.Is on a *RegistrationError's code.
var (
	ErrInvalidRedirectURI    = &RegistrationError{Code: errInvalidRedirectURI}
	ErrInvalidClientMetadata = &RegistrationError{Code: errInvalidClientMetadata}
)

func (e *RegistrationError) Error() string { return e.Code + ": " + e.Description() }

// Description is the error_description: the field, then the problem.
func (e *RegistrationError) Description() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is matches a sentinel with the same code.
func (e *RegistrationError) Is(target error) bool {
	var t *RegistrationError
	return errors.As(target, &t) && t.Field == "" && t.Msg == "" && t.Code == e.Code
}

func metadataErr(field, format string, a ...any) *RegistrationError {
	return &RegistrationError{Code: errInvalidClientMetadata, Field: field, Msg: fmt.Sprintf(format, a...)}
}

func redirectErr(field, format string, a ...any) *RegistrationError {
	return &RegistrationError{Code: errInvalidRedirectURI, Field: field, Msg: fmt.Sprintf(format, a...)}
}

// metadataSource says where client metadata comes from: a registration
// request, or a client ID metadata document (which has no secret).
type metadataSource int

const (
	fromRegistration metadataSource = iota
	fromDocument
)

// clientMetadata is the validated, normalised client metadata.
type clientMetadata struct {
	RedirectURIs    []string            `json:"redirect_uris,omitempty"`
	AuthMethod      string              `json:"token_endpoint_auth_method"`
	AssertionAlg    string              `json:"token_endpoint_auth_signing_alg,omitempty"`
	GrantTypes      []string            `json:"grant_types"`
	ResponseTypes   []string            `json:"response_types"`
	ClientName      string              `json:"client_name,omitempty"`
	ClientURI       string              `json:"client_uri,omitempty"`
	LogoURI         string              `json:"logo_uri,omitempty"`
	TOSURI          string              `json:"tos_uri,omitempty"`
	PolicyURI       string              `json:"policy_uri,omitempty"`
	Contacts        []string            `json:"contacts,omitempty"`
	SoftwareID      string              `json:"software_id,omitempty"`
	SoftwareVersion string              `json:"software_version,omitempty"`
	Scope           string              `json:"scope,omitempty"`
	JWKSURI         string              `json:"jwks_uri,omitempty"`
	JWKS            *jose.JSONWebKeySet `json:"jwks,omitempty"`
	// DPoPBoundAccessTokens: RFC 9449 section 5.2 (dpop.go).
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens,omitempty"`
	// RFC 8705 metadata (mtls.go).
	mtlsMetadata

	scopes         []string // as registered (nil: none named)
	optionalScopes []string // the catalogue, when none was named
}

var (
	registrableGrants = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	assertionAlgNames = []string{"RS256", "PS256", "ES256", "ES384"}
)

// register is the RFC 7591 dynamic client registration endpoint.
func (t *tenant) register(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Endpoint: "register"}
	t.mu.RLock()
	on := t.cfg.Registration.Dynamic
	t.mu.RUnlock()
	if !on {
		t.registerError(w, r, &ev, http.StatusForbidden, "access_denied",
			fmt.Sprintf("Dynamic client registration (RFC 7591) is off for tenant %s: set registration.dynamic: true in the tenant's configuration.", t.name))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		t.registerError(w, r, &ev, http.StatusBadRequest, errInvalidClientMetadata,
			fmt.Sprintf("The request is sent as %q: send the client metadata as a JSON object with Content-Type application/json (RFC 7591 section 3.1).", r.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.registerError(w, r, &ev, http.StatusBadRequest, errInvalidClientMetadata,
			fmt.Sprintf("The request body could not be read (at most %d KiB): %v.", maxFormBytes>>10, err))
		return
	}
	raw, err := jsonObject(body)
	if err != nil {
		t.registerError(w, r, &ev, http.StatusBadRequest, errInvalidClientMetadata, "The request body is "+err.Error()+".")
		return
	}
	md, merr := t.parseClientMetadata(raw, fromRegistration)
	if merr != nil {
		ev.ScopesRequested = strings.Fields(md.Scope)
		t.registerError(w, r, &ev, http.StatusBadRequest, merr.Code, merr.Description()+".")
		return
	}
	id := "dcr-" + newID()
	secret := ""
	if md.AuthMethod == "client_secret_basic" || md.AuthMethod == "client_secret_post" {
		secret = newID() + newID()
	}
	cc := t.clientConfig(md, id, secret, "registered dynamically (RFC 7591)")
	c, err := t.newClient(cc)
	if err != nil {
		t.registerError(w, r, &ev, http.StatusBadRequest, errInvalidClientMetadata, err.Error()+".")
		return
	}
	ev.ClientID = id
	ev.ScopesRequested = md.scopes
	ev.ScopesGranted = slices.Concat(cc.RequiredScopes, cc.OptionalScopes)
	// Serialised with the admin API, which replaces the tenant's clients
	// from a copy of its configuration: a client registered meanwhile
	// would be lost.
	t.srv.admin.mu.Lock()
	defer t.srv.admin.mu.Unlock()
	t.mu.Lock()
	if len(t.clients) >= maxClientsPerTenant {
		t.mu.Unlock()
		t.registerError(w, r, &ev, http.StatusForbidden, "access_denied",
			fmt.Sprintf("Tenant %s already has %d clients, the most it may hold: delete some or reset the tenant.", t.name, maxClientsPerTenant))
		return
	}
	t.clients[id] = c
	t.cfg.Clients = append(slices.Clip(t.cfg.Clients), cc)
	t.mu.Unlock()

	now := t.clock.Now()
	out := map[string]any{}
	b, _ := json.Marshal(md)
	_ = json.Unmarshal(b, &out)
	out["client_id"] = id
	out["client_id_issued_at"] = now.Unix()
	if md.scopes == nil {
		out["scope"] = strings.Join(md.optionalScopes, " ")
	}
	if secret != "" {
		out["client_secret"] = secret
		out["client_secret_expires_at"] = 0
	}
	ev.Decision, ev.Status = audit.DecisionAllow, http.StatusCreated
	ev.Reason = "client registered (" + md.AuthMethod + ")"
	t.event(r, ev)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusCreated, out)
}

func (t *tenant) registerError(w http.ResponseWriter, r *http.Request, ev *audit.Event, status int, code, desc string) {
	ev.Decision, ev.Status, ev.Reason = audit.DecisionDeny, status, code+": "+desc
	t.event(r, *ev)
	w.Header().Set("Cache-Control", "no-store")
	writeJSONError(w, status, code, desc)
}

// clientConfig builds the configuration of a registered client or of a
// client described by a metadata document.
func (t *tenant) clientConfig(md clientMetadata, id, secret, desc string) ClientConfig {
	t.mu.RLock()
	auds := slices.Clone(t.cfg.Audiences)
	lt := t.cfg.Lifetimes
	t.mu.RUnlock()
	cc := ClientConfig{
		ID:             id,
		Name:           md.ClientName,
		Description:    desc,
		Secret:         secret,
		AuthMethod:     md.AuthMethod,
		JWKSURI:        md.JWKSURI,
		AssertionAlg:   md.AssertionAlg,
		GrantTypes:     md.GrantTypes,
		RedirectURIs:   md.RedirectURIs,
		RequiredScopes: md.scopes,
		OptionalScopes: md.optionalScopes,
		Audiences:      auds,
		Lifetimes:      lt,
	}
	if cc.AssertionAlg == "" {
		cc.AssertionAlg = "RS256"
	}
	if len(auds) == 1 {
		cc.DefaultAudience = auds
	}
	if md.JWKS != nil {
		b, _ := json.Marshal(md.JWKS)
		cc.JWKS = string(b)
	}
	cc.DPoPBoundAccessTokens = md.DPoPBoundAccessTokens
	md.mtlsMetadata.apply(&cc) // mtls.go
	return cc
}

// member decodes one metadata member into v; a JSON null counts as absent.
func member(raw map[string]json.RawMessage, name string, v any, want string) (bool, *RegistrationError) {
	b, ok := raw[name]
	if !ok || string(b) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		if name == "redirect_uris" {
			return false, redirectErr(name, "want %s", want)
		}
		return false, metadataErr(name, "want %s", want)
	}
	return true, nil
}

// parseClientMetadata validates client metadata, from a registration
// request or a client ID metadata document, and fills the defaults. The
// returned metadata carries what was decoded even on error.
func (t *tenant) parseClientMetadata(raw map[string]json.RawMessage, src metadataSource) (clientMetadata, *RegistrationError) {
	var md clientMetadata
	for _, m := range []struct {
		name string
		v    *string
	}{
		{"token_endpoint_auth_method", &md.AuthMethod},
		{"token_endpoint_auth_signing_alg", &md.AssertionAlg},
		{"client_name", &md.ClientName},
		{"client_uri", &md.ClientURI},
		{"logo_uri", &md.LogoURI},
		{"tos_uri", &md.TOSURI},
		{"policy_uri", &md.PolicyURI},
		{"software_id", &md.SoftwareID},
		{"software_version", &md.SoftwareVersion},
		{"scope", &md.Scope},
		{"jwks_uri", &md.JWKSURI},
	} {
		if _, err := member(raw, m.name, m.v, "a string"); err != nil {
			return md, err
		}
	}
	hasGrants, err := member(raw, "grant_types", &md.GrantTypes, "an array of strings")
	if err != nil {
		return md, err
	}
	hasResponses, err := member(raw, "response_types", &md.ResponseTypes, "an array of strings")
	if err != nil {
		return md, err
	}
	if _, err := member(raw, "redirect_uris", &md.RedirectURIs, "an array of strings"); err != nil {
		return md, err
	}
	if _, err := member(raw, "contacts", &md.Contacts, "an array of strings"); err != nil {
		return md, err
	}
	if _, err := member(raw, "dpop_bound_access_tokens", &md.DPoPBoundAccessTokens, "a boolean"); err != nil {
		return md, err
	}
	var jwksRaw json.RawMessage
	if _, err := member(raw, "jwks", &jwksRaw, "a JWK Set object"); err != nil {
		return md, err
	}
	md.Scope = strings.Join(strings.Fields(md.Scope), " ")

	if src == fromDocument {
		for _, f := range []string{"client_secret", "client_secret_expires_at"} {
			if _, ok := raw[f]; ok {
				return md, metadataErr(f, "a client identified by a metadata document has no secret: remove %s and use token_endpoint_auth_method none or private_key_jwt", f)
			}
		}
	}

	// Authentication method and keys.
	if md.AuthMethod == "" {
		md.AuthMethod = "client_secret_basic" // RFC 7591 section 2
		if src == fromDocument {
			md.AuthMethod = "none"
		}
	}
	if !slices.Contains(knownAuthMethods, md.AuthMethod) {
		return md, metadataErr("token_endpoint_auth_method", "%q is not supported: want one of %s", md.AuthMethod, strings.Join(knownAuthMethods, ", "))
	}
	if src == fromDocument && md.AuthMethod != "none" && md.AuthMethod != "private_key_jwt" {
		return md, metadataErr("token_endpoint_auth_method", "%q needs a client secret, which a client identified by a metadata document cannot have: use none or private_key_jwt", md.AuthMethod)
	}
	if len(jwksRaw) > 0 && md.JWKSURI != "" {
		return md, metadataErr("jwks", "send jwks or jwks_uri, not both (RFC 7591 section 2)")
	}
	if md.JWKSURI != "" {
		u, err := url.Parse(md.JWKSURI)
		if err != nil {
			return md, metadataErr("jwks_uri", "%q is not a URL", md.JWKSURI)
		}
		if err := checkRemoteURL(u); err != nil {
			return md, metadataErr("jwks_uri", "%q: %v", md.JWKSURI, err)
		}
	}
	if len(jwksRaw) > 0 {
		set, err := parsePublicJWKS(jwksRaw)
		if err != nil {
			return md, err
		}
		md.JWKS = set
	}
	if md.AuthMethod == "private_key_jwt" {
		if md.JWKS == nil && md.JWKSURI == "" {
			return md, metadataErr("jwks", "private_key_jwt needs the client's public keys: send jwks (a JWK Set) or jwks_uri")
		}
		if md.AssertionAlg == "" {
			md.AssertionAlg = defaultAssertionAlg(md.JWKS)
		}
		if !slices.Contains(assertionAlgNames, md.AssertionAlg) {
			return md, metadataErr("token_endpoint_auth_signing_alg", "%q is not supported: want one of %s", md.AssertionAlg, strings.Join(assertionAlgNames, ", "))
		}
		if md.JWKS != nil && !slices.ContainsFunc(md.JWKS.Keys, func(k jose.JSONWebKey) bool { return keyFitsAlg(k.Key, k.Algorithm, md.AssertionAlg) }) {
			return md, metadataErr("jwks", "no key in the set can verify %s assertions (RS256/PS256 need an RSA key of at least 2048 bits, ES256 an EC P-256 key, ES384 an EC P-384 key)", md.AssertionAlg)
		}
	} else if md.AssertionAlg != "" {
		return md, metadataErr("token_endpoint_auth_signing_alg", "applies only to token_endpoint_auth_method private_key_jwt, not %s", md.AuthMethod)
	}

	if err := parseMTLSMetadata(raw, &md); err != nil { // mtls.go: RFC 8705
		return md, err
	}

	// Grant and response types.
	if !hasGrants {
		md.GrantTypes = []string{GrantAuthorizationCode} // RFC 7591 section 2
	}
	if len(md.GrantTypes) == 0 {
		return md, metadataErr("grant_types", "is empty: name at least one of %s", strings.Join(registrableGrants, ", "))
	}
	var grants []string
	for i, g := range md.GrantTypes {
		if !slices.Contains(registrableGrants, g) {
			return md, metadataErr(fmt.Sprintf("grant_types[%d]", i), "%q cannot be registered: want %s", g, strings.Join(registrableGrants, ", "))
		}
		if !slices.Contains(grants, g) {
			grants = append(grants, g)
		}
	}
	md.GrantTypes = grants
	code := slices.Contains(grants, GrantAuthorizationCode)
	if md.AuthMethod == "none" && slices.Contains(grants, GrantClientCredentials) {
		return md, metadataErr("grant_types", "a public client (token_endpoint_auth_method none) cannot use client_credentials: register a confidential client")
	}
	if !hasResponses {
		md.ResponseTypes = []string{}
		if code {
			md.ResponseTypes = []string{"code"}
		}
	}
	for i, rt := range md.ResponseTypes {
		if rt != "code" {
			return md, metadataErr(fmt.Sprintf("response_types[%d]", i), "%q is not supported: the only response type is code (OAuth 2.1)", rt)
		}
	}
	md.ResponseTypes = slices.Compact(md.ResponseTypes)
	if code != (len(md.ResponseTypes) > 0) {
		return md, metadataErr("response_types", "response type code and grant type authorization_code go together (RFC 7591 section 2.1): register both or neither")
	}

	// Redirect URIs.
	if code && len(md.RedirectURIs) == 0 {
		return md, redirectErr("redirect_uris", "authorization_code needs at least one redirect URI")
	}
	if len(md.RedirectURIs) > 20 {
		return md, redirectErr("redirect_uris", "%d redirect URIs: register at most 20", len(md.RedirectURIs))
	}
	for i, ru := range md.RedirectURIs {
		if err := checkRedirectURI(ru); err != nil {
			return md, redirectErr(fmt.Sprintf("redirect_uris[%d]", i), "%q: %v", ru, err)
		}
	}

	// Scope, against the tenant's catalogue.
	t.mu.RLock()
	catalogue := slices.Concat([]string{"openid", "profile", "email", "offline_access"}, t.cfg.Scopes)
	t.mu.RUnlock()
	if md.Scope != "" {
		for _, s := range strings.Fields(md.Scope) {
			if !slices.Contains(catalogue, s) {
				return md, metadataErr("scope", "%q is not in tenant %s's scope catalogue (%s)", s, t.name, strings.Join(catalogue, " "))
			}
			if !slices.Contains(md.scopes, s) {
				md.scopes = append(md.scopes, s)
			}
		}
		md.Scope = strings.Join(md.scopes, " ")
	} else {
		md.optionalScopes = catalogue
	}

	// Informational members.
	if len(md.ClientName) > 256 {
		return md, metadataErr("client_name", "is %d bytes long: at most 256", len(md.ClientName))
	}
	for _, m := range []struct{ name, v string }{{"client_uri", md.ClientURI}, {"logo_uri", md.LogoURI}, {"tos_uri", md.TOSURI}, {"policy_uri", md.PolicyURI}} {
		if m.v == "" {
			continue
		}
		if u, err := url.Parse(m.v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return md, metadataErr(m.name, "%q: want an absolute http(s) URL", m.v)
		}
	}
	return md, nil
}

// checkRedirectURI applies RFC 7591 section 2 and OAuth 2.1: absolute,
// no fragment, http only on a loopback host (RFC 8252 section 7.3),
// private-use schemes only in reverse-domain form (RFC 8252 section 7.1).
func checkRedirectURI(ru string) error {
	u, err := url.Parse(ru)
	if err != nil {
		return errors.New("not a URI")
	}
	if !u.IsAbs() {
		return errors.New("not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(ru, "#") {
		return errors.New("a redirect URI must not contain a fragment")
	}
	switch s := strings.ToLower(u.Scheme); {
	case s == "https":
		if u.Host == "" {
			return errors.New("no host")
		}
	case s == "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("http is allowed only on a loopback host (127.0.0.1, [::1] or localhost), not %q: use https", u.Hostname())
		}
	case strings.Contains(s, "."):
		// A native app's private-use scheme, e.g. com.example.app:/callback.
	default:
		return fmt.Errorf("scheme %q: want https, http on a loopback host, or a reverse-domain private-use scheme (RFC 8252 section 7.1)", u.Scheme)
	}
	if u.User != nil {
		return errors.New("a redirect URI must not contain a user name or password")
	}
	return nil
}

// parsePublicJWKS parses a client's JWK Set: public RSA or EC keys for
// signatures only.
func parsePublicJWKS(b []byte) (*jose.JSONWebKeySet, *RegistrationError) {
	var probe struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &probe); err != nil || probe.Keys == nil {
		return nil, metadataErr("jwks", `want a JWK Set: {"keys": [...]}`)
	}
	if len(probe.Keys) == 0 {
		return nil, metadataErr("jwks", "the set has no keys")
	}
	if len(probe.Keys) > 20 {
		return nil, metadataErr("jwks", "the set has %d keys: at most 20", len(probe.Keys))
	}
	set := &jose.JSONWebKeySet{}
	for i, kb := range probe.Keys {
		f := fmt.Sprintf("jwks.keys[%d]", i)
		var k jose.JSONWebKey
		if err := json.Unmarshal(kb, &k); err != nil {
			return nil, metadataErr(f, "not a JWK: %v", err)
		}
		if !k.IsPublic() {
			return nil, metadataErr(f, "is a private or symmetric key: register only public keys")
		}
		switch pk := k.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < 2048 {
				return nil, metadataErr(f, "RSA key of %d bits: at least 2048", pk.N.BitLen())
			}
		case *ecdsa.PublicKey:
			if pk.Curve != elliptic.P256() && pk.Curve != elliptic.P384() {
				return nil, metadataErr(f, "EC curve %s: want P-256 or P-384", pk.Curve.Params().Name)
			}
		default:
			return nil, metadataErr(f, "key type %q is not supported: want RSA or EC (P-256, P-384)", kty(kb))
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, metadataErr(f, "use is %q: client authentication keys have use sig", k.Use)
		}
		if k.Algorithm != "" && !slices.Contains(assertionAlgNames, k.Algorithm) {
			return nil, metadataErr(f, "alg %q is not supported: want one of %s", k.Algorithm, strings.Join(assertionAlgNames, ", "))
		}
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

func kty(b []byte) string {
	var k struct {
		Kty string `json:"kty"`
	}
	_ = json.Unmarshal(b, &k)
	return k.Kty
}

// defaultAssertionAlg picks the assertion algorithm of a private_key_jwt
// client that named none: its first key's alg, else by key type; RS256
// when the keys are remote.
func defaultAssertionAlg(set *jose.JSONWebKeySet) string {
	if set == nil || len(set.Keys) == 0 {
		return "RS256"
	}
	k := set.Keys[0]
	if k.Algorithm != "" {
		return k.Algorithm
	}
	if ec, ok := k.Key.(*ecdsa.PublicKey); ok {
		if ec.Curve == elliptic.P384() {
			return "ES384"
		}
		return "ES256"
	}
	return "RS256"
}

// keyFitsAlg tells whether a public key (with its JWK alg, possibly
// empty) can verify signatures of alg.
func keyFitsAlg(key any, keyAlg, alg string) bool {
	if keyAlg != "" && keyAlg != alg {
		return false
	}
	switch pk := key.(type) {
	case *rsa.PublicKey:
		return (alg == "RS256" || alg == "PS256") && pk.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return (alg == "ES256" && pk.Curve == elliptic.P256()) || (alg == "ES384" && pk.Curve == elliptic.P384())
	}
	return false
}
