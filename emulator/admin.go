package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/agentsso/agentsso/emulator/audit"
)

// The admin API: JSON over HTTP, on its own listener (AdminHandler), for
// the test controls a real IdP lacks. docs/ADMIN.md documents every
// endpoint with curl examples.
//
// Every request passes these checks first, so that a web page in the
// developer's browser cannot drive the API (DNS rebinding, CSRF):
//
//   - Host must name a loopback host (localhost, *.localhost, 127.0.0.0/8,
//     ::1) or the host of admin_addr. When admin_addr is a wildcard
//     address (0.0.0.0, ::) an admin token is required by the
//     configuration, and any Host is accepted: the token is what a
//     rebinding page cannot know.
//   - Origin, when present, must be the same origin as Host and loopback
//     (or admin_addr's host); "null" and every other origin get 403.
//     Sec-Fetch-Site, when present, must be same-origin or none.
//   - With admin_token set, Authorization: Bearer <admin_token> is
//     required (compared in constant time); 401 otherwise.
//   - A request with a body must say Content-Type: application/json
//     (415 otherwise); a Content-Type, when sent, must be that. Bodies
//     are limited to 1 MiB (413).
//
// Errors are JSON: {"error": code, "error_description": text}, the text
// naming the field at fault and the fix.
//
// Endpoints (all under /admin/v1):
//
//	GET    /tenants                              list tenants
//	POST   /tenants                              create a tenant (TenantConfig)
//	GET    /tenants/{tenant}                     its configuration
//	PUT    /tenants/{tenant}                     replace its configuration
//	DELETE /tenants/{tenant}                     delete it
//	POST   /tenants/{tenant}/reset               reset it to its configured state
//	GET    /tenants/{tenant}/clients             list clients
//	POST   /tenants/{tenant}/clients             create a client (ClientConfig)
//	GET    /tenants/{tenant}/clients/{id}        one client
//	PUT    /tenants/{tenant}/clients/{id}        create or replace it
//	DELETE /tenants/{tenant}/clients/{id}        delete it (tokens inactive)
//	POST   /tenants/{tenant}/clients/{id}/disable  disable it (tokens inactive)
//	POST   /tenants/{tenant}/clients/{id}/enable   enable it again
//	GET    /tenants/{tenant}/users               list users
//	POST   /tenants/{tenant}/users               create a user (UserConfig)
//	GET    /tenants/{tenant}/users/{username}    one user
//	PUT    /tenants/{tenant}/users/{username}    create or replace it
//	DELETE /tenants/{tenant}/users/{username}    delete it
//	GET    /tenants/{tenant}/clock               the virtual clock
//	POST   /tenants/{tenant}/clock               change it (ClockRequest)
//	POST   /tenants/{tenant}/mint                mint a token (MintRequest)
//	GET    /tenants/{tenant}/dpop                DPoP proofs seen and nonces issued
//	GET    /tenants/{tenant}/certificates        client certificates the mTLS listener saw
//	GET    /tenants/{tenant}/keys                list signing keys
//	POST   /tenants/{tenant}/keys/rotate         create a new active key
//	POST   /tenants/{tenant}/keys/{kid}/withdraw withdraw a kid
//	POST   /tenants/{tenant}/keys/{kid}/publish  {"published": bool}: show or hide in the JWKS
//	DELETE /tenants/{tenant}/keys/{kid}          delete a key from the key store
//	GET    /tenants/{tenant}/faults              list injected faults
//	POST   /tenants/{tenant}/faults              inject a fault (Fault)
//	DELETE /tenants/{tenant}/faults              clear all faults
//	DELETE /tenants/{tenant}/faults/{endpoint}   clear one endpoint's fault
//	POST   /tenants/{tenant}/revoke              revoke a jti, grant or client (Revocation)
//	GET    /tenants/{tenant}/device              pending device codes (?all=true: every remembered one)
//	POST   /tenants/{tenant}/device/{user_code}/approve  {"username": ...}: approve as a scripted user
//	POST   /tenants/{tenant}/device/{user_code}/deny     deny
//	POST   /reset                                reset everything
//	GET    /public-base-url                      the public base URL
//	POST   /public-base-url                      {"url": ...}: change it
//	GET    /audit                                audit events, paged (cursor, limit, since_seq, tenant, endpoint, client_id, decision)
func (s *Server) adminRoutes() {
	m := http.NewServeMux()
	const p = "/admin/v1"
	const tp = p + "/tenants/{tenant}"
	h := func(pattern string, f func(*http.Request) (int, any, error)) {
		m.HandleFunc(pattern, adminJSON(f))
	}
	h("GET "+p+"/tenants", s.admListTenants)
	h("POST "+p+"/tenants", s.admCreateTenant)
	h("GET "+tp, s.admGetTenant)
	h("PUT "+tp, s.admPutTenant)
	h("DELETE "+tp, s.admDeleteTenant)
	h("POST "+tp+"/reset", s.admResetTenant)

	h("GET "+tp+"/clients", s.admListClients)
	h("POST "+tp+"/clients", s.admCreateClient)
	h("GET "+tp+"/clients/{id}", s.admGetClient)
	h("PUT "+tp+"/clients/{id}", s.admPutClient)
	h("DELETE "+tp+"/clients/{id}", s.admDeleteClient)
	h("POST "+tp+"/clients/{id}/disable", s.admDisableClient(true))
	h("POST "+tp+"/clients/{id}/enable", s.admDisableClient(false))

	h("GET "+tp+"/users", s.admListUsers)
	h("POST "+tp+"/users", s.admCreateUser)
	h("GET "+tp+"/users/{username}", s.admGetUser)
	h("PUT "+tp+"/users/{username}", s.admPutUser)
	h("DELETE "+tp+"/users/{username}", s.admDeleteUser)

	h("GET "+tp+"/clock", s.admGetClock)
	h("POST "+tp+"/clock", s.admSetClock)
	h("POST "+tp+"/mint", s.admMint)

	h("GET "+tp+"/dpop", s.admDPoP) // admin_dpop.go
	h("GET "+tp+"/keys", s.admListKeys)
	h("POST "+tp+"/keys/rotate", s.admRotateKey)
	h("POST "+tp+"/keys/{kid}/withdraw", s.admWithdrawKey)
	h("POST "+tp+"/keys/{kid}/publish", s.admPublishKey)
	h("DELETE "+tp+"/keys/{kid}", s.admDeleteKey)

	h("GET "+tp+"/faults", s.admListFaults)
	h("POST "+tp+"/faults", s.admSetFault)
	h("DELETE "+tp+"/faults", s.admClearFaults)
	h("DELETE "+tp+"/faults/{endpoint}", s.admClearFaults)

	h("POST "+tp+"/revoke", s.admRevoke)
	h("GET "+tp+"/device", s.admListDevice) // device.go
	h("POST "+tp+"/device/{user_code}/approve", s.admApproveDevice)
	h("POST "+tp+"/device/{user_code}/deny", s.admDenyDevice)
	h("GET "+tp+"/certificates", s.admListCertificates) // mtls.go
	h("POST "+p+"/reset", s.admReset)
	h("GET "+p+"/public-base-url", s.admGetBaseURL)
	h("POST "+p+"/public-base-url", s.admSetBaseURL)
	h("GET "+p+"/audit", s.admAudit)
	s.adminMux = m
}

// AdminHandler is the admin API, to be served on its own listener (by
// default 127.0.0.1 only). See adminRoutes for its endpoints and checks.
func (s *Server) AdminHandler() http.Handler { return http.HandlerFunc(s.serveAdmin) }

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			writeJSONError(w, http.StatusInternalServerError, "server_error", fmt.Sprintf("the admin API failed: %v (please report this)", v))
		}
	}()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if msg := s.adminHostCheck(r); msg != "" {
		writeJSONError(w, http.StatusForbidden, "forbidden", msg)
		return
	}
	if tok := s.cfg.AdminToken; tok != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			got, ok = strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
		}
		a, b := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentsso-admin"`)
			writeJSONError(w, http.StatusUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <admin_token> (the value of admin_token / AGENTSSO_ADMIN_TOKEN)")
			return
		}
	}
	ct := r.Header.Get("Content-Type")
	hasBody := r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeJSONError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type %q: the admin API accepts only application/json", ct))
			return
		}
	} else if hasBody {
		writeJSONError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "a request with a body needs Content-Type: application/json")
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, adminMaxBody)
	}
	s.adminMux.ServeHTTP(&adminWriter{ResponseWriter: w, r: r}, r)
}

// adminHostCheck returns why the request may not come from where it
// says, or "".
func (s *Server) adminHostCheck(r *http.Request) string {
	adminHost, _, _ := splitHostPort(s.cfg.AdminAddr)
	wildcard := false
	if ip, err := netip.ParseAddr(adminHost); err == nil && ip.IsUnspecified() {
		wildcard = true
	}
	allowed := func(host string) bool {
		h := strings.ToLower(strings.TrimSuffix(host, "."))
		if h == "localhost" || strings.HasSuffix(h, ".localhost") {
			return true
		}
		if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil && ip.Unmap().IsLoopback() {
			return true
		}
		return h != "" && !wildcard && strings.EqualFold(strings.Trim(h, "[]"), adminHost)
	}
	host := hostOnly(r.Host)
	if !allowed(host) && !(wildcard && s.cfg.AdminToken != "") {
		return fmt.Sprintf("Host %q is not a loopback name or address, nor admin_addr's host: the admin API refuses it (DNS rebinding protection); call it at 127.0.0.1 or localhost", r.Host)
	}
	if o, ok := r.Header["Origin"]; ok {
		origin := strings.Join(o, ",")
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, r.Host) || !allowed(hostOnly(u.Host)) {
			return fmt.Sprintf("Origin %q is not this admin API's own loopback origin: browser pages may not drive the admin API (CSRF protection); send no Origin header", origin)
		}
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return fmt.Sprintf("Sec-Fetch-Site %q: browser pages of other origins may not drive the admin API", site)
	}
	return ""
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// adminWriter turns the mux's plain-text 404 and 405 answers into JSON.
type adminWriter struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (w *adminWriter) WriteHeader(code int) {
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.replaced = true
		if code == http.StatusNotFound {
			writeJSONError(w.ResponseWriter, code, "not_found", fmt.Sprintf("no admin endpoint %s %s: see docs/ADMIN.md (endpoints live under /admin/v1)", w.r.Method, w.r.URL.Path))
		} else {
			writeJSONError(w.ResponseWriter, code, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s; allowed: %s", w.r.Method, w.r.URL.Path, w.Header().Get("Allow")))
		}
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *adminWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// adminJSON adapts an admin operation: it answers the returned value as
// JSON with the returned status, or the error as a JSON error.
func adminJSON(f func(*http.Request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		status, v, err := f(r)
		if err != nil {
			adminError(w, err)
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	}
}

// adminError answers an error of an admin operation.
func adminError(w http.ResponseWriter, err error) {
	var (
		re  *RequestError
		ce  *ConfigError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		writeJSONError(w, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("body is larger than %d bytes", mbe.Limit))
	case errors.Is(err, ErrNoAuditFile), errors.Is(err, ErrNotFound):
		writeJSONError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrExists), errors.Is(err, ErrConflict):
		writeJSONError(w, http.StatusConflict, "conflict", err.Error())
	case errors.As(err, &ce):
		writeJSONError(w, http.StatusBadRequest, "invalid_request", configErrorText(err))
	case errors.As(err, &re), errors.Is(err, audit.ErrInvalidQuery):
		writeJSONError(w, http.StatusBadRequest, "invalid_request", strings.ReplaceAll(err.Error(), "\n", "; "))
	default:
		writeJSONError(w, http.StatusInternalServerError, "server_error", err.Error())
	}
}

// configErrorText lists configuration errors as "field: message; ...",
// without the "config: " prefix a configuration file's errors carry.
func configErrorText(err error) string {
	var parts []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *ConfigError
		if errors.As(e, &ce) {
			parts = append(parts, ce.Field+": "+strings.ReplaceAll(ce.Msg, "tenants[0].", "the tenant's "))
			return
		}
		parts = append(parts, e.Error())
	}
	walk(err)
	return strings.Join(parts, "; ")
}

// readBody reads the (size-limited) body.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, mbe
	}
	if err != nil {
		return nil, badField("body", "could not be read: %v", err)
	}
	return b, nil
}

func decodeConfigBody(r *http.Request, dst any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeConfigJSON(b, dst)
}

// decodeOptional decodes a JSON body into dst if there is one.
func decodeOptional(r *http.Request, dst any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	return decodeJSONBytes(b, dst)
}

func configResponse(status int, v any) (int, any, error) {
	j, err := configJSON(v)
	if err != nil {
		return 0, nil, err
	}
	return status, j, nil
}

// --- tenants ---

func (s *Server) admListTenants(*http.Request) (int, any, error) {
	ts := s.TenantInfos()
	if ts == nil {
		ts = []TenantInfo{}
	}
	return http.StatusOK, ts, nil
}

func (s *Server) admCreateTenant(r *http.Request) (int, any, error) {
	var tc TenantConfig
	if err := decodeConfigBody(r, &tc); err != nil {
		return 0, nil, err
	}
	out, err := s.CreateTenant(r.Context(), tc)
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusCreated, out)
}

func (s *Server) admGetTenant(r *http.Request) (int, any, error) {
	tc, err := s.TenantConfig(r.PathValue("tenant"))
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, tc)
}

func (s *Server) admPutTenant(r *http.Request) (int, any, error) {
	name := r.PathValue("tenant")
	var tc TenantConfig
	if err := decodeConfigBody(r, &tc); err != nil {
		return 0, nil, err
	}
	switch tc.Name {
	case "":
		tc.Name = name
	case name:
	default:
		return 0, nil, badField("name", "%q differs from the tenant in the path (%q): a tenant cannot be renamed; create a new one", tc.Name, name)
	}
	out, err := s.UpdateTenant(tc)
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, out)
}

func (s *Server) admDeleteTenant(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, s.DeleteTenant(r.Context(), r.PathValue("tenant"))
}

func (s *Server) admResetTenant(r *http.Request) (int, any, error) {
	name := r.PathValue("tenant")
	if err := s.ResetTenant(r.Context(), name); err != nil {
		return 0, nil, err
	}
	return s.admGetTenant(r)
}

func (s *Server) admReset(r *http.Request) (int, any, error) {
	if err := s.Reset(r.Context()); err != nil {
		return 0, nil, err
	}
	return s.admListTenants(r)
}

// --- clients ---

func (s *Server) admListClients(r *http.Request) (int, any, error) {
	cs, err := s.Clients(r.PathValue("tenant"))
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, cs)
}

func (s *Server) admCreateClient(r *http.Request) (int, any, error) {
	var cc ClientConfig
	if err := decodeConfigBody(r, &cc); err != nil {
		return 0, nil, err
	}
	out, err := s.CreateClient(r.PathValue("tenant"), cc)
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusCreated, out)
}

func (s *Server) admGetClient(r *http.Request) (int, any, error) {
	c, err := s.Client(r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, c)
}

func (s *Server) admPutClient(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	var cc ClientConfig
	if err := decodeConfigBody(r, &cc); err != nil {
		return 0, nil, err
	}
	switch cc.ID {
	case "":
		cc.ID = id
	case id:
	default:
		return 0, nil, badField("id", "%q differs from the client in the path (%q)", cc.ID, id)
	}
	out, err := s.UpsertClient(r.PathValue("tenant"), cc)
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, out)
}

func (s *Server) admDeleteClient(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, s.DeleteClient(r.PathValue("tenant"), r.PathValue("id"))
}

func (s *Server) admDisableClient(disabled bool) func(*http.Request) (int, any, error) {
	return func(r *http.Request) (int, any, error) {
		if err := s.setClientDisabled(r.PathValue("tenant"), r.PathValue("id"), disabled); err != nil {
			return 0, nil, err
		}
		return s.admGetClient(r)
	}
}

// --- users ---

func (s *Server) admListUsers(r *http.Request) (int, any, error) {
	us, err := s.Users(r.PathValue("tenant"))
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, us)
}

func (s *Server) admCreateUser(r *http.Request) (int, any, error) {
	var u UserConfig
	if err := decodeConfigBody(r, &u); err != nil {
		return 0, nil, err
	}
	out, err := s.CreateUser(r.PathValue("tenant"), u)
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusCreated, out)
}

func (s *Server) admGetUser(r *http.Request) (int, any, error) {
	u, err := s.User(r.PathValue("tenant"), r.PathValue("username"))
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, u)
}

func (s *Server) admPutUser(r *http.Request) (int, any, error) {
	name := r.PathValue("username")
	var u UserConfig
	if err := decodeConfigBody(r, &u); err != nil {
		return 0, nil, err
	}
	switch u.Username {
	case "":
		u.Username = name
	case name:
	default:
		return 0, nil, badField("username", "%q differs from the user in the path (%q)", u.Username, name)
	}
	out, err := s.UpsertUser(r.PathValue("tenant"), u)
	if err != nil {
		return 0, nil, err
	}
	return configResponse(http.StatusOK, out)
}

func (s *Server) admDeleteUser(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, s.DeleteUser(r.PathValue("tenant"), r.PathValue("username"))
}

// --- clock, mint ---

func (s *Server) admGetClock(r *http.Request) (int, any, error) {
	st, err := s.ClockState(r.PathValue("tenant"))
	return http.StatusOK, st, err
}

func (s *Server) admSetClock(r *http.Request) (int, any, error) {
	var req ClockRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	st, err := s.SetClock(r.PathValue("tenant"), req)
	return http.StatusOK, st, err
}

func (s *Server) admMint(r *http.Request) (int, any, error) {
	if _, err := s.adminTenant(r.PathValue("tenant")); err != nil {
		return 0, nil, err
	}
	var req MintRequest
	if err := decodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	res, err := s.Mint(r.Context(), r.PathValue("tenant"), req)
	return http.StatusOK, res, err
}

// --- keys ---

func (s *Server) admListKeys(r *http.Request) (int, any, error) {
	ks, err := s.Keys(r.PathValue("tenant"))
	return http.StatusOK, ks, err
}

func (s *Server) admRotateKey(r *http.Request) (int, any, error) {
	k, err := s.RotateKey(r.Context(), r.PathValue("tenant"))
	return http.StatusCreated, k, err
}

func (s *Server) admWithdrawKey(r *http.Request) (int, any, error) {
	k, err := s.WithdrawKey(r.PathValue("tenant"), r.PathValue("kid"))
	return http.StatusOK, k, err
}

func (s *Server) admPublishKey(r *http.Request) (int, any, error) {
	var req struct {
		Published *bool `json:"published"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Published == nil {
		return 0, nil, badField("published", "missing: true shows the key in the JWKS, false hides it")
	}
	k, err := s.PublishKey(r.PathValue("tenant"), r.PathValue("kid"), *req.Published)
	return http.StatusOK, k, err
}

func (s *Server) admDeleteKey(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, s.DeleteKey(r.Context(), r.PathValue("tenant"), r.PathValue("kid"))
}

// --- faults, revocation ---

func (s *Server) admListFaults(r *http.Request) (int, any, error) {
	fs, err := s.Faults(r.PathValue("tenant"))
	return http.StatusOK, fs, err
}

func (s *Server) admSetFault(r *http.Request) (int, any, error) {
	if _, err := s.adminTenant(r.PathValue("tenant")); err != nil {
		return 0, nil, err
	}
	var f Fault
	if err := decodeJSON(r, &f); err != nil {
		return 0, nil, err
	}
	out, err := s.SetFault(r.PathValue("tenant"), f)
	return http.StatusCreated, out, err
}

func (s *Server) admClearFaults(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, s.ClearFaults(r.PathValue("tenant"), r.PathValue("endpoint"))
}

func (s *Server) admRevoke(r *http.Request) (int, any, error) {
	if _, err := s.adminTenant(r.PathValue("tenant")); err != nil {
		return 0, nil, err
	}
	var rv Revocation
	if err := decodeJSON(r, &rv); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rv, s.Revoke(r.PathValue("tenant"), rv)
}

// --- settings, audit ---

func (s *Server) admGetBaseURL(*http.Request) (int, any, error) {
	return http.StatusOK, map[string]string{"url": s.PublicBaseURL()}, nil
}

func (s *Server) admSetBaseURL(r *http.Request) (int, any, error) {
	var req struct {
		URL string `json:"url"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return 0, nil, err
	}
	if req.URL == "" {
		return 0, nil, badField("url", "missing: want scheme://host[:port], e.g. http://127.0.0.1:8080")
	}
	if err := s.SetPublicBaseURL(req.URL); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return 0, nil, badField("url", "%s", ce.Msg)
		}
		return 0, nil, err
	}
	s.adminEvent(nil, audit.Event{Endpoint: "admin.public_base_url", Extra: map[string]any{"url": s.PublicBaseURL()}})
	return s.admGetBaseURL(r)
}

func (s *Server) admAudit(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	var aq audit.Query
	for _, x := range []struct {
		name string
		dst  *int64
	}{{"cursor", &aq.Cursor}, {"since_seq", &aq.SinceSeq}} {
		if v := q.Get(x.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, nil, badField(x.name, "%q is not an integer: pass 0 or the next value of the previous page", v)
			}
			*x.dst = n
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, nil, badField("limit", "%q is not an integer: pass how many events you want (at most %d)", v, audit.MaxLimit)
		}
		aq.Limit = n
	}
	aq.Tenant, aq.Endpoint, aq.ClientID, aq.Decision = q.Get("tenant"), q.Get("endpoint"), q.Get("client_id"), q.Get("decision")
	page, err := s.AuditPage(aq)
	return http.StatusOK, page, err
}
