package conformance

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentsso/agentsso/emulator/tlsca"
)

// TestParseCertAndSpoof: cert and spoof are checked, errors name the field.
func TestParseCertAndSpoof(t *testing.T) {
	for _, tc := range []struct{ name, repl, field string }{
		{"bad cert", "token: {}, cert: mine", "steps[0].call.cert"},
		{"unknown spoofed header", "token: {}, spoof: [x-forwarded-for, x-evil]", "steps[0].call.spoof[1]"},
	} {
		_, err := ParseScenario("x.yaml", []byte(strings.Replace(goodScenario, "token: {}", tc.repl, 1)))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Field != tc.field || pe.Line != 7 {
			t.Errorf("%s: error %v, want a ParseError at line 7 naming %s", tc.name, err, tc.field)
		}
	}
	ok := strings.Replace(goodScenario, "token: {}", "token: {mutate: [cnf-x5t]}, cert: other, spoof: [Client-Cert, forwarded]", 1)
	if _, err := ParseScenario("x.yaml", []byte(ok)); err != nil {
		t.Errorf("valid cert and spoof refused: %v", err)
	}
}

// TestTargetTLSValidate: mtls needs https; tls.ca_file must be PEM
// certificates.
func TestTargetTLSValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct{ name, yaml, field string }{
		{"mtls over http", "kind: resource-server\nurl: http://127.0.0.1:1/api\nfeatures: [mtls]\n", "url"},
		{"tls on http", "kind: resource-server\nurl: http://127.0.0.1:1/api\ntls: {client_cert_required: true}\n", "tls"},
		{"ca_file missing", "kind: resource-server\nurl: https://127.0.0.1:1/api\ntls: {ca_file: " + filepath.Join(dir, "nope.pem") + "}\n", "tls.ca_file"},
		{"ca_file not PEM", "kind: resource-server\nurl: https://127.0.0.1:1/api\ntls: {ca_file: " + notPEM + "}\n", "tls.ca_file"},
	} {
		_, err := ParseTarget("t.yaml", []byte(tc.yaml))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.field)
		}
	}
}

// TestHandshakeRefusal: against a target whose handshake requires a client
// certificate (tls.client_cert_required), calls present the bound
// certificate by default, and a cert: none call refused by the handshake
// is judged a rejection, not an error.
func TestHandshakeRefusal(t *testing.T) {
	ca, err := tlsca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCert(nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(got) }
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	srv.StartTLS()
	defer srv.Close()
	tg := &Target{Kind: "resource-server", URL: srv.URL + "/api", Features: []string{"mtls"}, TLS: &TargetTLS{ClientCertRequired: true}}
	if err := tg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := newCaller(tg, 5*time.Second, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.setupTLS(ca); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := c.do(ctx, callSpec{token: "x", ref: &TokenRef{SHA256: "00"}})
	if s := seen(); r.err != nil || r.status != 200 || len(s) != 1 || s[0] != "agentsso-harness" {
		t.Fatalf("default call: status %d err %v, certificates seen %v; want 200 over the bound certificate", r.status, r.err, s)
	}
	if r := c.do(ctx, callSpec{token: "x", ref: &TokenRef{SHA256: "00"}, cert: "other"}); r.status != 200 || len(seen()) != 2 || seen()[1] != "agentsso-harness-other" {
		t.Fatalf("cert other: status %d err %v, certificates seen %v", r.status, r.err, seen())
	}
	cs := callSpec{token: "x", ref: &TokenRef{SHA256: "00"}, cert: "none"}
	r = c.do(ctx, cs)
	if r.err == nil || !tlsCertRequired(r.err) {
		t.Fatalf("cert none: err %v, want the handshake's certificate-required alert", r.err)
	}
	if j := judge(Expect{Outcome: "reject"}, r, nil, cs, tg); !j.ok() {
		t.Errorf("handshake refusal judged %+v, want a rejection", j)
	}
	if j := judge(Expect{Outcome: "accept"}, r, nil, cs, tg); j.err == "" {
		t.Errorf("handshake refusal of an expected acceptance judged %+v, want an error", j)
	}
}
