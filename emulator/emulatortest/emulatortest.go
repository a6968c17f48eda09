// Package emulatortest runs an agentsso emulator inside a test: real HTTP
// on 127.0.0.1, closed with the test.
package emulatortest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentsso/agentsso/emulator"
)

// Env is a running emulator.
type Env struct {
	Server   *emulator.Server
	URL      string // public base URL, e.g. http://127.0.0.1:41234
	AdminURL string
	public   *httptest.Server
	admin    *httptest.Server
}

// Issuer is a tenant's issuer.
func (e *Env) Issuer(tenant string) string { return e.URL + "/t/" + tenant }

// TokenURL is a tenant's token endpoint.
func (e *Env) TokenURL(tenant string) string { return e.Issuer(tenant) + "/token" }

// New starts the emulator with cfg (the embedded default when nil) on
// 127.0.0.1 ports chosen by the kernel.
func New(tb testing.TB, cfg *emulator.Config, opts ...emulator.Option) *Env {
	tb.Helper()
	c := emulator.DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c.PublicBaseURL = "http://" + ln.Addr().String()
	c.Addr = ln.Addr().String()
	c.AdminAddr = aln.Addr().String()
	s, err := emulator.New(context.Background(), c, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	pub := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	pub.Start()
	adm := &httptest.Server{Listener: aln, Config: &http.Server{Handler: s.AdminHandler()}}
	adm.Start()
	tb.Cleanup(func() { pub.Close(); adm.Close(); s.Close() })
	return &Env{Server: s, URL: pub.URL, AdminURL: adm.URL, public: pub, admin: adm}
}
