package emulator

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ory/fosite"
)

// Mutual TLS (RFC 8705).
//
// The mTLS endpoints (token, introspection, revocation, userinfo) are
// served by MTLSHandler on a listener of their own, whose TLS
// configuration requests a client certificate without verifying it
// (tls.RequestClientCert; tlsca.CA.MTLSServerConfig builds one): the
// emulator checks the certificate itself, per client. Discovery advertises
// the listener as mtls_endpoint_aliases once its base URL is known
// (Config.MTLSBaseURL, Config.MTLSAddr or SetMTLSBaseURL). Only requests
// that came through MTLSHandler carry a certificate as far as the
// emulator is concerned: the public handler never reads r.TLS.
//
// Client authentication (RFC 8705 section 2), for a client whose
// auth_method is
//
//   - tls_client_auth: the certificate must chain (by the tenant's clock,
//     ExtKeyUsageClientAuth) to the CAs given with WithClientCAs (the
//     emulator's local CA in `agentsso serve`) or to the client's
//     tls_client_ca, and carry the one name the client registered:
//     tls_client_auth_subject_dn (compared RDN by RDN, attribute types by
//     name or OID, values case-insensitively with spaces folded), or
//     tls_client_auth_san_dns / _uri / _ip / _email (one of the
//     certificate's SANs of that type equals it);
//   - self_signed_tls_client_auth: no chain is checked; the certificate's
//     public key must be a key of the client's jwks (or jwks_uri), or the
//     certificate must be the first of a key's x5c.
//
// The request must name the client with client_id in the form and use no
// other client authentication. Every failure is invalid_client, its
// description naming the check.
//
// Certificate-bound access tokens (RFC 8705 section 3): a token issued at
// the mTLS token endpoint carries cnf.x5t#S256 = base64url(SHA-256(DER of
// the client certificate)) when the client authenticated with one of the
// two methods above (always: a certificate-authenticated client never gets
// a bearer token it could lose) or registered
// tls_client_certificate_bound_access_tokens. Such a client asking at the
// plain token endpoint is refused (invalid_request). The userinfo endpoint
// accepts a bound token only over the mTLS listener with the same
// certificate. A public client's refresh token is bound too (section 4):
// refreshing it takes the same certificate, over the mTLS listener.

// Client authentication methods of RFC 8705.
const (
	authTLSClient           = "tls_client_auth"
	authSelfSignedTLSClient = "self_signed_tls_client_auth"
	// cnfX5T is the confirmation member of a certificate-bound token.
	cnfX5T = "x5t#S256"
	// maxCertificateRecords bounds the certificates kept per tenant.
	maxCertificateRecords = 1000
	// maxCertificateBytes bounds a certificate (or PEM bundle) parsed.
	maxCertificateBytes = 64 << 10
)

func isMTLSMethod(m string) bool { return m == authTLSClient || m == authSelfSignedTLSClient }

// mtlsState is the Server's RFC 8705 state.
type mtlsState struct {
	base atomic.Pointer[string]
	cas  atomic.Pointer[x509.CertPool]

	once sync.Once
	mux  *http.ServeMux

	mu   sync.Mutex
	seen map[string][]CertificateRecord // by tenant, oldest first
}

// WithClientCAs sets the CAs a tls_client_auth client certificate may
// chain to (besides a client's own tls_client_ca). cmd/agentsso passes the
// local CA's pool (tlsca.CA.Pool), so that certificates from
// tlsca.CA.ClientCert authenticate.
func WithClientCAs(pool *x509.CertPool) Option {
	return func(s *Server) error { s.mtls.cas.Store(pool); return nil }
}

// MTLSBaseURL is the base of the mTLS endpoints (https://host:port), or
// "" when no mTLS listener is configured.
func (s *Server) MTLSBaseURL() string {
	if p := s.mtls.base.Load(); p != nil {
		return *p
	}
	switch {
	case s.cfg.MTLSBaseURL != "":
		return s.cfg.MTLSBaseURL
	case s.cfg.MTLSAddr != "":
		return "https://" + s.cfg.MTLSAddr
	}
	return ""
}

// SetMTLSBaseURL sets the base of the mTLS endpoints, for example once the
// mTLS listener's port is known; "" withdraws the aliases from discovery.
func (s *Server) SetMTLSBaseURL(base string) error {
	if base != "" {
		if err := checkMTLSBaseURL(base); err != nil {
			return &ConfigError{Field: "mtls_base_url", Msg: err.Error()}
		}
		base = strings.TrimSuffix(base, "/")
	}
	s.mtls.base.Store(&base)
	return nil
}

func checkMTLSBaseURL(base string) error {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an https base URL: want https://host[:port] with no path, e.g. https://127.0.0.1:8443", base)
	}
	return nil
}

// validateMTLS checks the mTLS settings of the configuration.
func (c *Config) validateMTLS(bad func(string, string, ...any)) {
	if c.MTLSAddr != "" {
		if _, _, err := splitHostPort(c.MTLSAddr); err != nil {
			bad("mtls_addr", "%q: %v (want HOST:PORT, e.g. 127.0.0.1:8443; port 0 picks a free port)", c.MTLSAddr, err)
		}
	}
	if c.MTLSBaseURL != "" {
		if err := checkMTLSBaseURL(c.MTLSBaseURL); err != nil {
			bad("mtls_base_url", "%v", err)
		}
		c.MTLSBaseURL = strings.TrimSuffix(c.MTLSBaseURL, "/")
	}
}

// MTLSHandler serves the mTLS endpoints of every tenant: token,
// introspection, revocation and userinfo under /t/{tenant}/. Serve it on a
// TLS listener that requests client certificates
// (tlsca.CA.MTLSServerConfig); a request without TLS is refused.
func (s *Server) MTLSHandler() http.Handler {
	s.mtls.once.Do(func() {
		m := http.NewServeMux()
		t := s.tenantHandler
		m.HandleFunc("POST /t/{tenant}/token", t("token", (*tenant).token))
		m.HandleFunc("POST /t/{tenant}/introspect", t("introspect", (*tenant).introspect))
		m.HandleFunc("POST /t/{tenant}/revoke", t("revoke", (*tenant).revoke))
		m.HandleFunc("GET /t/{tenant}/userinfo", t("userinfo", (*tenant).userinfo))
		m.HandleFunc("POST /t/{tenant}/userinfo", t("userinfo", (*tenant).userinfo))
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})
		m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusNotFound, "not_found", "No such mTLS endpoint. The mTLS listener serves /t/{tenant}/token, /introspect, /revoke and /userinfo; discovery is on the public listener.")
		})
		s.mtls.mux = m
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			writeJSONError(w, http.StatusBadRequest, "invalid_request", "The mTLS endpoints are served over TLS only: serve MTLSHandler on a TLS listener that requests client certificates.")
			return
		}
		p := &peerCert{}
		if pc := r.TLS.PeerCertificates; len(pc) > 0 {
			p.leaf, p.chain = pc[0], pc[1:]
			p.thumb = x5tS256(pc[0].Raw)
		}
		s.mtls.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, p)))
	})
}

// peerCert is what the mTLS listener saw of the client.
type peerCert struct {
	leaf  *x509.Certificate // nil: no certificate presented
	chain []*x509.Certificate
	thumb string // x5t#S256 of leaf
}

type peerKey struct{}

// peerFrom returns the client certificate of a request, and whether the
// request came through the mTLS listener at all.
func peerFrom(r *http.Request) (*peerCert, bool) {
	p, ok := r.Context().Value(peerKey{}).(*peerCert)
	return p, ok
}

// x5tS256 is the RFC 8705 section 3.1 thumbprint of a DER certificate.
func x5tS256(der []byte) string {
	h := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// mtlsMetadata adds the RFC 8705 discovery metadata (section 3.3 and 5).
func (t *tenant) mtlsMetadata(md map[string]any) {
	base := t.srv.MTLSBaseURL()
	if base == "" {
		return
	}
	p := base + "/t/" + t.name
	md["mtls_endpoint_aliases"] = map[string]string{
		"token_endpoint":         p + "/token",
		"introspection_endpoint": p + "/introspect",
		"revocation_endpoint":    p + "/revoke",
		"userinfo_endpoint":      p + "/userinfo",
	}
	md["tls_client_certificate_bound_access_tokens"] = true
	for _, k := range []string{"token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		if l, ok := md[k].([]string); ok {
			md[k] = append(slices.Clip(l), authTLSClient, authSelfSignedTLSClient)
		}
	}
}

// --- client authentication ---

// authenticateMTLS authenticates a client registered with an RFC 8705
// method. ok is false when the request names no such client, and the
// other strategies apply.
func (t *tenant) authenticateMTLS(ctx context.Context, r *http.Request, form url.Values) (c *client, ok bool, err error) {
	id := requestClientID(r, form)
	c = t.client(id)
	if c == nil || !isMTLSMethod(c.cfg.AuthMethod) {
		return nil, false, nil
	}
	if _, err := t.store.GetClient(ctx, id); err != nil {
		return nil, true, invalidClient("Client %q is unknown or disabled.", id)
	}
	if _, _, basic := r.BasicAuth(); basic || form.Has("client_secret") || form.Has("client_assertion") {
		return nil, true, invalidClient("Client %q authenticates with %s: send client_id in the form and no other credentials (RFC 8705 section 2).", id, c.cfg.AuthMethod)
	}
	if form.Get("client_id") != id {
		return nil, true, invalidClient("Client %q authenticates with %s: name it with the client_id form parameter (RFC 8705 section 2).", id, c.cfg.AuthMethod)
	}
	p, over := peerFrom(r)
	if !over {
		return nil, true, invalidClient("Client %q authenticates with %s: call the mTLS endpoints (mtls_endpoint_aliases in discovery%s) with its client certificate.", id, c.cfg.AuthMethod, aliasNote(t.srv.MTLSBaseURL()))
	}
	if p.leaf == nil {
		return nil, true, invalidClient("Client %q authenticates with %s, but no client certificate was presented in the TLS handshake.", id, c.cfg.AuthMethod)
	}
	err = t.checkClientCertificate(ctx, c, p.leaf, p.chain)
	t.recordCertificate(r, c.cfg.ID, p.leaf, err)
	if err != nil {
		return nil, true, err
	}
	return c, true, nil
}

func aliasNote(base string) string {
	if base == "" {
		return "; this emulator has no mTLS listener: set mtls_addr"
	}
	return ", under " + base
}

// checkClientCertificate checks leaf (with the intermediates the client
// sent) against client c's registration. Errors are invalid_client.
func (t *tenant) checkClientCertificate(ctx context.Context, c *client, leaf *x509.Certificate, chain []*x509.Certificate) error {
	id := c.cfg.ID
	switch c.cfg.AuthMethod {
	case authTLSClient:
		roots := x509.NewCertPool()
		n := 0
		if p := t.srv.mtls.cas.Load(); p != nil {
			roots = p.Clone()
			n++
		}
		if c.cfg.TLSClientCA != "" {
			cas, err := parseCertificates([]byte(c.cfg.TLSClientCA))
			if err != nil {
				return invalidClient("Client %q's tls_client_ca cannot be used: %v.", id, err)
			}
			for _, ca := range cas {
				roots.AddCert(ca)
				n++
			}
		}
		if n == 0 {
			return invalidClient("Client %q uses tls_client_auth, but there is no CA to check its certificate against: start the emulator with its local CA (agentsso serve --mtls-addr) or set the client's tls_client_ca.", id)
		}
		inter := x509.NewCertPool()
		for _, ic := range chain {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return invalidClient("The client certificate (subject %q) does not chain to a CA trusted for client %q: %v.", leaf.Subject.String(), id, err)
		}
		return matchRegisteredName(c.cfg, leaf)
	case authSelfSignedTLSClient:
		keys, err := t.clientCertKeys(ctx, c)
		if err != nil {
			return err
		}
		if matchSelfSigned(keys, leaf) {
			return nil
		}
		return invalidClient("The client certificate (x5t#S256 %s) is not one registered for client %q: its public key is in none of the client's JWKs, and it is no JWK's x5c certificate (RFC 8705 section 2.2).", x5tS256(leaf.Raw), id)
	}
	return invalidClient("Client %q does not authenticate with a certificate.", id)
}

// certKey is a registered key of a self_signed_tls_client_auth client.
type certKey struct {
	key  any
	x5c0 []byte // DER of the first x5c certificate, if any
}

// clientCertKeys lists the keys registered by client c (jwks, or
// jwks_uri).
func (t *tenant) clientCertKeys(ctx context.Context, c *client) ([]certKey, error) {
	var out []certKey
	if set := c.GetJSONWebKeys(); set != nil {
		for _, k := range set.Keys {
			ck := certKey{key: k.Key}
			if len(k.Certificates) > 0 {
				ck.x5c0 = k.Certificates[0].Raw
			}
			out = append(out, ck)
		}
		return out, nil
	}
	uri := c.GetJSONWebKeysURI()
	if uri == "" {
		return nil, invalidClient("Client %q has no keys (jwks or jwks_uri) to check its self-signed certificate against.", c.cfg.ID)
	}
	set, err := t.remoteKeySet(ctx, uri, false)
	if err != nil {
		return nil, invalidClient("The keys of client %q could not be fetched: %v.", c.cfg.ID, err)
	}
	for _, k := range set.Keys {
		ck := certKey{key: k.Key}
		if len(k.Certificates) > 0 {
			ck.x5c0 = k.Certificates[0].Raw
		}
		out = append(out, ck)
	}
	return out, nil
}

// matchSelfSigned reports whether leaf is one of the registered keys.
func matchSelfSigned(keys []certKey, leaf *x509.Certificate) bool {
	pub, _ := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	for _, k := range keys {
		if k.x5c0 != nil && bytes.Equal(k.x5c0, leaf.Raw) {
			return true
		}
		if pub != nil && k.key != nil && pub.Equal(publicOf(k.key)) {
			return true
		}
	}
	return false
}

// publicOf returns the public half of a JWK's key (registered JWKs are
// public, but a private one must not match by accident of type).
func publicOf(k any) crypto.PublicKey {
	if s, ok := k.(crypto.Signer); ok {
		return s.Public()
	}
	return k
}

// matchRegisteredName checks that leaf carries the one name a
// tls_client_auth client registered (RFC 8705 section 2.1.2).
func matchRegisteredName(cc ClientConfig, leaf *x509.Certificate) error {
	id := cc.ID
	switch {
	case cc.TLSClientAuthSubjectDN != "":
		want, err := parseDN(cc.TLSClientAuthSubjectDN)
		if err != nil {
			return invalidClient("Client %q's tls_client_auth_subject_dn cannot be parsed: %v.", id, err)
		}
		got, err := certSubjectDN(leaf)
		if err != nil {
			return invalidClient("The client certificate's subject cannot be read: %v.", err)
		}
		if !dnEqual(want, got) {
			return invalidClient("The client certificate's subject %q is not client %q's tls_client_auth_subject_dn %q.", got.String(), id, cc.TLSClientAuthSubjectDN)
		}
	case cc.TLSClientAuthSANDNS != "":
		if !slices.ContainsFunc(leaf.DNSNames, func(d string) bool {
			return strings.EqualFold(strings.TrimSuffix(d, "."), strings.TrimSuffix(cc.TLSClientAuthSANDNS, "."))
		}) {
			return invalidClient("The client certificate has no DNS SAN %q (it has %q), as client %q registered in tls_client_auth_san_dns.", cc.TLSClientAuthSANDNS, leaf.DNSNames, id)
		}
	case cc.TLSClientAuthSANURI != "":
		var uris []string
		for _, u := range leaf.URIs {
			uris = append(uris, u.String())
		}
		if !slices.Contains(uris, cc.TLSClientAuthSANURI) {
			return invalidClient("The client certificate has no URI SAN %q (it has %q), as client %q registered in tls_client_auth_san_uri.", cc.TLSClientAuthSANURI, uris, id)
		}
	case cc.TLSClientAuthSANIP != "":
		want, err := netip.ParseAddr(cc.TLSClientAuthSANIP)
		if err != nil {
			return invalidClient("Client %q's tls_client_auth_san_ip %q is not an IP address.", id, cc.TLSClientAuthSANIP)
		}
		var ips []string
		found := false
		for _, ip := range leaf.IPAddresses {
			ips = append(ips, ip.String())
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == want.Unmap() {
				found = true
			}
		}
		if !found {
			return invalidClient("The client certificate has no IP SAN %s (it has %q), as client %q registered in tls_client_auth_san_ip.", want, ips, id)
		}
	case cc.TLSClientAuthSANEmail != "":
		if !slices.ContainsFunc(leaf.EmailAddresses, func(e string) bool { return strings.EqualFold(e, cc.TLSClientAuthSANEmail) }) {
			return invalidClient("The client certificate has no email SAN %q (it has %q), as client %q registered in tls_client_auth_san_email.", cc.TLSClientAuthSANEmail, leaf.EmailAddresses, id)
		}
	default:
		return invalidClient("Client %q uses tls_client_auth but registered no certificate name (tls_client_auth_subject_dn or a tls_client_auth_san_* field).", id)
	}
	return nil
}

// --- distinguished names (RFC 4514) ---

// dnAttr is one attribute of an RDN: its type (short name such as CN, or
// dotted OID) and value.
type dnAttr struct{ typ, val string }

// dn is a distinguished name in RFC 4514 order (most specific RDN first).
type dn [][]dnAttr

func (d dn) String() string {
	var b strings.Builder
	for i, rdn := range d {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a.typ + "=" + escapeDNValue(a.val))
		}
	}
	return b.String()
}

func escapeDNValue(v string) string {
	var b strings.Builder
	for i, r := range v {
		switch {
		case strings.ContainsRune(`,+"\<>;=`, r), r == '#' && i == 0, r == ' ' && (i == 0 || i == len(v)-1):
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dnTypes maps attribute OIDs to the RFC 4514 short names (and a few
// common others).
var dnTypes = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET",
	"2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "SERIALNUMBER", "2.5.4.17": "POSTALCODE",
	"0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
	"1.2.840.113549.1.9.1": "EMAILADDRESS",
}

// canonicalType names an attribute type canonically: a known OID or
// short name becomes its upper-case short name, others stay a dotted OID
// (without an "OID." prefix) or upper-case.
func canonicalType(t string) string {
	t = strings.TrimSpace(t)
	if s, ok := strings.CutPrefix(strings.ToUpper(t), "OID."); ok {
		t = s
	}
	if n, ok := dnTypes[t]; ok {
		return n
	}
	t = strings.ToUpper(t)
	switch t {
	case "E":
		return "EMAILADDRESS"
	case "S":
		return "ST"
	}
	return t
}

// maxDNLength bounds a DN parsed.
const maxDNLength = 4096

// parseDN parses an RFC 4514 string: RDNs separated by ',' (or ';'),
// attributes of a multi-valued RDN by '+', type=value with '\' escapes
// (a special character or two hex digits). A value starting with '#' (a
// hex-encoded BER value) is kept as written.
func parseDN(s string) (dn, error) {
	if len(s) > maxDNLength {
		return nil, fmt.Errorf("longer than %d bytes", maxDNLength)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty")
	}
	var out dn
	var rdn []dnAttr
	var typ, val []byte
	inVal := false
	flush := func() error {
		t := strings.TrimSpace(string(typ))
		if !inVal || t == "" {
			return fmt.Errorf("attribute %q has no type=value form", string(typ))
		}
		for _, r := range t {
			if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
				return fmt.Errorf("attribute type %q: want a name such as CN or a dotted OID", t)
			}
		}
		rdn = append(rdn, dnAttr{typ: canonicalType(t), val: string(val)})
		typ, val, inVal = typ[:0], nil, false
		return nil
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case !inVal && ch == '=':
			inVal = true
			val = []byte{}
		case !inVal:
			if ch == ',' || ch == '+' || ch == ';' || ch == '\\' {
				return nil, fmt.Errorf("unexpected %q at byte %d: want type=value", ch, i)
			}
			typ = append(typ, ch)
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
				b, _ := hex.DecodeString(s[i+1 : i+3])
				val = append(val, b...)
				i += 2
				continue
			}
			val = append(val, s[i+1])
			i++
		case ch == '+':
			if err := flush(); err != nil {
				return nil, err
			}
		case ch == ',' || ch == ';':
			if err := flush(); err != nil {
				return nil, err
			}
			out = append(out, rdn)
			rdn = nil
		default:
			val = append(val, ch)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	out = append(out, rdn)
	return out, nil
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// certSubjectDN reads a certificate's subject in its own RDN order (Go's
// pkix.Name.String reorders), RFC 4514 order.
func certSubjectDN(c *x509.Certificate) (dn, error) {
	var seq pkix.RDNSequence
	rest, err := asn1.Unmarshal(c.RawSubject, &seq)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, errors.New("trailing data after the subject")
	}
	out := make(dn, 0, len(seq))
	for i := len(seq) - 1; i >= 0; i-- {
		var rdn []dnAttr
		for _, atv := range seq[i] {
			v, ok := atv.Value.(string)
			if !ok {
				v = fmt.Sprint(atv.Value)
			}
			rdn = append(rdn, dnAttr{typ: canonicalType(atv.Type.String()), val: v})
		}
		out = append(out, rdn)
	}
	return out, nil
}

// dnEqual compares two DNs as distinguishedNameMatch does for string
// attributes: RDN by RDN in order, the attributes of an RDN as a set,
// values case-insensitively with leading, trailing and repeated inner
// spaces folded.
func dnEqual(a, b dn) bool {
	if len(a) != len(b) {
		return false
	}
	norm := func(rdn []dnAttr) []string {
		out := make([]string, len(rdn))
		for i, x := range rdn {
			out[i] = x.typ + "=" + strings.ToLower(strings.Join(strings.Fields(x.val), " "))
		}
		slices.Sort(out)
		return out
	}
	for i := range a {
		if !slices.Equal(norm(a[i]), norm(b[i])) {
			return false
		}
	}
	return true
}

// --- certificates as bytes ---

// parseCertificates parses one or more certificates given as PEM
// CERTIFICATE blocks or as DER (one certificate, or several
// concatenated). It never panics on any input.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	if len(b) > maxCertificateBytes {
		return nil, fmt.Errorf("larger than %d KiB", maxCertificateBytes>>10)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty: want PEM CERTIFICATE blocks")
	}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		var out []*x509.Certificate
		rest := b
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("PEM block %q: want CERTIFICATE", blk.Type)
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %v", len(out)+1, err)
			}
			out = append(out, c)
		}
		if len(out) == 0 {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		return out, nil
	}
	cs, err := x509.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor DER certificates: %v", err)
	}
	if len(cs) == 0 {
		return nil, errors.New("no certificate")
	}
	return cs, nil
}

// --- certificate-bound tokens ---

// bindCertificate makes the token of an access request certificate-bound
// when the client must get one (see the package comment above), and
// otherwise drops a binding carried over from a stored session.
func (t *tenant) bindCertificate(r *http.Request, ar fosite.AccessRequester, c *client, sess *Session) error {
	if err := t.checkRefreshCertificate(r, ar, c, sess); err != nil {
		return err
	}
	want := isMTLSMethod(c.cfg.AuthMethod) || c.cfg.TLSClientCertificateBoundAccessTokens
	if !want {
		if _, ok := sess.Cnf[cnfX5T]; ok {
			sess.Cnf = maps.Clone(sess.Cnf)
			delete(sess.Cnf, cnfX5T)
			if len(sess.Cnf) == 0 {
				sess.Cnf = nil
			}
		}
		return nil
	}
	p, over := peerFrom(r)
	if !over || p.leaf == nil {
		return fosite.ErrInvalidRequest.WithHintf("Client %q gets only certificate-bound access tokens (RFC 8705 section 3): ask at the mTLS token endpoint (mtls_endpoint_aliases in discovery%s) with its client certificate.", c.cfg.ID, aliasNote(t.srv.MTLSBaseURL()))
	}
	cnf := maps.Clone(sess.Cnf)
	if cnf == nil {
		cnf = map[string]any{}
	}
	cnf[cnfX5T] = p.thumb
	sess.Cnf = cnf
	if !isMTLSMethod(c.cfg.AuthMethod) {
		t.recordCertificateResult(r, c.cfg.ID, p.leaf, "bound", "access token bound to the certificate")
	}
	return nil
}

// checkRefreshCertificate holds a public client's refresh token to the
// certificate its grant's tokens were bound to (RFC 8705 section 4): a
// public client has no other credential, so its refresh token works only
// over the mTLS listener with that same certificate. Anything else is
// invalid_grant, and consumes nothing.
func (t *tenant) checkRefreshCertificate(r *http.Request, ar fosite.AccessRequester, c *client, sess *Session) error {
	bound, _ := sess.Cnf[cnfX5T].(string)
	if bound == "" || !c.IsPublic() || !ar.GetGrantTypes().ExactOne(GrantRefreshToken) {
		return nil
	}
	p, over := peerFrom(r)
	switch {
	case !over || p.leaf == nil:
		return fosite.ErrInvalidGrant.WithHintf("The refresh token of public client %q is bound to its client certificate (cnf.x5t#S256 %s, RFC 8705 section 4): refresh at the mTLS token endpoint (mtls_endpoint_aliases in discovery%s) with that certificate.", c.cfg.ID, bound, aliasNote(t.srv.MTLSBaseURL()))
	case subtle.ConstantTimeCompare([]byte(p.thumb), []byte(bound)) != 1:
		t.recordCertificateResult(r, c.cfg.ID, p.leaf, "deny", "refresh token bound to another certificate")
		return fosite.ErrInvalidGrant.WithHintf("The refresh token of public client %q is bound to another client certificate (cnf.x5t#S256 %s, presented %s; RFC 8705 section 4).", c.cfg.ID, bound, p.thumb)
	}
	return nil
}

// checkCertificateBinding checks, at a resource endpoint (userinfo), that
// a certificate-bound token is presented over the mTLS listener with its
// certificate. It returns "" when the token may be used.
func (t *tenant) checkCertificateBinding(r *http.Request, c *AccessClaims) string {
	want, _ := c.Cnf[cnfX5T].(string)
	if want == "" {
		return ""
	}
	p, over := peerFrom(r)
	switch {
	case !over || p.leaf == nil:
		return "The access token is certificate-bound (cnf.x5t#S256): present it at the mTLS endpoint with its client certificate (RFC 8705 section 3)."
	case p.thumb != want:
		t.recordCertificateResult(r, c.ClientID, p.leaf, "deny", "x5t#S256 is not the token's cnf")
		return "The client certificate is not the one the access token is bound to (cnf.x5t#S256 " + want + ", presented " + p.thumb + ")."
	}
	return ""
}

// --- certificates seen ---

// CertificateRecord is a client certificate the mTLS listener saw, and
// what the emulator made of it.
type CertificateRecord struct {
	Time     time.Time `json:"time"`
	Endpoint string    `json:"endpoint"`
	ClientID string    `json:"client_id,omitempty"`
	Source   string    `json:"source"`
	// Subject and Issuer are RFC 4514 strings.
	Subject string          `json:"subject"`
	Issuer  string          `json:"issuer"`
	SANs    CertificateSANs `json:"sans"`
	// Thumbprint is x5t#S256: base64url(SHA-256(DER)).
	Thumbprint string    `json:"x5t#S256"`
	SelfSigned bool      `json:"self_signed"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	// Result is allow (client authenticated), deny (refused) or bound
	// (the certificate bound a token of a client that authenticated
	// otherwise).
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// CertificateSANs are a certificate's subject alternative names.
type CertificateSANs struct {
	DNS   []string `json:"dns,omitempty"`
	URI   []string `json:"uri,omitempty"`
	IP    []string `json:"ip,omitempty"`
	Email []string `json:"email,omitempty"`
}

// describeCertificate fills a record's certificate fields.
func describeCertificate(c *x509.Certificate) CertificateRecord {
	rec := CertificateRecord{
		Thumbprint: x5tS256(c.Raw),
		NotBefore:  c.NotBefore.UTC(),
		NotAfter:   c.NotAfter.UTC(),
		SelfSigned: bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil,
		SANs:       CertificateSANs{DNS: slices.Clone(c.DNSNames), Email: slices.Clone(c.EmailAddresses)},
	}
	if d, err := certSubjectDN(c); err == nil {
		rec.Subject = d.String()
	} else {
		rec.Subject = c.Subject.String()
	}
	rec.Issuer = c.Issuer.String()
	for _, u := range c.URIs {
		rec.SANs.URI = append(rec.SANs.URI, u.String())
	}
	for _, ip := range c.IPAddresses {
		rec.SANs.IP = append(rec.SANs.IP, ip.String())
	}
	return rec
}

func (t *tenant) recordCertificate(r *http.Request, clientID string, c *x509.Certificate, err error) {
	if err != nil {
		t.recordCertificateResult(r, clientID, c, "deny", fosite.ErrorToRFC6749Error(err).GetDescription())
		return
	}
	t.recordCertificateResult(r, clientID, c, "allow", "client authenticated")
}

func (t *tenant) recordCertificateResult(r *http.Request, clientID string, c *x509.Certificate, result, reason string) {
	rec := describeCertificate(c)
	rec.Time = t.clock.Now().UTC()
	rec.Endpoint = endpointOf(r.URL.Path)
	rec.ClientID = clientID
	rec.Source = r.RemoteAddr
	rec.Result, rec.Reason = result, reason
	m := &t.srv.mtls
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string][]CertificateRecord{}
	}
	l := append(m.seen[t.name], rec)
	if len(l) > maxCertificateRecords {
		l = slices.Clone(l[len(l)-maxCertificateRecords:])
	}
	m.seen[t.name] = l
}

func endpointOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// Certificates lists the client certificates the tenant's mTLS endpoints
// saw (the last 1000), oldest first.
func (s *Server) Certificates(tenant string) ([]CertificateRecord, error) {
	if _, err := s.adminTenant(tenant); err != nil {
		return nil, err
	}
	s.mtls.mu.Lock()
	defer s.mtls.mu.Unlock()
	out := slices.Clone(s.mtls.seen[tenant])
	if out == nil {
		out = []CertificateRecord{}
	}
	return out, nil
}

func (s *Server) admListCertificates(r *http.Request) (int, any, error) {
	cs, err := s.Certificates(r.PathValue("tenant"))
	if err != nil {
		return 0, nil, err
	}
	if id := r.URL.Query().Get("client_id"); id != "" {
		cs = slices.DeleteFunc(cs, func(c CertificateRecord) bool { return c.ClientID != id })
	}
	return http.StatusOK, cs, nil
}

// --- configuration ---

// validateMTLSClient checks a client's RFC 8705 fields.
func validateMTLSClient(bad func(string, string, ...any), cf string, cl *ClientConfig) {
	names := map[string]string{
		"tls_client_auth_subject_dn": cl.TLSClientAuthSubjectDN,
		"tls_client_auth_san_dns":    cl.TLSClientAuthSANDNS,
		"tls_client_auth_san_uri":    cl.TLSClientAuthSANURI,
		"tls_client_auth_san_ip":     cl.TLSClientAuthSANIP,
		"tls_client_auth_san_email":  cl.TLSClientAuthSANEmail,
	}
	var set []string
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if names[k] != "" {
			set = append(set, k)
		}
	}
	switch cl.AuthMethod {
	case authTLSClient:
		if len(set) != 1 {
			bad(cf+".tls_client_auth_subject_dn", "tls_client_auth needs exactly one of tls_client_auth_subject_dn, tls_client_auth_san_dns, _san_uri, _san_ip or _san_email (RFC 8705 section 2.1.2); %d are set", len(set))
		}
	case authSelfSignedTLSClient:
		if cl.JWKS == "" && cl.JWKSURI == "" {
			bad(cf+".jwks", "self_signed_tls_client_auth needs the client's certificate keys: set jwks (a JWK Set with the certificate's public key or x5c) or jwks_uri")
		}
	}
	if !isMTLSMethod(cl.AuthMethod) || cl.AuthMethod == authSelfSignedTLSClient {
		for _, k := range set {
			bad(cf+"."+k, "applies only to auth_method tls_client_auth, not %s", cl.AuthMethod)
		}
	}
	if cl.TLSClientAuthSubjectDN != "" {
		if _, err := parseDN(cl.TLSClientAuthSubjectDN); err != nil {
			bad(cf+".tls_client_auth_subject_dn", "%q is not an RFC 4514 distinguished name (e.g. CN=agent-7,O=agentsso): %v", cl.TLSClientAuthSubjectDN, err)
		}
	}
	if cl.TLSClientAuthSANIP != "" {
		if _, err := netip.ParseAddr(cl.TLSClientAuthSANIP); err != nil {
			bad(cf+".tls_client_auth_san_ip", "%q is not an IP address", cl.TLSClientAuthSANIP)
		}
	}
	if cl.TLSClientAuthSANURI != "" {
		if u, err := url.Parse(cl.TLSClientAuthSANURI); err != nil || !u.IsAbs() {
			bad(cf+".tls_client_auth_san_uri", "%q is not an absolute URI (e.g. spiffe://example.test/agent/7)", cl.TLSClientAuthSANURI)
		}
	}
	if cl.TLSClientAuthSANEmail != "" && !strings.Contains(cl.TLSClientAuthSANEmail, "@") {
		bad(cf+".tls_client_auth_san_email", "%q is not an email address", cl.TLSClientAuthSANEmail)
	}
	if cl.TLSClientAuthSANDNS != "" && strings.ContainsAny(cl.TLSClientAuthSANDNS, " /:") {
		bad(cf+".tls_client_auth_san_dns", "%q is not a DNS name", cl.TLSClientAuthSANDNS)
	}
	if cl.TLSClientCA != "" {
		if cl.AuthMethod != authTLSClient {
			bad(cf+".tls_client_ca", "applies only to auth_method tls_client_auth, not %s", cl.AuthMethod)
		} else if cas, err := parseCertificates([]byte(cl.TLSClientCA)); err != nil {
			bad(cf+".tls_client_ca", "want PEM CA certificates: %v", err)
		} else {
			for i, ca := range cas {
				if !ca.IsCA {
					bad(cf+".tls_client_ca", "certificate %d (%s) is not a CA certificate", i+1, ca.Subject)
				}
			}
		}
	}
}

// --- dynamic registration (RFC 8705 section 2.1.2, 2.2.2 and 3.4) ---

// mtlsMetadata are the RFC 8705 client metadata, embedded in
// clientMetadata.
type mtlsMetadata struct {
	TLSClientAuthSubjectDN                string `json:"tls_client_auth_subject_dn,omitempty"`
	TLSClientAuthSANDNS                   string `json:"tls_client_auth_san_dns,omitempty"`
	TLSClientAuthSANURI                   string `json:"tls_client_auth_san_uri,omitempty"`
	TLSClientAuthSANIP                    string `json:"tls_client_auth_san_ip,omitempty"`
	TLSClientAuthSANEmail                 string `json:"tls_client_auth_san_email,omitempty"`
	TLSClientCertificateBoundAccessTokens bool   `json:"tls_client_certificate_bound_access_tokens,omitempty"`
}

// parseMTLSMetadata decodes and checks the RFC 8705 metadata of a
// registration, once the authentication method and keys are known.
func parseMTLSMetadata(raw map[string]json.RawMessage, md *clientMetadata) *RegistrationError {
	m := &md.mtlsMetadata
	for _, f := range []struct {
		name string
		v    *string
	}{
		{"tls_client_auth_subject_dn", &m.TLSClientAuthSubjectDN},
		{"tls_client_auth_san_dns", &m.TLSClientAuthSANDNS},
		{"tls_client_auth_san_uri", &m.TLSClientAuthSANURI},
		{"tls_client_auth_san_ip", &m.TLSClientAuthSANIP},
		{"tls_client_auth_san_email", &m.TLSClientAuthSANEmail},
	} {
		if _, err := member(raw, f.name, f.v, "a string"); err != nil {
			return err
		}
	}
	if _, err := member(raw, "tls_client_certificate_bound_access_tokens", &m.TLSClientCertificateBoundAccessTokens, "a boolean"); err != nil {
		return err
	}
	cc := ClientConfig{AuthMethod: md.AuthMethod, JWKSURI: md.JWKSURI}
	if md.JWKS != nil {
		cc.JWKS = "{}"
	}
	m.apply(&cc)
	var first *RegistrationError
	validateMTLSClient(func(field, format string, a ...any) {
		if first == nil {
			first = metadataErr(strings.TrimPrefix(field, "."), format, a...)
		}
	}, "", &cc)
	return first
}

// apply copies the metadata into a client's configuration.
func (m mtlsMetadata) apply(cc *ClientConfig) {
	cc.TLSClientAuthSubjectDN = m.TLSClientAuthSubjectDN
	cc.TLSClientAuthSANDNS = m.TLSClientAuthSANDNS
	cc.TLSClientAuthSANURI = m.TLSClientAuthSANURI
	cc.TLSClientAuthSANIP = m.TLSClientAuthSANIP
	cc.TLSClientAuthSANEmail = m.TLSClientAuthSANEmail
	cc.TLSClientCertificateBoundAccessTokens = m.TLSClientCertificateBoundAccessTokens
}
