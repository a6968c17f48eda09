package tlsca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newCA(t *testing.T, dir string) *CA {
	t.Helper()
	ca, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return ca
}

// serve starts an HTTPS server on 127.0.0.1:0 that answers with the
// common name of the client certificate, if any.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: cfg,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello")
			if len(r.TLS.PeerCertificates) > 0 {
				c := r.TLS.PeerCertificates[0]
				io.WriteString(w, " "+c.Subject.CommonName)
				for _, u := range c.URIs {
					io.WriteString(w, " "+u.String())
				}
			}
		}),
		ErrorLog: log.New(io.Discard, "", 0), // handshake failures are expected
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func get(t *testing.T, url string, cfg *tls.Config) (string, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestHTTPSServer(t *testing.T) {
	ca := newCA(t, t.TempDir())
	cfg, err := ca.ServerTLSConfig([]string{"idp.agentsso.test"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	port := serve(t, cfg)

	// A client that trusts only the CA reaches the server by IP, by
	// localhost, and by a name given to ServerCert.
	for _, tc := range []struct{ url, serverName string }{
		{"https://127.0.0.1:" + port + "/", ""},
		{"https://localhost:" + port + "/", ""},
		{"https://127.0.0.1:" + port + "/", "idp.agentsso.test"},
	} {
		body, err := get(t, tc.url, &tls.Config{RootCAs: ca.Pool(), ServerName: tc.serverName})
		if err != nil {
			t.Errorf("GET %s (server name %q) trusting the CA: %v", tc.url, tc.serverName, err)
			continue
		}
		if body != "hello" {
			t.Errorf("GET %s = %q, want hello", tc.url, body)
		}
	}

	// A client with the system roots does not trust it.
	_, err = get(t, "https://127.0.0.1:"+port+"/", &tls.Config{})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("GET with the system roots = %v, want x509.UnknownAuthorityError", err)
	}

	// A name not in the certificate is refused.
	_, err = get(t, "https://127.0.0.1:"+port+"/", &tls.Config{RootCAs: ca.Pool(), ServerName: "other.test"})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("GET as other.test = %v, want x509.HostnameError", err)
	}
}

func TestReloadSameCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tls")
	ca1 := newCA(t, dir)
	pem1, err := os.ReadFile(ca1.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	ca2 := newCA(t, dir)
	pem2, err := os.ReadFile(ca2.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pem1, pem2) || !bytes.Equal(ca1.cert.Raw, ca2.cert.Raw) {
		t.Error("reloading the CA directory gave a different CA certificate")
	}
	if !ca1.key.Equal(ca2.key) {
		t.Error("reloading the CA directory gave a different key")
	}

	c := ca1.cert
	got := struct {
		CN                string
		IsCA, MaxPathZero bool
		Curve             string
		Years             int
	}{c.Subject.CommonName, c.IsCA, c.MaxPathLenZero, c.PublicKey.(*ecdsa.PublicKey).Curve.Params().Name,
		int(c.NotAfter.Sub(c.NotBefore).Hours() / 24 / 365)}
	want := got
	want.CN, want.IsCA, want.MaxPathZero, want.Curve, want.Years = CommonName, true, true, elliptic.P256().Params().Name, 10
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CA certificate (-want +got):\n%s", diff)
	}

	for name, mode := range map[string]os.FileMode{KeyFileName: 0o600, "": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", filepath.Join(dir, name), fi.Mode().Perm(), mode)
		}
	}
}

func TestConcurrentCreate(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	cas := make([]*CA, 8)
	for i := range cas {
		wg.Go(func() {
			ca, err := LoadOrCreate(dir)
			if err != nil {
				t.Error(err)
				return
			}
			cas[i] = ca
		})
	}
	wg.Wait()
	for _, ca := range cas[1:] {
		if ca == nil || !bytes.Equal(ca.cert.Raw, cas[0].cert.Raw) {
			t.Fatal("concurrent LoadOrCreate calls created different CAs")
		}
	}
}

func TestServerCert(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	c1, err := ca.ServerCert([]string{"API.example.test.", "10.0.0.1", "[fe80::1]", ""})
	if err != nil {
		t.Fatal(err)
	}
	leaf := c1.Leaf
	if diff := cmp.Diff([]string{"api.example.test", "localhost"}, leaf.DNSNames); diff != "" {
		t.Errorf("DNSNames (-want +got):\n%s", diff)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]string{"10.0.0.1", "127.0.0.1", "::1", "fe80::1"}, ips); diff != "" {
		t.Errorf("IPAddresses (-want +got):\n%s", diff)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < LeafValidity || got > LeafValidity+2*time.Hour {
		t.Errorf("validity %v, want about %v", got, LeafValidity)
	}
	for _, host := range []string{"api.example.test", "localhost", "127.0.0.1", "::1", "10.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify the server certificate for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the server certificate verifies as a client certificate")
	}

	// The same names in any order, case or repetition reuse the cached
	// certificate, in this CA and in one reloaded from the directory.
	for _, c := range []*CA{ca, newCA(t, dir)} {
		c2, err := c.ServerCert([]string{"::1", "fe80::1", "10.0.0.1", "api.example.test", "localhost", "Api.Example.Test"})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c2.Leaf.Raw, leaf.Raw) {
			t.Error("the same names gave a new certificate")
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "server-*.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Errorf("server files %v, want one certificate and one key", files)
	}

	// Other names give another certificate.
	c3, err := ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c3.Leaf.Raw, leaf.Raw) {
		t.Error("different names gave the same certificate")
	}
}

func TestServerCertRenewal(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := loadOrCreate(dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	old, err := ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}

	// Still valid for more than a day: reused.
	now = old.Leaf.NotAfter.Add(-RenewBefore - time.Minute)
	c, err := ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Leaf.Raw, old.Leaf.Raw) {
		t.Error("renewed a certificate valid for more than RenewBefore")
	}

	// Valid for less than a day: replaced, in memory and on disk.
	now = old.Leaf.NotAfter.Add(-RenewBefore + time.Minute)
	c, err = ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c.Leaf.Raw, old.Leaf.Raw) {
		t.Fatal("kept a certificate valid for less than RenewBefore")
	}
	ca2, err := loadOrCreate(dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ca2.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c2.Leaf.Raw, c.Leaf.Raw) {
		t.Error("the renewed certificate was not cached on disk")
	}
}

func TestServerCertDamagedCache(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir)
	old, err := ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := filepath.Glob(filepath.Join(dir, "server-*-key.pem"))
	if err != nil || len(keys) != 1 {
		t.Fatalf("server key files %v, %v", keys, err)
	}
	if err := os.WriteFile(keys[0], []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := newCA(t, dir).ServerCert(nil)
	if err != nil {
		t.Fatalf("ServerCert over a damaged cache: %v", err)
	}
	if bytes.Equal(c.Leaf.Raw, old.Leaf.Raw) {
		t.Error("reused a certificate whose key file is damaged")
	}
}

func TestInvalidNames(t *testing.T) {
	ca := newCA(t, t.TempDir())
	for _, h := range []string{"https://idp.test", "idp.test:8443", "a b", "-x.test", "a..b", "*", "x.*.test", "fe80::1%eth0"} {
		if _, err := ca.ServerCert([]string{h}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ServerCert(%q) = %v, want ErrInvalidName", h, err)
		}
	}
	for _, tc := range []struct {
		cn        string
		dns, uris []string
	}{
		{"", nil, nil},
		{"agent", []string{"bad name"}, nil},
		{"agent", nil, []string{"/relative/path"}},
		{"agent", nil, []string{"%zz"}},
	} {
		if _, err := ca.ClientCert(tc.cn, tc.dns, tc.uris); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ClientCert(%q, %q, %q) = %v, want ErrInvalidName", tc.cn, tc.dns, tc.uris, err)
		}
	}
	if _, err := ca.ServerCert([]string{"*.agents.test"}); err != nil {
		t.Errorf("ServerCert(wildcard) = %v", err)
	}
}

func TestClientCert(t *testing.T) {
	ca := newCA(t, t.TempDir())
	c, err := ca.ClientCert("agent-7", []string{"agent7.example.test"}, []string{"spiffe://example.test/agent/7"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify the client certificate for client auth: %v", err)
	}
	var inv x509.CertificateInvalidError
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); !errors.As(err, &inv) || inv.Reason != x509.IncompatibleUsage {
		t.Errorf("verify the client certificate for server auth = %v, want IncompatibleUsage", err)
	}
	want := struct {
		CN   string
		DNS  []string
		URIs []*url.URL
	}{"agent-7", []string{"agent7.example.test"}, []*url.URL{{Scheme: "spiffe", Host: "example.test", Path: "/agent/7"}}}
	got := want
	got.CN, got.DNS, got.URIs = leaf.Subject.CommonName, leaf.DNSNames, leaf.URIs
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("client certificate (-want +got):\n%s", diff)
	}

	// Not cached: each call gives a new certificate and key.
	c2, err := ca.ClientCert("agent-7", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(c2.Leaf.Raw, leaf.Raw) {
		t.Error("ClientCert returned the same certificate twice")
	}

	// mTLS: a server requiring client certificates from the CA accepts it
	// and refuses a client without one.
	cfg, err := ca.ServerTLSConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	port := serve(t, cfg)
	body, err := get(t, "https://127.0.0.1:"+port+"/", &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{c}})
	if err != nil {
		t.Fatalf("mTLS GET: %v", err)
	}
	if want := "hello agent-7 spiffe://example.test/agent/7"; body != want {
		t.Errorf("mTLS GET = %q, want %q", body, want)
	}
	if _, err := get(t, "https://127.0.0.1:"+port+"/", &tls.Config{RootCAs: ca.Pool()}); err == nil {
		t.Error("GET without a client certificate succeeded against RequireAndVerifyClientCert")
	}
}

func TestLoadErrors(t *testing.T) {
	good := t.TempDir()
	newCA(t, good)
	certPEM, err := os.ReadFile(filepath.Join(good, CertFileName))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(good, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	newCA(t, other)
	otherKey, err := os.ReadFile(filepath.Join(other, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	leafDir := t.TempDir()
	leafCA := newCA(t, leafDir)
	srv, err := leafCA.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := encodeKey(srv.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		cert, key []byte // nil: file absent
		want      error
	}{
		{"cert only", certPEM, nil, ErrInvalidCA},
		{"key only", nil, keyPEM, ErrInvalidCA},
		{"garbage cert", []byte("garbage"), keyPEM, ErrInvalidCA},
		{"garbage key", certPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ErrInvalidCA},
		{"key of another CA", certPEM, otherKey, ErrInvalidCA},
		{"not a CA", encodeCert(srv.Leaf.Raw), srvKey, ErrInvalidCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.cert != nil {
				if err := os.WriteFile(filepath.Join(dir, CertFileName), tt.cert, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.key != nil {
				if err := os.WriteFile(filepath.Join(dir, KeyFileName), tt.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := LoadOrCreate(dir); !errors.Is(err, tt.want) {
				t.Errorf("LoadOrCreate = %v, want %v", err, tt.want)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := loadOrCreate(dir, func() time.Time { return time.Now().Add(-CAValidity - 24*time.Hour) }); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreate(dir); !errors.Is(err, ErrCAExpired) {
			t.Errorf("LoadOrCreate = %v, want ErrCAExpired", err)
		}
	})
}
