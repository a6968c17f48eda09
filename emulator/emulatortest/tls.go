package emulatortest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentsso/agentsso/emulator"
	"github.com/agentsso/agentsso/emulator/tlsca"
)

// NewTLS is New with the public endpoints served over HTTPS by a
// certificate from a local CA (emulator/tlsca) created in a temporary
// directory, as `agentsso serve --tls` does: issuers, JWKS and token
// endpoints are https://127.0.0.1:PORT/…, for targets such as
// mod_auth_openidc that refuse an http:// JWKS URL. The admin API stays
// plain HTTP on loopback. caFile is the CA certificate (PEM) a target must
// trust (curl --cacert, OIDCCABundlePath, …).
func NewTLS(tb testing.TB, cfg *emulator.Config, opts ...emulator.Option) (env *Env, caFile string) {
	tb.Helper()
	c := emulator.DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	ca, err := tlsca.LoadOrCreate(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tc, err := ca.ServerTLSConfig([]string{"127.0.0.1", "localhost"})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	c.TLS = true
	c.PublicBaseURL = "https://" + ln.Addr().String()
	c.Addr = ln.Addr().String()
	c.AdminAddr = aln.Addr().String()
	s, err := emulator.New(context.Background(), c, opts...)
	if err != nil {
		ln.Close()
		aln.Close()
		tb.Fatal(err)
	}
	// httptest serves TLS with the Certificates given in TLS, so the
	// chain is the local CA's and not httptest's own test certificate.
	pub := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}, TLS: tc}
	pub.StartTLS()
	adm := &httptest.Server{Listener: aln, Config: &http.Server{Handler: s.AdminHandler()}}
	adm.Start()
	tb.Cleanup(func() { pub.Close(); adm.Close(); s.Close() })
	env = &Env{Server: s, URL: pub.URL, AdminURL: adm.URL, public: pub, admin: adm}
	return env, ca.CertFile()
}
