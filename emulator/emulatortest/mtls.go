package emulatortest

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/tlsca"
)

// MTLS is the RFC 8705 mutual-TLS listener of an emulator started by
// NewMTLS.
type MTLS struct {
	// URL is the mTLS base URL, e.g. https://127.0.0.1:41235; a tenant's
	// mTLS token endpoint is URL + "/t/{tenant}/token".
	URL string
	// CA is the local CA: the listener's server certificate is from it,
	// and tls_client_auth certificates must chain to it (CA.ClientCert).
	CA *tlsca.CA
}

// TokenURL is a tenant's mTLS token endpoint.
func (m *MTLS) TokenURL(tenant string) string { return m.URL + "/t/" + tenant + "/token" }

// Client returns an HTTP client that trusts the CA and presents certs (none
// when empty) at the handshake, from a fresh connection pool.
func (m *MTLS) Client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: m.CA.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12},
	}}
}

// NewMTLS is New plus an mTLS listener on 127.0.0.1 (Server.MTLSHandler
// behind tlsca.CA.MTLSServerConfig, as `agentsso serve` runs it), with a
// local CA in a temporary directory passed as emulator.WithClientCAs, and
// the mTLS base URL set so that discovery advertises mtls_endpoint_aliases.
func NewMTLS(tb testing.TB, cfg *emulator.Config, opts ...emulator.Option) (*Env, *MTLS) {
	tb.Helper()
	ca, err := tlsca.LoadOrCreate(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	env := New(tb, cfg, append(opts, emulator.WithClientCAs(ca.Pool()))...)
	tc, err := ca.MTLSServerConfig([]string{"127.0.0.1", "localhost"})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: env.Server.MTLSHandler()}, TLS: tc}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	if err := env.Server.SetMTLSBaseURL(srv.URL); err != nil {
		tb.Fatal(err)
	}
	return env, &MTLS{URL: srv.URL, CA: ca}
}
