package refgw

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Certificate-bound access tokens (RFC 8705 section 3).
//
// With Config.MTLS the gateway accepts a token whose cnf carries
// x5t#S256 only on a request whose TLS client certificate has that
// thumbprint: base64url(SHA-256(DER)). The certificate is the TLS peer's
// (r.TLS.PeerCertificates[0]): serve the gateway with TLSConfig, so that
// the handshake asks for one and verifies it against the CAs that issue
// client certificates. Possession is proven by the handshake itself (the
// client signed it with the certificate's key), so the thumbprint is what
// binds; no chain is needed for that.
//
// The gateway terminates TLS itself, so a certificate or source address in
// a request header (Client-Cert of RFC 9440, X-Client-Cert,
// X-SSL-Client-Cert, X-Forwarded-Client-Cert, X-ARR-ClientCert;
// X-Forwarded-For, X-Real-IP, Forwarded) can only have come from the
// client, and is ignored (RFC 9700 section 4.13). The flaws
// mtls-trusts-cert-header and trusts-forwarded-for show what believing
// them does.

// TLSConfig is the server configuration of the gateway in mTLS mode: TLS
// 1.2 or later, cert as the server certificate, and client certificates
// requested and, when one is presented, verified against clientCAs
// (tls.VerifyClientCertIfGiven). A caller without a certificate still
// completes the handshake: bearer tokens keep working, and a
// certificate-bound token is refused with an OAuth error the caller can
// read instead of a TLS alert.
func TLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
	}
}

// x5tS256 is a certificate's RFC 8705 section 3.1 thumbprint.
func x5tS256(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// checkCertificate applies RFC 8705 section 3: a certificate-bound token
// needs the client certificate it is bound to, else 401 invalid_token.
func (st *request) checkCertificate(c *tokenClaims) *denial {
	g := st.g
	if c.x5t == "" || g.flaw(FlawMTLSBindingUnchecked) {
		return nil
	}
	cert := st.clientCertificate()
	if cert == nil {
		return invalidToken(errNoClientCert, "the token is certificate-bound (cnf.x5t#S256): present its client certificate in the TLS handshake")
	}
	st.rec.CertThumbprint = x5tS256(cert.Raw)
	if subtle.ConstantTimeCompare([]byte(st.rec.CertThumbprint), []byte(c.x5t)) != 1 {
		return invalidToken(errCertMismatch, "the client certificate is not the one the token is bound to")
	}
	return nil
}

// clientCertificate is the TLS peer's certificate, or nil. Headers are
// consulted only with the mtls-trusts-cert-header flaw.
func (st *request) clientCertificate() *x509.Certificate {
	if st.g.flaw(FlawMTLSTrustsCertHeader) {
		if c := certFromHeaders(st.r.Header); c != nil {
			return c
		}
	}
	if st.r.TLS == nil || len(st.r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return st.r.TLS.PeerCertificates[0]
}

// certFromHeaders reads a client certificate the way gateways behind a
// TLS-terminating proxy do: the mtls-trusts-cert-header flaw only. It
// never panics on any input.
func certFromHeaders(h http.Header) *x509.Certificate {
	parseDER := func(b []byte, err error) *x509.Certificate {
		if err != nil || len(b) == 0 || len(b) > maxCertHeaderBytes {
			return nil
		}
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil
		}
		return c
	}
	parsePEM := func(s string) *x509.Certificate {
		if len(s) > 2*maxCertHeaderBytes {
			return nil
		}
		for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			u, err := unescape(s)
			if err != nil {
				continue
			}
			if blk, _ := pem.Decode([]byte(u)); blk != nil && blk.Type == "CERTIFICATE" {
				return parseDER(blk.Bytes, nil)
			}
		}
		return nil
	}
	// RFC 9440 section 2.2: a Structured Field Byte Sequence of the DER.
	if v := strings.TrimSpace(h.Get("Client-Cert")); len(v) > 2 && v[0] == ':' && v[len(v)-1] == ':' {
		if c := parseDER(base64.StdEncoding.DecodeString(v[1 : len(v)-1])); c != nil {
			return c
		}
	}
	// nginx ($ssl_client_escaped_cert), HAProxy, Apache: a URL-escaped PEM.
	for _, name := range []string{"X-Client-Cert", "X-SSL-Client-Cert"} {
		if c := parsePEM(h.Get(name)); c != nil {
			return c
		}
	}
	// Envoy: By=…;Hash=…;Cert="<URL-escaped PEM>".
	for _, el := range strings.Split(h.Get("X-Forwarded-Client-Cert"), ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(el), "=")
		if strings.EqualFold(k, "Cert") {
			if c := parsePEM(strings.Trim(v, `"`)); c != nil {
				return c
			}
		}
	}
	// Azure App Service: the DER in base64.
	return parseDER(base64.StdEncoding.DecodeString(strings.TrimSpace(h.Get("X-ARR-ClientCert"))))
}

// maxCertHeaderBytes bounds a certificate read from a header (flaw only).
const maxCertHeaderBytes = 16 << 10

// sourceAddr is the request's source address: the TCP peer. Only the
// trusts-forwarded-for flaw believes X-Forwarded-For, X-Real-IP or
// Forwarded instead.
func (st *request) sourceAddr() (netip.Addr, bool) {
	if st.g.flaw(FlawTrustsForwardedFor) {
		if a, ok := forwardedSource(st.r.Header); ok {
			return a, true
		}
	}
	ap, err := netip.ParseAddrPort(st.r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// forwardedSource is the client address a forwarding header claims: the
// first X-Forwarded-For entry, X-Real-IP, or the first Forwarded for=.
func forwardedSource(h http.Header) (netip.Addr, bool) {
	parse := func(s string) (netip.Addr, bool) {
		s = strings.Trim(strings.TrimSpace(s), `"`)
		if host, _, err := net.SplitHostPort(s); err == nil {
			s = host
		}
		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if err != nil {
			return netip.Addr{}, false
		}
		return a.Unmap().WithZone(""), true
	}
	if v := h.Get("X-Forwarded-For"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		if a, ok := parse(first); ok {
			return a, true
		}
	}
	if a, ok := parse(h.Get("X-Real-IP")); ok {
		return a, true
	}
	for _, el := range strings.FieldsFunc(h.Get("Forwarded"), func(r rune) bool { return r == ';' || r == ',' }) {
		k, v, _ := strings.Cut(strings.TrimSpace(el), "=")
		if strings.EqualFold(k, "for") {
			return parse(v)
		}
	}
	return netip.Addr{}, false
}

// confirmationNote says which cnf members the gateway can check.
func (g *Gateway) confirmationNote() string {
	if g.cfg.MTLS {
		return "only cnf.jkt (DPoP) and cnf.x5t#S256 (mutual TLS) are supported"
	}
	return "only cnf.jkt (DPoP) is supported"
}
